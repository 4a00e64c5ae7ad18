"""``pinlab bench``: measure what pinning costs (``pins``) and what collection costs (``collect``).

A thin skin over :mod:`pinlab.bench`: progress on stderr, a table on stdout, ``--out`` for
the benchmark notebook. Figures on a shared machine are noisy; the table prints each beside
its ratio to the limit measured in the same run, which is the figure to compare.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, cast

import pandas as pd
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pinlab.commands._common import EXIT_USAGE, console, err_console, usage_errors
from pinlab.commands._options import valid_memory_limit
from pinlab.commands._output import say, shown

PYTHON_ENGINE_MAX = 10_000
"""``bench scale --sizes`` runs the Python engine up to this many hosts (about 13 ms a host)."""
QUICK = typer.Option("--quick", help="Few combinations and runs: checks the suite in seconds.")
OUT = typer.Option("--out", help="Also write the rows and the machine to FILE.json or FILE.csv.")


def _duration(ns: Any) -> str:
    if ns is None or (isinstance(ns, float) and math.isnan(ns)):
        return ""
    if ns >= 1_000_000:
        return f"{ns / 1_000_000:.2f} ms"
    if ns >= 1_000:
        return f"{ns / 1_000:.2f} µs"
    return f"{ns:.0f} ns"


def _number(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return format(value, fmt)


def pins_table(rows: pd.DataFrame) -> Table:
    """The rich table of ``pinlab bench pins``: one line per row, ratios beside figures."""
    table = Table(
        title="pinlab bench pins",
        caption=(
            "x limit: median / limit (sha256 over the SPKI + set lookup, same key type, same "
            "run); /cert: per certificate examined; % hs: share of a loopback handshake"
        ),
    )
    table.add_column("operation", overflow="fold")
    table.add_column("implementation", overflow="fold")
    for name in ("key", "len", "pins", "median", "IQR", "p99", "runs", "x limit", "/cert", "% hs"):
        table.add_column(name, justify="right", no_wrap=True)
    previous = None
    for row in rows.to_dict(orient="records"):
        if previous is not None and row["operation"] != previous:
            table.add_section()
        previous = row["operation"]
        table.add_row(
            str(row["operation"]),
            str(row["implementation"]),
            str(row["key_type"]),
            str(row["chain_length"]),
            str(row["pin_set_size"] or ""),
            _duration(row["median_ns"]),
            _duration(row["iqr_ns"]),
            _duration(row["p99_ns"]),
            str(row["runs"]),
            _number(row["ratio_to_limit"], ".2f"),
            _number(row["ratio_per_certificate"], ".2f"),
            _number(row["overhead_pct_of_handshake"], ".1f"),
        )
    return table


def _frame_table(frame: pd.DataFrame, title: str) -> Table:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column))
    for values in frame.itertuples(index=False):
        table.add_row(*(_number(v, ".4g") if isinstance(v, float) else str(v) for v in values))
    return table


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


def pins(quick: Annotated[bool, QUICK] = False, out: Annotated[Path | None, OUT] = None) -> None:
    """Time the pin check against its limit, path validation, peers' checks and a handshake."""
    from pinlab.bench.output import check_suffix, write_results
    from pinlab.bench.pins import run_pins_benchmark

    with usage_errors():
        if out is not None:
            check_suffix(out)  # refuse a bad name before minutes of measuring
        with _progress() as progress:
            task = progress.add_task("starting", total=None)

            def advance(done: int, total: int, label: str) -> None:
                progress.update(task, completed=done, total=total, description=shown(label[:60]))

            report = run_pins_benchmark(quick=quick, progress=advance)
        console.print(pins_table(report.rows))
        machine = report.machine
        say(
            f"{machine['cpu_model']}, {machine['cpus_usable']} usable CPUs, load "
            f"{machine['load_average']} -> {machine['load_average_after']}; Python "
            f"{machine['python']}, cryptography {machine['cryptography']} "
            f"({machine['cryptography_openssl']}); limit drift {machine['limit_drift']}"
        )
        if out is not None:
            say(f"wrote {write_results(report, out)}")


def collect(
    quick: Annotated[bool, QUICK] = False,
    out: Annotated[Path | None, OUT] = None,
    targets: Annotated[
        int | None,
        typer.Option(min=1, help="Handshakes per client (default 12,000; 400 with --quick)."),
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(min=1, help="Processes of the multi-process rows (default: the cores)."),
    ] = None,
) -> None:
    """Time chain collection against loopback servers (pinlab.bench.collect)."""
    from pinlab.bench.machine import describe_machine
    from pinlab.bench.output import check_suffix, write_results
    from pinlab.bench.pins import BenchReport

    try:
        module = importlib.import_module("pinlab.bench.collect")
    except ModuleNotFoundError as error:
        if error.name != "pinlab.bench.collect":
            raise
        say(
            "pinlab: error: the collect benchmark (pinlab/bench/collect.py) is not part of "
            "this installation yet",
            err=True,
        )
        raise typer.Exit(EXIT_USAGE) from None
    run = cast(Callable[..., pd.DataFrame], module.run_collect_benchmark)
    with usage_errors():
        if out is not None:
            check_suffix(out)
        frame = run(quick=quick, targets=targets, processes=processes)
        console.print(_frame_table(frame, "pinlab bench collect"))
        if out is not None:
            written = write_results(BenchReport(frame, describe_machine()), out)
            say(f"wrote {written}")


