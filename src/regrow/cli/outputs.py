"""The outputs every analysis command offers: --out FILE.json, --plot FILE.png, --json."""

from __future__ import annotations

import json

from regrow.analysis.plots import save_figure
from regrow.atomic import write_json_atomic


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
