"""Processes seen through ``/proc``: the tests that kill pinlab check no worker outlives it."""

from __future__ import annotations

import time
from pathlib import Path


def _status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as fields; empty once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {key: value.strip() for key, value in (line.split(":", 1) for line in text.splitlines())}


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (zombies count as gone)."""
    return {pid for pid in pids if _status(pid).get("State", "Z")[:1] != "Z"}


def children(pid: int) -> set[int]:
    """Live processes whose parent is ``pid``."""
    pids = {int(path.name) for path in Path("/proc").glob("[0-9]*")}
    return {child for child in alive(pids) if _status(child).get("PPid") == str(pid)}


def wait_until_gone(pids: set[int]) -> None:
    """Wait up to 10 s for ``pids`` to end; fail if any is still running."""
    deadline = time.monotonic() + 10
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pids), "child processes outlived their parent"