def scale(
    quick: Annotated[bool, QUICK] = False,
    out: Annotated[Path | None, OUT] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Keep the synthetic dataset here (reused).")
    ] = None,
    sizes: Annotated[
        str | None,
        typer.Option(
            "--sizes",
            help="Instead: history and both simulate engines at these host counts (e.g. "
            "1k,10k,100k,1M): time per host, peak RSS, fitted exponents.",
            callback=_valid_sizes,
        ),
    ] = None,
    memory_limit: Annotated[
        str,
        typer.Option(
            "--memory-limit",
            help="--memory-limit given to each command of --sizes.",
            callback=valid_memory_limit,
        ),
    ] = "4GB",
    python_max: Annotated[
        int,
        typer.Option("--python-max", min=1, help="Largest size --sizes runs the Python engine at."),
    ] = PYTHON_ENGINE_MAX,
) -> None:
    """Campaigns over 1-4 Dask workers; ledger and survival over 10M hosts (bench.scale).

    With --sizes: the analysis commands as N grows (bench.sizes).
    """
    from pinlab.bench.machine import describe_machine
    from pinlab.bench.output import check_suffix, write_results
    from pinlab.bench.pins import BenchReport
    from pinlab.bench.scale import run_scale_benchmark

    with usage_errors():
        if out is not None:
            check_suffix(out)

        def tell(text: str) -> None:
            say(f"bench scale: {text}", err=True)

        if sizes is not None:
            frame = _sizes(sizes, memory_limit, python_max, data, tell)
        else:
            frame = run_scale_benchmark(quick=quick, directory=data, progress=tell)
            console.print(_frame_table(frame, "pinlab bench scale"))
        if out is not None:
            written = write_results(BenchReport(frame, describe_machine()), out)
            say(f"wrote {written}")


def _valid_sizes(value: str | None) -> str | None:
    from pinlab.bench.sizes import parse_sizes

    if value is not None:
        try:
            parse_sizes(value)
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None
    return value


def _sizes(
    sizes: str, memory_limit: str, python_max: int, data: Path | None, tell: Callable[[str], None]
) -> pd.DataFrame:
    """Run ``bench scale --sizes``, print its table and exponents; the rows, exponents added."""
    from pinlab.bench.sizes import parse_sizes, run_sizes_benchmark, sizes_text

    frame, fits = run_sizes_benchmark(
        parse_sizes(sizes), memory_limit=memory_limit, python_max=python_max,
        directory=data, progress=tell,
    )  # fmt: skip
    say(f"pinlab bench scale --sizes {sizes} --memory-limit {memory_limit}")
    say(sizes_text(frame, fits))
    return frame.merge(fits, on="command", how="left")


def ct(
    entries: Annotated[int, typer.Option(min=100, help="Entries in the local log.")] = 1_000_000,
    quick: Annotated[bool, QUICK] = False,
    modes: Annotated[
        str,
        typer.Option(
            help="Comma-separated: filtered, all (parse pool), all-1 (in process, the "
            "baseline), parse (one core, no store), signatures (the signature checks "
            "alone: the floor)."
        ),
    ] = "filtered,all,all-1,parse,signatures",
    out: Annotated[Path | None, OUT] = None,
) -> None:
    """Entries/s a CT backfill parses and stores from a local log, and its memory."""
    from pinlab.bench.ct import MODES, run_ct_benchmark, shown_columns
    from pinlab.bench.machine import describe_machine
    from pinlab.bench.output import check_suffix, write_results
    from pinlab.bench.pins import BenchReport

    with usage_errors():
        if out is not None:
            check_suffix(out)
        chosen = [m.strip() for m in modes.split(",") if m.strip()]
        unknown = sorted(set(chosen) - set(MODES))
        if unknown or not chosen:
            raise typer.BadParameter(
                f"unknown mode {', '.join(unknown) or '(none)'}; choose from {', '.join(MODES)}",
                param_hint="--modes",
            )
        frame = run_ct_benchmark(entries=entries, quick=quick, modes=chosen)
        console.print(_frame_table(shown_columns(frame), "pinlab bench ct"))
        if out is not None:
            written = write_results(BenchReport(frame, describe_machine()), out)
            say(f"wrote {written}")


