"""The measuring method: calibrated loops, warm-up, many runs, median and spread.

It follows pyperf's method inside one process. A *run* calls the operation ``loops`` times
back to back and divides the elapsed :func:`time.perf_counter_ns` by ``loops``; ``loops`` is
calibrated (doubled) until one run lasts at least ``min_run_ns``, so that the clock's
resolution and the loop's own cost vanish. Warm-up runs are discarded (caches, lazy
imports, branch predictors), then ``runs`` runs are kept and summarised by their median and
inter-quartile range, which a few runs disturbed by other processes cannot move much.

Absolute figures on a shared machine are noisy; :func:`measure_paired` therefore times an
operation and its baseline (the limit) in alternating runs, so that both see the same
moments of the machine and their ratio holds when the load changes mid-run.

Operations too slow to loop (a TLS handshake) are timed call by call with :func:`sample`,
which keeps every value so that p50 and p99 can be read.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Measurement", "Settings", "measure", "measure_paired", "sample", "summarise"]


@dataclass(frozen=True, slots=True)
class Settings:
    """How hard to measure. :meth:`full` for figures, :meth:`quick` for CI."""

    runs: int
    warmups: int
    min_run_ns: int
    max_loops: int = 1 << 24

    @classmethod
    def full(cls) -> Settings:
        """15 kept runs of at least 10 ms each, after two warm-up runs."""
        return cls(runs=15, warmups=2, min_run_ns=10_000_000)

    @classmethod
    def quick(cls) -> Settings:
        """5 kept runs of at least 0.5 ms: a shape check, not a figure to quote."""
        return cls(runs=5, warmups=1, min_run_ns=500_000)


@dataclass(frozen=True, slots=True)
class Measurement:
    """Per-call times of one operation, in nanoseconds, one value per run."""

    values_ns: tuple[float, ...]
    loops: int

    @property
    def runs(self) -> int:
        """How many values (kept runs, or calls for :func:`sample`)."""
        return len(self.values_ns)

    @property
    def median_ns(self) -> float:
        """Median per-call time."""
        return statistics.median(self.values_ns)

    @property
    def iqr_ns(self) -> float:
        """Inter-quartile range of the per-call times (0 with fewer than two values)."""
        if len(self.values_ns) < 2:
            return 0.0
        q1, _, q3 = statistics.quantiles(self.values_ns, n=4, method="inclusive")
        return q3 - q1

    @property
    def stdev_ns(self) -> float:
        """Standard deviation of the per-call times (0 with fewer than two values)."""
        return statistics.stdev(self.values_ns) if len(self.values_ns) > 1 else 0.0

    def percentile_ns(self, percent: int) -> float:
        """The ``percent``-th percentile (1 to 99, inclusive method), e.g. 99 for p99."""
        if not 1 <= percent <= 99:
            raise ValueError(f"percentile must be within 1..99, not {percent}")
        if len(self.values_ns) < 2:
            return self.values_ns[0]
        return statistics.quantiles(self.values_ns, n=100, method="inclusive")[percent - 1]

    def merged(self, other: Measurement) -> Measurement:
        """The values of both measurements pooled (e.g. the limit before and after)."""
        return Measurement(self.values_ns + other.values_ns, max(self.loops, other.loops))


def _run(operation: Callable[[], object], loops: int) -> int:
    clock = time.perf_counter_ns
    loop = range(loops)
    started = clock()
    for _ in loop:
        operation()
    return clock() - started


def _calibrate(operation: Callable[[], object], settings: Settings) -> int:
    operation()  # first call outside any timing: lazy imports, caches
    loops = 1
    while loops < settings.max_loops:
        if _timed(operation, loops) >= settings.min_run_ns:
            break
        loops *= 2
    for _ in range(settings.warmups):
        _timed(operation, loops)
    return loops


def measure(operation: Callable[[], object], settings: Settings) -> Measurement:
    """Time ``operation`` (no arguments) with calibrated loops; see the module docstring.

    The garbage collector is paused during each run, as pyperf and timeit do, so that a
    collection triggered by an earlier allocation is not billed to a random run.
    """
    loops = _calibrate(operation, settings)
    values = tuple(_timed(operation, loops) / loops for _ in range(settings.runs))
    return Measurement(values, loops)


def measure_paired(
    operation: Callable[[], object], baseline: Callable[[], object], settings: Settings
) -> tuple[Measurement, Measurement]:
    """Time ``operation`` and ``baseline`` in alternating runs (A B, B A, ...).

    Each keeps its own calibrated loop count. Returns both measurements, whose medians
    cover the same stretch of time, so their ratio is the figure to trust.
    """
    loops = _calibrate(operation, settings)
    base_loops = _calibrate(baseline, settings)
    values: list[float] = []
    base_values: list[float] = []
    for run in range(settings.runs):
        if run % 2:
            base_values.append(_timed(baseline, base_loops) / base_loops)
            values.append(_timed(operation, loops) / loops)
        else:
            values.append(_timed(operation, loops) / loops)
            base_values.append(_timed(baseline, base_loops) / base_loops)
    return Measurement(tuple(values), loops), Measurement(tuple(base_values), base_loops)


def _timed(operation: Callable[[], object], loops: int) -> int:
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _run(operation, loops)
    finally:
        if enabled:
            gc.enable()


def sample(operation: Callable[[], object], *, calls: int, warmups: int = 3) -> Measurement:
    """Time ``calls`` single calls of a slow operation; keep every value for percentiles."""
    for _ in range(warmups):
        operation()
    clock = time.perf_counter_ns
    values: list[float] = []
    for _ in range(calls):
        started = clock()
        operation()
        values.append(float(clock() - started))
    return Measurement(tuple(values), 1)


def summarise(values_ns: Sequence[float]) -> Measurement:
    """Wrap values collected elsewhere (e.g. interleaved samples) as a measurement."""
    return Measurement(tuple(float(value) for value in values_ns), 1)
