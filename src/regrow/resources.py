"""What a process has used: peak resident memory."""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
from pathlib import Path

_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


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


def return_freed_memory_promptly(threshold_bytes: int = 1 << 17) -> bool:
    """Serve allocations above `threshold_bytes` with their own memory mappings (glibc).

    glibc raises its mmap threshold after each large free (up to 32 MB), after which tensors of
    a few MB come from the heap and their freed memory stays resident; a fixed threshold gives
    each such tensor back to the system when it dies. For runs whose point is bounded memory
    (streaming pruning). Returns False where the C library has no mallopt.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    mallopt = getattr(libc, "mallopt", None)
    return bool(mallopt and mallopt(_M_MMAP_THRESHOLD, threshold_bytes))


def peak_memory(device) -> tuple[int, str]:
    """(peak bytes, what was measured): CUDA's peak allocation on a GPU, else the process's peak RSS."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated(device)), "cuda_allocated"
    return peak_rss_bytes(), "process_rss"
