"""`regrow report STUDY_DIR`: write report.md, report.html and report.json into the study folder."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="write the report of a study (markdown + self-contained HTML)")
    parser.add_argument("folder", metavar="STUDY_DIR")
    parser.set_defaults(func=run)


def run(args) -> int:
    from regrow.study.report import build_report, headline_table

    report = build_report(args.folder)
    print(report["headline"].replace("**", ""))
    print(headline_table(report["ranking"]))
    print(f"wrote {args.folder}/report.md and report.html")
    return 0
