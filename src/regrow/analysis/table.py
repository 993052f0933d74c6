"""The rows a law is fitted on: named columns, read from a CSV file or built from runs.

Numeric columns are float arrays, text columns (run, phase, method, group) are arrays of str.
Checked once here: missing columns are named, NaN and non-positive sizes or losses refused.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from regrow.errors import RegrowError
from regrow.reading import read_text

Table = dict[str, np.ndarray]
TEXT_COLUMNS = ("run", "phase", "method", "group")


def read_csv(path: str | Path, optional_blank: tuple[str, ...] = ()) -> Table:
    """A CSV with a header row; cells of `optional_blank` columns may be empty (read as NaN)."""
    path = Path(path)
    text = read_text(path, "--csv")
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        lines = [[cell.strip() for cell in line] for line in reader]
    except csv.Error as err:
        raise RegrowError(f"--csv {str(path)!r} is not valid CSV: {err}") from err
    header = lines[0] if lines else []
    if not header:
        raise RegrowError(f"--csv {str(path)!r} is empty; it needs a header row")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise RegrowError(f"--csv {str(path)!r} names column {repeated[0]!r} twice; each column may appear once")
    for number, line in enumerate(lines[1:], start=2):
        if line and len(line) != len(header):
            raise RegrowError(f"{path.name} line {number} has {len(line)} cells; the header has {len(header)}")
    rows = [dict(zip(header, line)) for line in lines[1:] if line]
    table: Table = {}
    for name in header:
        values = [row.get(name, "") for row in rows]
        if name in TEXT_COLUMNS:
            table[name] = np.array(values, dtype=str)
            continue
        numbers = []
        for i, text in enumerate(values, start=2):
            if text == "" and name in optional_blank:
                numbers.append(math.nan)
                continue
            try:
                value = float(text)
            except ValueError:
                raise RegrowError(f"{path.name} line {i}: column {name!r} has {text!r}, not a number") from None
            if not math.isfinite(value):
                raise RegrowError(f"{path.name} line {i}: column {name!r} is {text}; every value must be a finite "
                                  "number: remove the row or fill it in")
            numbers.append(value)
        table[name] = np.array(numbers, dtype=np.float64)
    return table


def check_table(table: Table, required: tuple[str, ...], law: str, positive: tuple[str, ...] = ("N", "D", "loss")) -> None:
    """Missing columns, NaN and non-positive N, D or loss are errors that name what is wrong."""
    missing = [c for c in required if c not in table]
    if missing:
        have = ", ".join(table) or "none"
        raise RegrowError(f"law {law!r} needs column(s) {', '.join(missing)}; the data has: {have}")
    for name in required:
        column = table[name]
        if column.dtype.kind != "f":
            continue
        measured = column[~np.isnan(column)] if name == "loss" else column
        if name != "loss" and np.isnan(column).any():
            raise RegrowError(f"column {name!r} has NaN at row {int(np.argmax(np.isnan(column))) + 1}")
        if name in positive and (measured <= 0).any():
            bad = float(measured[measured <= 0][0])
            raise RegrowError(f"column {name!r} has the non-positive value {bad:g}; {name} must be > 0")


def check_points(n_points: int, n_params: int, law: str, what: str = "points") -> None:
    if n_points <= n_params:
        raise RegrowError(f"law {law!r} has {n_params} parameters and needs at least {n_params + 1} {what}; "
                          f"got {n_points}")


def rows_where(table: Table, mask: np.ndarray) -> Table:
    return {k: v[mask] for k, v in table.items()}


TEXT_COLUMNS = ("run", "phase", "method", "group")


def table_from_rows(rows: dict[str, list]) -> Table:
    """Columns of lists -> a Table (text columns as str arrays, the rest float64)."""
    return {k: np.array(v, dtype=str) if k in TEXT_COLUMNS else np.array(v, dtype=np.float64) for k, v in rows.items()}


def measured_only(table: Table, keep_start: bool) -> Table:
    """Drop the unmeasured steps, and step 0 (D = 0) unless asked (transfer prices the start too)."""
    keep = ~np.isnan(table["loss"]) & ((table["D"] > 0) | keep_start)
    return {k: v[keep] for k, v in table.items()}


def curve_columns(*labels: str) -> dict[str, list]:
    """Empty rows of a curve table: `labels`, then step, lr, loss, D."""
    return {k: [] for k in (*labels, "step", "lr", "loss", "D")}
