"""`regrow schedule RECIPE [--json] [--plot FILE.png]`: the learning rate at every step."""

from __future__ import annotations

import json

from regrow.analysis.plots import save_figure
from regrow.cli.commands import COMMANDS
from regrow.cli.outputs import check_output_args
from regrow.config import apply_overrides, read_yaml
from regrow.errors import RegrowError
from regrow.schedules import SCHEDULES, build_schedule


@COMMANDS.register("schedule")
def register(subparsers) -> None:
    parser = subparsers.add_parser("schedule", help="print or plot a learning-rate schedule",
                                   description=f"Schedules - {SCHEDULES.summaries()}.")
    parser.add_argument("recipe", metavar="RECIPE", help="a training recipe, or a YAML file holding only a schedule")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key")
    parser.add_argument("--steps", type=int, default=None, help="how many steps to show (default: total_steps)")
    parser.add_argument("--json", action="store_true", help='print {"step": [...], "lr": [...]}')
    parser.add_argument("--plot", metavar="FILE.png", help="draw the schedule to a PNG file")
    parser.set_defaults(func=run)


def schedule_from_recipe(path: str, overrides: list[str]):
    data = apply_overrides(read_yaml(path), overrides)
    if "schedule" in data:
        steps = (data.get("train") or {}).get("steps")
        return build_schedule(data["schedule"], steps)
    return build_schedule(data)


def run(args) -> int:
    check_output_args(args)
    schedule = schedule_from_recipe(args.recipe, args.set)
    steps = args.steps if args.steps is not None else schedule.total
    if steps < 1:
        raise RegrowError(f"--steps {steps} must be >= 1")
    xs = list(range(1, steps + 1))
    lrs = [schedule(s) for s in xs]
    if args.plot:
        save_figure(schedule_figure(xs, lrs, schedule.name), args.plot)
    if args.json:
        print(json.dumps({"step": xs, "lr": lrs}))
    elif not args.plot:
        for s in sorted({1, schedule.warmup_steps or 1, steps // 4, steps // 2, 3 * steps // 4, steps} - {0}):
            print(f"step {s:>8}  lr {schedule(s):.6g}")
    return 0


def schedule_figure(xs: list[int], lrs: list[float], name: str):
    from regrow.analysis.plots import pyplot

    fig, ax = pyplot().subplots(figsize=(6, 3.5))
    ax.plot(xs, lrs)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title(f"schedule: {name}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
