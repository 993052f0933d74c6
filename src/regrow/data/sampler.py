"""The mixture sampler: fixed-length training sequences drawn from several domains by weight.

Every sequence of a run has a global index g = step * global_batch + position in the global
batch. Everything about sequence g is a pure function of (seed, g, weights):

- its domain comes from a low-discrepancy sequence u_g = frac(seed_offset + g * phi) (phi the
  golden ratio) mapped through the cumulative weights, so in any window of n sequences each
  domain's count is within a few sequences of n * weight (i.i.d. draws would be off by
  about sqrt(n * w)); 5% replay really is 5%, also in short runs;
- its start offset inside the domain's token stream comes from a counter-based hash of
  (seed, g), uniform over all valid starts.

So resuming at any step is O(1) (no replay of the stream), a rank of a multi-process run reads
exactly its own slice of the global batch, and the global batch does not depend on how many
processes share it. The weights are the only state; they may change during a run (dynamic
mixtures) and are saved with each checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from regrow.data.store import TokenStore
from regrow.errors import RegrowError

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / phi


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A strong 64-bit mixing function (Steele et al. 2014), vectorised; wraps modulo 2^64."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def validate_weights(weights: dict[str, float], available: list[str]) -> dict[str, float]:
    """Check a mixture and return it normalised to sum 1 (zero weights are allowed, not all)."""
    if not weights:
        raise RegrowError("data.mixture is empty; give at least one domain with a positive weight")
    for name, weight in weights.items():
        if name not in available:
            raise RegrowError(
                f"data.mixture names domain {name!r}, which the data folder lacks; it has: {', '.join(available)}"
            )
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not np.isfinite(weight) or weight < 0:
            raise RegrowError(f"data.mixture weight of {name!r} is {weight!r}; weights must be numbers >= 0")
    total = float(sum(weights.values()))
    if total <= 0:
        raise RegrowError(f"data.mixture weights are all zero ({weights}); at least one must be positive")
    return {name: float(w) / total for name, w in sorted(weights.items())}


@dataclass
class SamplerState:
    weights: dict[str, float]

    def to_dict(self) -> dict:
        return {"weights": dict(self.weights)}


class MixtureSampler:
    """Draws (inputs, targets) batches of shape [batch, seq_len] for a given step and rank."""

    def __init__(
        self,
        store: TokenStore,
        weights: dict[str, float],
        seq_len: int,
        micro_batch: int,
        grad_accum: int = 1,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if seq_len < 1:
            raise RegrowError(f"data.seq_len is {seq_len}; it must be >= 1")
        if not 0 <= rank < world_size:
            raise RegrowError(f"rank {rank} is outside world size {world_size}")
        self.seq_len = seq_len
        self.micro_batch = micro_batch
        self.grad_accum = grad_accum
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self._seed_key = _splitmix64(np.array([seed], dtype=np.uint64))[0]
        validate_weights(weights, store.domain_names)
        self._streams: dict[str, np.ndarray] = {}
        for name in weights:
            tokens = store.domain(name).tokens("train")
            if len(tokens) < seq_len + 1:
                raise RegrowError(
                    f"domain {name!r} has {len(tokens)} training tokens, fewer than data.seq_len + 1 = {seq_len + 1}"
                )
            self._streams[name] = tokens
        self.set_weights(weights)

    @property
    def global_batch(self) -> int:
        return self.micro_batch * self.grad_accum * self.world_size

    @property
    def weights(self) -> dict[str, float]:
        return dict(zip(self._names, self._weights.tolist()))

    def set_weights(self, weights: dict[str, float]) -> None:
        """Change the mixture from the next batch on (dynamic mixtures, resume)."""
        unknown = set(weights) - set(self._streams)
        if unknown:
            raise RegrowError(f"cannot add domains {sorted(unknown)} to a running sampler")
        normalised = validate_weights(weights, list(self._streams))
        self._names = list(self._streams)
        self._weights = np.array([normalised.get(n, 0.0) for n in self._names])
        self._cumulative = np.cumsum(self._weights)
        self._cumulative[-1] = 1.0

    def state(self) -> SamplerState:
        return SamplerState(self.weights)

    def load_state(self, state: dict) -> None:
        self.set_weights(state["weights"])

    def indices(self, step: int, micro: int) -> np.ndarray:
        """Global sequence indices of this rank's micro-batch `micro` of optimizer step `step`."""
        per_rank = self.micro_batch * self.grad_accum
        first = step * self.global_batch + self.rank * per_rank + micro * self.micro_batch
        return np.arange(first, first + self.micro_batch, dtype=np.uint64)

    def domains_of(self, g: np.ndarray) -> np.ndarray:
        """Domain index of each global sequence index (low-discrepancy assignment)."""
        u = (g * _GOLDEN + self._seed_key) >> np.uint64(11)  # top 53 bits: exact in float64
        u = u.astype(np.float64) / float(1 << 53)
        return np.minimum(np.searchsorted(self._cumulative, u, side="right"), len(self._names) - 1)

    def batch(self, step: int, micro: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.indices(step, micro)
        domains = self.domains_of(g)
        offsets_hash = _splitmix64(g ^ self._seed_key ^ np.uint64(0xD1B54A32D192ED03))
        rows = np.empty((len(g), self.seq_len + 1), dtype=np.int64)
        for i, (d, h) in enumerate(zip(domains, offsets_hash)):
            stream = self._streams[self._names[d]]
            start = int(h % np.uint64(len(stream) - self.seq_len))
            rows[i] = stream[start : start + self.seq_len + 1]
        tensor = torch.from_numpy(rows)
        return tensor[:, :-1], tensor[:, 1:]

    def domain_counts(self, steps: range) -> dict[str, int]:
        """How many sequences of each domain the whole run (all ranks) draws over `steps`."""
        counts = np.zeros(len(self._names), dtype=np.int64)
        for step in steps:
            g = np.arange(step * self.global_batch, (step + 1) * self.global_batch, dtype=np.uint64)
            counts += np.bincount(self.domains_of(g), minlength=len(self._names))
        return dict(zip(self._names, counts.tolist()))
