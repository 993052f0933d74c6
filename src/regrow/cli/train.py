"""`regrow train RECIPE.yaml [--set key=value ...] [--resume]`."""

from __future__ import annotations

import json

from regrow.cli.commands import COMMANDS
from regrow.config import load_config
from regrow.train.config import RunConfig
from regrow.train.trainer import train
from regrow.world import World


@COMMANDS.register("train")
def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="pre-train or continue pre-training a model")
    parser.add_argument("recipe", metavar="RECIPE", help="a YAML recipe")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key")
    parser.add_argument("--resume", action="store_true", help="continue the run in out_dir from its latest checkpoint")
    parser.add_argument("--auto-resume", action="store_true",
                        help="continue from the latest checkpoint if out_dir has one, else start (for jobs a scheduler may requeue)")
    parser.set_defaults(func=run)


def run(args) -> int:
    cfg = load_config(RunConfig, args.recipe, args.set)
    summary = train(cfg, resume="auto" if args.auto_resume else args.resume)
    if World.from_env().is_main:
        print(format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    lines = [f"run {summary['out_dir']}: {summary['steps']} steps, {summary['tokens']:,} tokens, "
             f"{summary['train_seconds']:.1f} s, {summary['flops']:.3g} FLOPs"]
    for name, d in summary["domains"].items():
        key = "forgetting" if d["role"] == "old" else "adaptation"
        lines.append(f"  {name:<16} {d['role']:<4} loss {d['loss_start']:.4f} -> {d['loss_end']:.4f}  {key} {d[key]:+.4f}")
    lines.append("summary: " + json.dumps({"forgetting": summary["forgetting"], "adaptation": summary["adaptation"]}))
    return "\n".join(lines)
