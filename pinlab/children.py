"""pinlab's worker processes (collector processes, CT parse workers): how many start by
default, and that none outlives its parent.

A worker whose parent is killed with ``kill -9`` would otherwise wait forever on a pipe
nobody writes, holding its memory (about 140 MB for a CT parse worker).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

__all__ = ["die_with_parent", "usable_cores"]

_PR_SET_PDEATHSIG = 1


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (a container's or ``taskset``'s
    limit), else the machine's count; at least one. The default ``pinlab collect
    --processes`` and ``pinlab ct log --parse-workers`` start from it."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when ``parent`` (its parent's pid) dies; exit now
    if it already has. Linux only (``PR_SET_PDEATHSIG``): elsewhere the caller watches
    ``os.getppid()`` itself."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)
