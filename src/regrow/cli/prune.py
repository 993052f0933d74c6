"""`regrow prune --model DIR --target SPEC | --target-ratio R --method METHOD [--data DATA_DIR]
[--mixture NAME=W ...] [--reinit ...] --out DIR [--config FILE] [--set key=value ...]`."""

from __future__ import annotations

from regrow.cli.argtypes import finite_float
from regrow.cli.commands import COMMANDS
from regrow.compress.config import PruneConfig
from regrow.compress.methods import METHODS
from regrow.compress.prune import prune
from regrow.compress.reinit import REINITS
from regrow.config import apply_overrides, from_dict, read_yaml
from regrow.errors import RegrowError

# flag -> config key; flags given on the command line override --config, --set overrides both
FLAGS = {
    "model": "model", "target": "target", "target_ratio": "target_ratio", "method": "method", "data": "data",
    "reinit": "reinit", "out": "out", "steps": "sheared.steps", "seed": "seed", "seq_len": "seq_len",
    "batch_size": "batch_size", "calibration_samples": "calibration_samples", "depth_mode": "depth_mode",
    "expert_criterion": "expert_criterion",
    "sparsity": "sparsity", "pattern": "pattern", "rewind_from": "rewind_from",
    "device": "device", "precision": "precision", "streaming": "streaming", "activation_memory_gb": "activation_memory_gb",
}


@COMMANDS.register("prune")
def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "prune", help="compress an HF decoder to a target architecture",
        description=f"Methods - {METHODS.summaries()}. Reinits - {REINITS.summaries()}.",
    )
    parser.add_argument("--model", help="source HF model folder")
    parser.add_argument("--target", metavar="SPEC", help="YAML/JSON with any of num_hidden_layers, hidden_size, "
                        "num_attention_heads, num_key_value_heads, intermediate_size and, for a mixture of experts, "
                        "num_experts, num_experts_per_tok, moe_intermediate_size, shared_expert_intermediate_size; "
                        "or an HF config.json to match")
    parser.add_argument("--target-ratio", type=finite_float, metavar="R", help="fraction of parameters to keep (0 < R <= 1)")
    parser.add_argument("--method", help=f"one of {', '.join(METHODS)} (default activation)")
    parser.add_argument("--sparsity", type=finite_float, metavar="S",
                        help="sparse methods: fraction of each output row's weights zeroed (0 < S < 1)")
    parser.add_argument("--pattern", metavar="N:M", help="sparse methods: keep N of every M consecutive weights of a row (2:4)")
    parser.add_argument("--data", metavar="DATA_DIR", help="calibration / mask-training data (`regrow data prepare`)")
    parser.add_argument("--mixture", nargs="+", metavar="NAME=W", help="domain weights (default: all domains equally)")
    parser.add_argument("--reinit", help=f"one of {', '.join(REINITS)} (default none)")
    parser.add_argument("--rewind-from", metavar="SNAPSHOT", help="--reinit rewind: an earlier snapshot of the source's "
                        "run (snapshots/tokens-N); the mask found on the trained model is applied to its weights")
    parser.add_argument("--out", help="folder for the pruned HF model")
    parser.add_argument("--steps", type=int, help="mask-training steps of the sheared method (default 200)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--seq-len", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--calibration-samples", type=int, help="sequences for activation / depth scoring (default 1024)")
    parser.add_argument("--depth-mode", help="depth method: individual (default) or contiguous")
    parser.add_argument("--expert-criterion", help="activation method on a mixture of experts: how experts are scored: "
                        "reap (default), frequency or random")
    parser.add_argument("--device", help="auto (default), cpu or cuda")
    parser.add_argument("--precision", help="fp32 (default) or bf16")
    parser.add_argument("--streaming", action="store_true", default=None,
                        help="prune a checkpoint larger than memory: read it lazily, calibrate one layer at a time, "
                             "write shard by shard (methods without gradients: activation, depth, magnitude, random)")
    parser.add_argument("--activation-memory-gb", type=finite_float, metavar="GB",
                        help="--streaming: keep calibration activations in memory up to this size, else on disk (default 1)")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--config", metavar="FILE", help="YAML with any PruneConfig keys")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. sheared.temperature=0.83")
    parser.set_defaults(func=run)


def parse_mixture(items: list[str] | None) -> dict[str, float] | None:
    if not items:
        return None
    mixture = {}
    for item in items:
        name, sep, weight = item.partition("=")
        try:
            mixture[name] = float(weight)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise RegrowError(f"--mixture item {item!r} is not NAME=WEIGHT (e.g. prose=0.75)")
    return mixture


def config_from_args(args) -> tuple[PruneConfig, set[str]]:
    """The config (--config, then flags, then --set) and the keys the user set in any of them."""
    data = read_yaml(args.config) if args.config else {}
    for flag, key in FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            section, _, leaf = key.rpartition(".")
            (data.setdefault(section, {}) if section else data)[leaf] = value
    mixture = parse_mixture(args.mixture)
    if mixture is not None:
        data["mixture"] = mixture
    if args.trust_remote_code:
        data["trust_remote_code"] = True
    if args.no_progress:
        data["progress"] = False
    apply_overrides(data, args.set, PruneConfig)
    given = {f"{k}.{leaf}" if isinstance(v, dict) else k for k, v in data.items()
             for leaf in (v if isinstance(v, dict) else [None])}
    return from_dict(PruneConfig, data), given


def run(args) -> int:
    cfg, given = config_from_args(args)
    prune(cfg, given=given)
    return 0
