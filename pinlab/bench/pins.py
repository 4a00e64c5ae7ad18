"""``pinlab bench pins``: what a pin check costs, against its limit and its surroundings.

The suite times, for every key type and chain length of its plan, the operations of
:mod:`pinlab.bench.cases` with the method of :mod:`pinlab.bench.timer`, and TLS handshakes
on loopback with :mod:`pinlab.bench.handshake`. The result is one tidy row per (operation,
implementation, key type, chain length, pin-set size).

Every figure also reads as a ratio to **the limit** of the same key type: SHA-256 over the
SPKI DER plus one set lookup. Each operation is timed in runs alternating with runs of the
limit (:func:`~pinlab.bench.timer.measure_paired`), and its ratio is its median over the
median of *those* limit runs (``limit_ns``), so a machine that gets busier halfway through
slows both sides of every ratio alike. The limit rows themselves are measured at the start
and at the end (pooled; their drift is in the machine description). On a shared machine the
ratios are the figures to quote; the nanoseconds are context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pandas as pd

from pinlab.bench.cases import (
    CHECK_OPERATIONS,
    OP_HANDSHAKE,
    OP_LIMIT,
    OP_VALIDATE_PINS,
    Case,
    certificate_cases,
    chain_cases,
    limit_case,
)
from pinlab.bench.chains import CHAIN_LENGTHS, KEY_LABELS, BenchChain, bench_chain
from pinlab.bench.handshake import IMPL_BARE, IMPL_PINNED, PIN_SET_SIZE, measure_handshakes
from pinlab.bench.machine import describe_machine
from pinlab.bench.timer import Measurement, Settings, measure, measure_paired
from pinlab.testbed.pki import KeyType

__all__ = ["COLUMNS", "BenchReport", "Plan", "run_pins_benchmark"]

PIN_SET_SIZES = (1, 2, 10, 100)
COLUMNS = (
    "operation",
    "implementation",
    "key_type",
    "chain_length",
    "pin_set_size",
    "certificates_examined",
    "median_ns",
    "iqr_ns",
    "stdev_ns",
    "p50_ns",
    "p99_ns",
    "runs",
    "loops",
    "method",
    "limit_ns",
    "ratio_to_limit",
    "ratio_per_certificate",
    "overhead_pct_of_handshake",
)
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True, slots=True)
class Plan:
    """What to measure and how hard. :meth:`full` for figures, :meth:`quick` for CI."""

    key_types: tuple[KeyType, ...]
    chain_lengths: tuple[int, ...]
    pin_set_sizes: tuple[int, ...]
    settings: Settings
    handshakes: int
    """Handshakes per variant and chain (0 skips the loopback part)."""
    mode: str

    @classmethod
    def full(cls) -> Plan:
        """Four key types, chains of 2 to 4, pin sets of 1 to 100, 400 handshakes each."""
        return cls(tuple(KEY_LABELS), CHAIN_LENGTHS, PIN_SET_SIZES, Settings.full(), 400, "full")

    @classmethod
    def quick(cls) -> Plan:
        """One key type, one chain length, few runs: checks the shape in seconds."""
        return cls((KeyType.P256,), (3,), (1, 100), Settings.quick(), 20, "quick")


@dataclass(frozen=True, slots=True)
class BenchReport:
    """The rows of one run and the machine they were measured on."""

    rows: pd.DataFrame
    machine: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Row:
    case: Case
    measurement: Measurement
    method: str
    p50_ns: float | None = None
    p99_ns: float | None = None
    overhead_pct: float | None = None
    limit: Measurement | None = None
    """The limit runs interleaved with this row's runs; None: use the limit row."""


def _micro_cases(plan: Plan, chains: dict[tuple[KeyType, int], BenchChain]) -> Iterator[Case]:
    for key_type in plan.key_types:
        yield from certificate_cases(chains[key_type, plan.chain_lengths[0]])
        for length in plan.chain_lengths:
            yield from chain_cases(chains[key_type, length], plan.pin_set_sizes)


