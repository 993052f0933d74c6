"""`regrow list [--markdown]`: every registered extension (methods, reinits, schedules, laws,
families, executors, loggers, callbacks, tokenizer engines) with what it declares. docs/EXTENDING.md's tables are this
command's markdown output, so they cannot drift from the code."""

from __future__ import annotations

import dataclasses

from regrow.analysis.laws import LAWS
from regrow.analysis.laws.base import Law
from regrow.cli.commands import COMMANDS
from regrow.compress.families import FAMILIES
from regrow.compress.methods import METHODS
from regrow.compress.reinit import REINITS
from regrow.data.engines import ENGINES
from regrow.registry import summary_of
from regrow.schedules import SCHEDULES, Schedule
from regrow.study.executors import EXECUTORS
from regrow.train.callbacks import CALLBACKS
from regrow.train.loggers import LOGGERS


def _yes(flag: bool) -> str:
    return "yes" if flag else "-"


def _schedule_keys(cls) -> str:
    base = {f.name for f in dataclasses.fields(Schedule)}
    return ", ".join(f.name for f in dataclasses.fields(cls) if f.name not in base) or "-"


def tables() -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every registry."""
    return [
        ("Compression methods (`--method`, `grid.method`)", ["name", "what it does", "data", "trains", "width", "streams", "sparse"],
         [[n, summary_of(c), _yes(c.needs_data), _yes(c.trains), _yes(c.changes_width), _yes(c.streams), _yes(c.sparse)]
          for n, c in METHODS.items()]),
        ("Re-initialisations (`--reinit`)", ["name", "what it does"], [[n, summary_of(f)] for n, f in REINITS.items()]),
        ("LR schedules (`schedule.name`)", ["name", "what it does", "own keys"],
         [[n, summary_of(c), _schedule_keys(c)] for n, c in SCHEDULES.items()]),
        ("Scaling laws (`regrow fit --law`, study report)", ["name", "formula", "study", "--runs"],
         [[n, f"`{c.formula}`", _yes(c.study_table is not Law.study_table), _yes(c.runs_table is not Law.runs_table)]
          for n, c in LAWS.items()]),
        ("Model families (pruning)", ["name", "model_type"], [[n, ", ".join(c.model_types)] for n, c in FAMILIES.items()]),
        ("Study executors (`regrow study --executor`)", ["name", "what it does"],
         [[n, summary_of(c)] for n, c in EXECUTORS.items()]),
        ("Loggers (`train.loggers`)", ["name", "what it does"], [[n, summary_of(c)] for n, c in LOGGERS.items()]),
        ("Training callbacks (`train.callbacks`; the first five are built in)", ["name", "what it does"],
         [[n, summary_of(c)] for n, c in CALLBACKS.items()]),
        ("Tokenizer engines (`regrow data prepare --engine`)", ["name", "what it does", "reference"],
         [[n, summary_of(c), _yes(c.reference)] for n, c in ENGINES.items()]),
    ]


def markdown() -> str:
    out = []
    for title, header, rows in tables():
        out += [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(row) + " |" for row in rows]
        out.append("")
    return "\n".join(out)


@COMMANDS.register("list")
def register(subparsers) -> None:
    parser = subparsers.add_parser("list", help="list every registered method, schedule, law, family, ...")
    parser.add_argument("--markdown", action="store_true", help="as the markdown tables of docs/EXTENDING.md")
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.markdown:
        print(markdown(), end="")
        return 0
    for title, _, rows in tables():
        print(title)
        for row in rows:
            print(f"  {row[0]:<16} {row[1]}")
    return 0