def history(
    hosts: Annotated[
        int | None,
        typer.Option(min=1, help="Hosts to generate (default 1,000,000; 20,000 with --quick)."),
    ] = None,
    quick: Annotated[bool, QUICK] = False,
    out: Annotated[Path | None, OUT] = None,
) -> None:
    """The renewal ledger at scale: a synthetic store of hosts x 12 observations (bench.history).

    Then the survival replay on 365 against 12 observations a host, both engines: the ratio
    of their costs (bench.replay_length).
    """
    from pinlab.bench.history import FULL_HOSTS, QUICK_HOSTS, run_history_benchmark
    from pinlab.bench.machine import describe_machine
    from pinlab.bench.output import check_suffix, write_results
    from pinlab.bench.pins import BenchReport

    with usage_errors():
        if out is not None:
            check_suffix(out)
        count = hosts if hosts is not None else (QUICK_HOSTS if quick else FULL_HOSTS)
        frame = run_history_benchmark(hosts=count, quick=quick)
        console.print(_frame_table(frame, "pinlab bench history"))
        goal = frame[frame["goal"].notna()].iloc[0]
        say(
            f"ledger + summaries of {goal['hosts']:,} hosts: {goal['seconds']:.1f} s, peak "
            f"{goal['peak_rss_mb']:.0f} MB resident; goals {goal['goal']}: "
            f"{'met' if goal['met'] else 'NOT met'}"
        )
        for row in frame[frame["ratio"].notna()].itertuples():
            say(f"{row.phase} (cost per host; linear: x30, quadratic: x900)")
        if out is not None:
            written = write_results(BenchReport(frame, describe_machine()), out)
            say(f"wrote {written}")


def cli(quick: Annotated[bool, QUICK] = False, out: Annotated[Path | None, OUT] = None) -> None:
    """Start-up of pinlab --help and pinlab pins FILE against import cryptography.x509."""
    from pinlab.bench.cli import GOAL_RATIO, run_cli_benchmark
    from pinlab.bench.machine import describe_machine
    from pinlab.bench.output import check_suffix, write_results
    from pinlab.bench.pins import BenchReport

    with usage_errors():
        if out is not None:
            check_suffix(out)
        with _progress() as progress:
            task = progress.add_task("starting pinlab", total=None)

            def report(done: int, total: int, label: str) -> None:
                progress.update(task, completed=done, total=total, description=label)

            frame = run_cli_benchmark(quick=quick, progress=report)
        console.print(_frame_table(frame, "pinlab bench cli"))
        worst = frame[frame["met"] != "floor"]["x_floor"].max()
        console.print(
            f"slowest start-up: {worst:.2f}x import cryptography.x509 (goal {GOAL_RATIO}x: "
            f"{'met' if worst <= GOAL_RATIO else 'NOT met'})",
            markup=False,
            highlight=False,
        )
        if out is not None:
            written = write_results(BenchReport(frame, describe_machine()), out)
            console.print(f"wrote {written}", markup=False, highlight=False)


def internet(
    targets: Annotated[
        int | None,
        typer.Option(min=10, help="Names in the campaign (default 20,000; 300 with --quick)."),
    ] = None,
    scenario: Annotated[
        Path | None, typer.Option(help="Scenario TOML (default data/internet/default.toml).")
    ] = None,
    quick: Annotated[bool, QUICK] = False,
    out: Annotated[Path | None, OUT] = None,
) -> None:
    """A campaign against a simulated internet on loopback, beside its bound (bench.internet)."""
    from pinlab.bench.internet import DEFAULT_SCENARIO, run_internet_benchmark
    from pinlab.bench.machine import describe_machine
    from pinlab.bench.output import check_suffix, write_results
    from pinlab.bench.pins import BenchReport

    with usage_errors():
        if out is not None:
            check_suffix(out)
        count = targets if targets is not None else (300 if quick else 20_000)

        def say(text: str) -> None:
            err_console.print(f"bench internet: {text}", markup=False, highlight=False)

        frame = run_internet_benchmark(
            targets=count, quick=quick, scenario_path=scenario or DEFAULT_SCENARIO, progress=say
        )
        shown = ["campaign", "targets", "seconds", "cpu_seconds", "bound_seconds", "x_bound",
                 "x_bare",
                 "peak_rss_mb", "projected_1m_hours", "statuses_as_planted"]  # fmt: skip
        console.print(_frame_table(frame[shown], "pinlab bench internet"))
        ours, bare = frame.iloc[0], frame.iloc[1]
        console.print(
            f"pinlab: {ours['seconds']:.1f} s = {ours['x_bound']:.2f}x the scenario's bound "
            f"({ours['bound_seconds']:.1f} s; goal 1.25x: "
            f"{'met' if ours['x_bound'] <= 1.25 else 'NOT met'}), {ours['x_bare']:.2f}x the "
            f"bare loop ({bare['seconds']:.1f} s; goal <= 1: "
            f"{'met' if ours['x_bare'] <= 1 else 'NOT met'}); peak {ours['peak_rss_mb']:.0f} MB; "
            f"1M names at these settings: {ours['projected_1m_hours']:.1f} h",
            markup=False,
            highlight=False,
        )
        if out is not None:
            written = write_results(BenchReport(frame, describe_machine()), out)
            console.print(f"wrote {written}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``bench`` group to the ``pinlab`` command."""
    group = typer.Typer(
        name="bench",
        help="Measure what a pin check costs, against its limit and its surroundings.",
        no_args_is_help=True,
    )
    group.command("pins")(pins)
    group.command("collect")(collect)
    group.command("scale")(scale)
    group.command("ct")(ct)
    group.command("history")(history)
    group.command("cli")(cli)
    group.command("internet")(internet)
    app.add_typer(group)
