"""Parameter sensitivity (Springer et al. 2025, "catastrophic overtraining"; docs/ALGORITHMS.md §6).

theta' = theta + gamma * sigma_t * eps_t for every tensor t, eps_t ~ N(0, 1); sensitivity =
loss(theta') - loss(theta) on held-out data, per domain, averaged over noise seeds.

sigma_t, the noise definition (`noise`):
- `init` (default): the tensor's initialisation scale, config.initializer_range, the std HF
  draws weight matrices and embeddings with; 1-D tensors (norm gains, biases) are initialised
  to constants, have no such scale and stay unperturbed;
- `relative`: the tensor's own RMS (every tensor);
- `absolute`: 1 (gamma is the std itself; every tensor).
The noise of seed k is the same draw for every gamma and every model of one architecture
(common random numbers), so a curve over checkpoints is not blurred by fresh noise per point.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch

from regrow.data.store import TokenStore
from regrow.errors import RegrowError
from regrow.models.evaluate import evaluate_domains
from regrow.reading import read_json

NOISES = ("init", "relative", "absolute")


def check_sensitivity_args(gammas: list[float], seeds: int, noise: str) -> None:
    bad = [g for g in gammas if not g > 0]
    if not gammas or bad:
        raise RegrowError(f"--gamma {bad[0] if bad else 'is empty'}: the perturbation scale must be > 0")
    if seeds < 1:
        raise RegrowError(f"--seeds is {seeds}; it must be >= 1")
    if noise not in NOISES:
        raise RegrowError(f"--noise {noise!r} is not known; allowed: {', '.join(NOISES)}")


def noise_scale(param: torch.Tensor, noise: str, init_std: float) -> float:
    if noise == "init":
        return init_std if param.dim() >= 2 else 0.0
    if noise == "relative":
        return float(param.detach().float().pow(2).mean().sqrt())
    return 1.0


def init_std_of(config) -> float:
    std = getattr(config, "initializer_range", None)
    if std is None:
        raise RegrowError(f"{config.model_type} config has no initializer_range, so `--noise init` has no scale; "
                          "use --noise relative or absolute")
    return float(std)


@torch.no_grad()
def perturbed(model, gamma: float, seed: int, noise: str, init_std: float) -> dict[str, torch.Tensor]:
    """Add the noise of `seed` in place; returns the original tensors to restore."""
    saved = {}
    generator = torch.Generator(device="cpu").manual_seed(seed)
    for name, param in model.named_parameters():
        scale = noise_scale(param, noise, init_std)
        eps = torch.randn(param.shape, generator=generator, dtype=torch.float32)  # drawn even at scale 0: same stream
        if scale == 0.0:
            continue
        saved[name] = param.detach().clone()
        param.add_(eps.to(param.device, param.dtype), alpha=gamma * scale)
    return saved


@torch.no_grad()
def restore(model, saved: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for name, value in saved.items():
        params[name].copy_(value)


def measure_sensitivity(model, store: TokenStore, domains: list[str], gammas: list[float], seeds: int, noise: str,
                        seq_len: int, batch_size: int, max_tokens: int, device: torch.device) -> dict:
    """Base loss per domain and, per gamma, the loss increase per domain: mean, sd and each seed's value."""
    init_std = init_std_of(model.config) if noise == "init" else 0.0
    evaluate = lambda: evaluate_domains(model, store, domains, seq_len, batch_size, max_tokens, device)  # noqa: E731
    base = {d: r["loss"] for d, r in evaluate().items()}
    result = {}
    for gamma in gammas:
        per_domain = {d: [] for d in domains}
        for seed in range(seeds):
            saved = perturbed(model, gamma, seed, noise, init_std)
            try:
                for d, r in evaluate().items():
                    per_domain[d].append(r["loss"] - base[d])
            finally:
                restore(model, saved)
        result[f"{gamma:g}"] = {d: {"mean": statistics.mean(v), "sd": statistics.stdev(v) if len(v) > 1 else 0.0,
                                    "values": v} for d, v in per_domain.items()}
    return {"base_loss": base, "sensitivity": result}


def sensitivity_of_models(model_dirs: list[str], store: TokenStore, domains: list[str], gammas: list[float], seeds: int,
                          noise: str, seq_len: int, batch_size: int, max_tokens: int, device: torch.device,
                          load) -> dict:
    """The `regrow sensitivity` result for several model folders; `load(path)` gives a checked model."""
    check_sensitivity_args(gammas, seeds, noise)
    models = []
    for path in model_dirs:
        model = load(path).to(device)
        with torch.inference_mode():
            measured = measure_sensitivity(model, store, domains, gammas, seeds, noise, seq_len, batch_size,
                                           max_tokens, device)
        models.append({"model": str(path), "tokens": pretraining_tokens(path), **measured})
        del model
    return {"kind": "sensitivity", "noise": noise, "gammas": gammas, "seeds": seeds, "domains": domains,
            "models": models}


def pretraining_tokens(model_dir: str | Path) -> int | None:
    """Tokens a model folder was trained on: a snapshot's, a checkpoint's, or its run's summary."""
    folder = Path(model_dir)
    for path, key in ((folder / "snapshot.json", "tokens"), (folder / "state.json", "tokens"),
                      (folder.parent / "summary.json", "tokens")):
        if path.is_file():
            data = read_json(path, "run record")
            value = data.get(key) if isinstance(data, dict) else None
            if isinstance(value, int):
                return value
    return None
