"""Value types of command-line flags that argparse lacks: a float flag takes only finite numbers."""

from __future__ import annotations

import argparse
import math


def finite_float(text: str) -> float:
    """A float flag's value; `nan`, `inf` and words are refused with the value named."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value
