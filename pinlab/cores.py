"""The cores this process may run on: how many collector processes and CT parse workers
start by default (``pinlab collect --processes``, ``pinlab ct log --parse-workers``)."""

from __future__ import annotations

import os

__all__ = ["usable_cores"]


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (a container's or ``taskset``'s
    limit), else the machine's count; at least one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
