"""The outputs every analysis command offers: --out FILE.json, --plot FILE.png, --json."""

from __future__ import annotations

import json

from regrow.analysis.plots import save_figure
from regrow.atomic import write_json_atomic
from regrow.paths import check_output_file, is_json_record, is_regrow_png


def check_output_args(args, *record_keys: str) -> None:
    """Before any work: --out FILE.json may replace only this command's record (`record_keys`),
    --plot FILE.png only a figure regrow drew."""
    if getattr(args, "out", None):
        check_output_file(args.out, "--out", is_json_record(*record_keys))
    if getattr(args, "plot", None):
        check_output_file(args.plot, "--plot", is_regrow_png)


def emit(args, record: dict, figure, printed=None) -> bool:
    """Write `record` to --out and figure(record) to --plot; print JSON (of `printed`, default the
    record) with --json. True when JSON was printed (the caller then prints no table)."""
    if args.out:
        write_json_atomic(args.out, record)
    if args.plot:
        save_figure(figure(record), args.plot)
    if args.json:
        print(json.dumps(record if printed is None else printed, indent=2))
    return args.json
