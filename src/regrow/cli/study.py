"""`regrow study STUDY.yaml [--jobs N] [--set key=value ...]` and `regrow study status STUDY_DIR`."""

from __future__ import annotations

from regrow.cli.commands import COMMANDS
from regrow.config import load_config, parse_override
from regrow.errors import RegrowError
from regrow.study.executors import EXECUTORS


@COMMANDS.register("study")
def register(subparsers) -> None:
    parser = subparsers.add_parser("study", help="run a compress-then-continue study (or: study status DIR)")
    parser.add_argument("target", metavar="STUDY.yaml | status", help="a study file, or `status`")
    parser.add_argument("folder", nargs="?", metavar="STUDY_DIR", help="with `status`: the study folder")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (local processes)")
    parser.add_argument("--executor", default="local", help=f"where runs execute (default local): {EXECUTORS.summaries()}")
    parser.add_argument("--executor-param", action="append", default=[], metavar="KEY=VALUE",
                        help="a submitit parameter, e.g. timeout_min=120, slurm_partition=gpu, gpus_per_node=1")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a study key")
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.target == "status":
        if not args.folder:
            raise RegrowError("`regrow study status` needs the study folder: regrow study status STUDY_DIR")
        return show_status(args.folder)
    from regrow.study.config import StudyConfig
    from regrow.study.runner import run_study

    params = {}
    for item in args.executor_param:
        keys, value = parse_override(item)
        params[".".join(keys)] = value
    counts = run_study(load_config(StudyConfig, args.target, args.set), args.jobs,
                       executor=args.executor, executor_params=params)
    return 0 if counts["failed"] == 0 else 1


def show_status(folder: str) -> int:
    from regrow.study.runner import study_status

    counts, rows = study_status(folder)
    total = sum(counts.values())
    print(f"{folder}: {total} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    for row in rows:
        line = f"  {row['status']:<8} {row['kind']:<9} {row['key']}"
        if row["status"] == "failed":
            line += f"  ({row['error']})"
        print(line)
    return 0
