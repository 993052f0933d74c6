"""What a process has used: peak resident memory."""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_bytes() -> int:
    """This program's peak resident set size.

    Linux's VmHWM belongs to the process's own address space; getrusage's ru_maxrss also keeps
    the high-water mark of the process it was forked from, so a small child of a big parent
    would report the parent's peak.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux units: KiB
