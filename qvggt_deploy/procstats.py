"""Memory figures of this process, always in bytes (reports convert them where they print)."""
from __future__ import annotations

import sys
from typing import Optional


def ru_maxrss_bytes(value: int) -> int:
    """``getrusage().ru_maxrss`` in bytes: the kernel reports KiB on Linux, bytes on macOS."""
    return int(value) if sys.platform == "darwin" else int(value) * 1024


def peak_rss_bytes(children: bool = False) -> Optional[int]:
    """Peak resident set size of this process (``children``: of its waited-for children) in bytes;
    None where the ``resource`` module does not exist (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return ru_maxrss_bytes(resource.getrusage(who).ru_maxrss)


def current_rss_bytes() -> Optional[int]:
    """Resident bytes of this process now (Linux ``/proc``); None elsewhere."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except (OSError, ImportError):
        return None
