"""`regrow demo [--out DIR]`: the main job, offline."""

from __future__ import annotations

from regrow.cli.commands import COMMANDS


@COMMANDS.register("demo")
def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the offline demo study (prune, continue, report)")
    parser.add_argument("--out", default="regrow-demo", help="output folder")
    parser.add_argument("--quick", action="store_true", help="a much smaller version (for smoke tests)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="runs at a time (default 1: every core for one run) and processes fitting the report's "
                             "scaling laws (default: one per core, at most 4)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from regrow.errors import RegrowError
    from regrow.study.demo import FULL, QUICK, run_demo

    if args.jobs is not None and args.jobs < 1:
        raise RegrowError(f"--jobs is {args.jobs}; it must be >= 1")
    run_demo(args.out, QUICK if args.quick else FULL, args.jobs)
    return 0