def run_pins_benchmark(
    *, quick: bool = False, plan: Plan | None = None, progress: Progress | None = None
) -> BenchReport:
    """Run the suite (``plan``, or the full or quick one) and return its tidy rows."""
    plan = plan or (Plan.quick() if quick else Plan.full())
    report = progress or (lambda done, total, label: None)
    machine = describe_machine()
    report(0, 1, "making the test PKIs")
    chains = {
        (key_type, length): bench_chain(key_type, length)
        for key_type in plan.key_types
        for length in plan.chain_lengths
    }
    limits = {kt: limit_case(chains[kt, plan.chain_lengths[0]]) for kt in plan.key_types}
    cases = list(_micro_cases(plan, chains))
    combos = [(kt, length) for kt in plan.key_types for length in plan.chain_lengths]
    total = 2 * len(limits) + len(cases) + (len(combos) if plan.handshakes else 0)
    done = 0

    def step(label: str) -> None:
        nonlocal done
        report(done, total, label)
        done += 1

    before: dict[KeyType, Measurement] = {}
    for key_type, case in limits.items():
        step(f"limit {case.key_type}")
        before[key_type] = measure(case.run, plan.settings)
    rows: list[_Row] = []
    by_label = {case.key_type: case for case in limits.values()}
    for case in cases:
        step(f"{case.operation} | {case.implementation} | {case.key_type}/{case.chain_length}")
        measured, limit = measure_paired(case.run, by_label[case.key_type].run, plan.settings)
        rows.append(_Row(case, measured, "calibrated loop, paired with the limit", limit=limit))
    handshakes: dict[tuple[str, int], float] = {}
    if plan.handshakes:
        for key_type, length in combos:
            chain = chains[key_type, length]
            step(f"{OP_HANDSHAKE} {chain.label}/{length}")
            rows += _handshake_rows(chain, plan.handshakes, handshakes)
    drift: dict[str, float] = {}
    limit_rows = []
    for key_type, case in limits.items():
        step(f"limit {case.key_type} (again)")
        after = measure(case.run, plan.settings)
        drift[case.key_type] = round(after.median_ns / before[key_type].median_ns, 3)
        limit_rows.append(_Row(case, before[key_type].merged(after), "calibrated loop"))
    rows = limit_rows + rows
    report(total, total, "done")
    machine.update(
        mode=plan.mode,
        timer={
            "runs": plan.settings.runs,
            "warmups": plan.settings.warmups,
            "min_run_ns": plan.settings.min_run_ns,
            "clock": "time.perf_counter_ns",
        },
        handshakes_per_variant=plan.handshakes,
        limit_drift=drift,
        load_average_after=describe_machine()["load_average"],
    )
    return BenchReport(_frame(rows, handshakes), machine)


def _handshake_rows(
    chain: BenchChain, calls: int, bare_p50: dict[tuple[str, int], float]
) -> list[_Row]:
    sample = measure_handshakes(chain, calls=calls)
    bare_median, pinned_median = sample.bare.median_ns, sample.pinned.median_ns
    bare_p50[chain.label, chain.length] = bare_median
    rows = []
    for implementation, values, size, overhead in (
        (IMPL_BARE, sample.bare, 0, None),
        (IMPL_PINNED, sample.pinned, PIN_SET_SIZE, 100 * (pinned_median / bare_median - 1)),
    ):
        case = Case(OP_HANDSHAKE, implementation, chain.label, chain.length, size, 0, _never)
        rows.append(
            _Row(
                case,
                values,
                "per call, interleaved",
                values.percentile_ns(50),
                values.percentile_ns(99),
                overhead,
            )
        )
    return rows


def _never() -> None:  # pragma: no cover - handshake rows are timed by the handshake module
    raise AssertionError("handshake rows are not timed through their case")


def _frame(rows: list[_Row], bare_p50: dict[tuple[str, int], float]) -> pd.DataFrame:
    limit = {row.case.key_type: row.measurement.median_ns for row in rows if _is_limit(row)}
    records = []
    for row in rows:
        case, measurement = row.case, row.measurement
        median = measurement.median_ns
        base = row.limit.median_ns if row.limit is not None else limit.get(case.key_type)
        overhead = row.overhead_pct
        handshake = bare_p50.get((case.key_type, case.chain_length))
        if overhead is None and case.operation == OP_VALIDATE_PINS and handshake:
            overhead = 100 * median / handshake
        per_certificate = case.operation in CHECK_OPERATIONS or case.operation == OP_LIMIT
        records.append(
            {
                "operation": case.operation,
                "implementation": case.implementation,
                "key_type": case.key_type,
                "chain_length": case.chain_length,
                "pin_set_size": case.pin_set_size,
                "certificates_examined": case.examined,
                "median_ns": median,
                "iqr_ns": measurement.iqr_ns,
                "stdev_ns": measurement.stdev_ns,
                "p50_ns": row.p50_ns,
                "p99_ns": row.p99_ns,
                "runs": measurement.runs,
                "loops": measurement.loops,
                "method": row.method,
                "limit_ns": base,
                "ratio_to_limit": median / base if base else None,
                "ratio_per_certificate": (
                    median / (base * case.examined) if base and per_certificate else None
                ),
                "overhead_pct_of_handshake": overhead,
            }
        )
    return pd.DataFrame.from_records(records, columns=list(COLUMNS))


def _is_limit(row: _Row) -> bool:
    return row.case.operation == OP_LIMIT
