"""Value types of command-line flags that argparse lacks: a float flag takes only finite numbers."""

from __future__ import annotations

import argparse
import math
import re


def finite_float(text: str) -> float:
    """A float flag's value; `nan`, `inf` and words are refused with the value named."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value



_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*$")
_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
               "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}


def byte_size(text: str) -> int:
    """A size flag's value in bytes: a number with an optional unit (KB, MB, GB = powers of 1000;
    K, M, G, KiB, MiB, GiB = powers of 1024)."""
    match = _SIZE.match(text)
    if not match or match.group(2).upper() not in _SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; allowed: a positive number with an optional unit "
                                         "B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (K, M, G, T)")
    value = float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive size")
    return int(value)
