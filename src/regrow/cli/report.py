"""`regrow report STUDY_DIR`: write report.md, report.html and report.json into the study folder."""

from __future__ import annotations

from regrow.cli.commands import COMMANDS
from regrow.errors import RegrowError


@COMMANDS.register("report")
def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="write the report of a study (markdown + self-contained HTML)")
    parser.add_argument("folder", metavar="STUDY_DIR")
    parser.add_argument("--fit-bootstrap", type=int, default=20,
                        help="bootstrap resamples of each scaling-law fit (0: no intervals, fastest)")
    parser.add_argument("--jobs", type=int, default=1, help="processes fitting the scaling laws (default 1)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from regrow.study.report import build_report, headline_table

    if args.fit_bootstrap < 0:
        raise RegrowError(f"--fit-bootstrap is {args.fit_bootstrap}; it must be >= 0")
    if args.jobs < 1:
        raise RegrowError(f"--jobs is {args.jobs}; it must be >= 1")
    report = build_report(args.folder, args.fit_bootstrap, args.jobs)
    print(report["headline"].replace("**", ""))
    print(headline_table(report["ranking"]))
    print(f"wrote {args.folder}/report.md and report.html")
    return 0
