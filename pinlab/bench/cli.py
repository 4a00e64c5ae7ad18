"""``pinlab bench cli``: what starting the ``pinlab`` command costs (issue 18).

A person runs ``pinlab pins FILE`` or ``pinlab check HOST`` many times a day and scripts
loop over it, so start-up is its cost. The floor is the library a pin check needs:
``python -c 'import cryptography.x509'``. Each command runs in a fresh interpreter (this
one, ``python -m pinlab``), the runs of the commands and of the floor interleaved, so that
a shared machine's load falls on all alike; each row gives the median and its ratio to the
floor's median in the same run. The goal is 1.5x. ``pins FILE`` reads a chain made with
:mod:`pinlab.testbed.pki` (it validates it against certifi's roots, as a user's run would).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from pinlab.errors import PinlabError
from pinlab.testbed.pki import CA, write_pem

__all__ = ["FULL_RUNS", "GOAL_RATIO", "QUICK_RUNS", "run_cli_benchmark"]

GOAL_RATIO = 1.5
FULL_RUNS = 21
QUICK_RUNS = 3
FLOOR = "import cryptography.x509"

Progress = Callable[[int, int, str], None]


def _commands(pem: Path) -> dict[str, list[str]]:
    python = [sys.executable]
    return {
        FLOOR: [*python, "-c", FLOOR],
        "pinlab --help": [*python, "-m", "pinlab", "--help"],
        "pinlab pins FILE": [*python, "-m", "pinlab", "pins", str(pem)],
    }


def _time(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, check=False, timeout=120)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise PinlabError(
            f"bench cli: {' '.join(command)} exited {done.returncode}: "
            f"{done.stderr.decode(errors='replace').strip()[-300:]}"
        )
    return seconds


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def run_cli_benchmark(*, quick: bool = False, progress: Progress | None = None) -> pd.DataFrame:
    """One row per command: median, IQR and minimum wall time of a fresh start, and the
    ratio of the median to the floor's (``import cryptography.x509``) in the same run."""
    runs = QUICK_RUNS if quick else FULL_RUNS
    report = progress or (lambda done, total, label: None)
    with tempfile.TemporaryDirectory(prefix="pinlab-bench-cli-") as scratch:
        root = CA.root("bench cli root")
        leaf = root.child_ca("bench cli intermediate").issue_leaf("bench.test")
        pem = write_pem(Path(scratch) / "chain.pem", leaf, leaf.issuer)
        commands = _commands(pem)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for command in commands.values():  # warm the page cache; not counted
            _time(command)
        total = runs * len(commands)
        for run in range(runs):
            for index, (name, command) in enumerate(commands.items()):
                report(run * len(commands) + index, total, name)
                times[name].append(_time(command))
        report(total, total, "done")
    floor = statistics.median(times[next(iter(commands))])
    rows = []
    for name, seconds in times.items():
        median = statistics.median(seconds)
        quartiles = statistics.quantiles(seconds, n=4) if len(seconds) > 1 else [median] * 3
        is_floor = name == FLOOR
        ratio = median / floor
        rows.append(
            {
                "command": name,
                "median_ms": round(median * 1000, 1),
                "iqr_ms": round((quartiles[2] - quartiles[0]) * 1000, 1),
                "min_ms": round(min(seconds) * 1000, 1),
                "runs": len(seconds),
                "x_floor": round(ratio, 2),
                "met": "floor" if is_floor else ("yes" if ratio <= GOAL_RATIO else "no"),
                "load": _load(),
            }
        )
    return pd.DataFrame.from_records(rows)
