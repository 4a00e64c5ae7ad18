"""``pinlab simulate``: replay a store's histories against pinning strategies."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pinlab.commands._common import (
    err_console,
    load_store_frames,
    parse_time,
    usage_errors,
)
from pinlab.commands._options import (
    MAX_DAYS,
    MemoryLimitOption,
    memory_budget,
    number_in,
    valid_time,
)
from pinlab.commands._output import say, shown
from pinlab.commands.history import DEFAULT_DB, write_table
from pinlab.errors import PinlabError
from pinlab.memory import MemoryBudget
from pinlab.pins import Semantics
from pinlab.store import open_store
from pinlab.survival import (
    ENGINES,
    SHA1_ERA_END,
    STRATEGIES,
    PinSurvival,
    checkability,
    observed_chains,
    replay,
    strategy,
)
from pinlab.survival import Engine as SurvivalEngine
from pinlab.truststores import choose_trust_stores, load_trust_stores
from pinlab.verify import TrustStore


class Engine(enum.StrEnum):
    """How the replay runs: in Python objects, or out of core in DuckDB and numpy."""

    AUTO = "auto"
    PYTHON = "python"
    DUCKDB = "duckdb"


AUTO_PYTHON_LIMIT = 200_000
"""``--engine auto`` replays up to this many ok observations in Python (every rule, about
1 ms each: a few minutes), more out of core. The size decides, never the format, so
a store and its Parquet export get the same engine and the same answer."""


@dataclass(frozen=True)
class _DataAtHand:
    ok: int
    sha1_era: int


def _data_at_hand(db: Path, memory: MemoryBudget | None = None) -> _DataAtHand:
    if not db.exists():
        raise PinlabError(f"{db}: no such store (pinlab collect or import-pem makes one)")
    with open_store(db, memory=memory) as store:
        rows = store.connection.execute(
            "SELECT count(*), count(*) FILTER (WHERE observed_at < ?) FROM observations "
            "WHERE status = 'ok'",
            [SHA1_ERA_END],
        ).fetchall()
    return _DataAtHand(int(rows[0][0]), int(rows[0][1]))


def _choose(engine: Engine, data: _DataAtHand) -> SurvivalEngine:
    if engine is Engine.AUTO:
        return ENGINES["python" if data.ok <= AUTO_PYTHON_LIMIT else "duckdb"]
    return ENGINES[engine.value]


PYTHON_MS_PER_OBSERVATION = 1.0
PYTHON_KB_PER_OBSERVATION = 22
"""The Python replay's cost per ok observation, measured by ``pinlab bench scale --sizes``
(12.6 ms and 2.6 GB for 10,000 hosts x 12 observations; its memory grew as N^0.68 from
1,000 hosts): what ``--engine auto`` quotes when it says why it chose."""


def _why(chosen: SurvivalEngine, data: _DataAtHand, budget: MemoryBudget) -> str:
    """One line: which engine ``--engine auto`` chose for this store, and why."""
    cost = (
        f"about {PYTHON_MS_PER_OBSERVATION:g} ms and {PYTHON_KB_PER_OBSERVATION:g} kB an "
        "observation there"
    )
    if chosen.out_of_core:
        return (
            f"engine {chosen.name}: {data.ok:,} ok observations is above the Python engine's "
            f"{AUTO_PYTHON_LIMIT:,} ({cost}); out of core within --memory-limit {budget}"
        )
    return (
        f"engine {chosen.name}: {data.ok:,} ok observations is within the Python engine's "
        f"{AUTO_PYTHON_LIMIT:,} ({cost}, about {_duration(data.ok * PYTHON_MS_PER_OBSERVATION)} "
        "here), which checks every rule"
    )


def _duration(ms: float) -> str:
    seconds = ms / 1000
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _caveats(chosen: SurvivalEngine, data: _DataAtHand) -> list[str]:
    """Where this engine may answer differently from the other on this data, and why."""
    notes = []
    if not chosen.signatures:
        notes.append(
            f"engine {chosen.name}: checks names, validity windows and trust anchors, not "
            "signatures or extensions (--engine python does)"
        )
    if not chosen.legacy_paths and data.sha1_era:
        notes.append(
            f"engine {chosen.name}: {data.sha1_era} of {data.ok} ok observations predate "
            f"{SHA1_ERA_END:%Y-%m-%d}; chains that validate only by SHA-1-era linkage count "
            "as unverified here (--engine python rebuilds them as legacy paths)"
        )
    return notes


def simulate_command(
    out: Annotated[Path, typer.Option("--out", help="Replay rows (.csv or .parquet).")],
    db: Annotated[Path, typer.Option("--db", help="The store.")] = DEFAULT_DB,
    strategies: Annotated[
        list[str] | None,
        typer.Option("--strategy", help=f"Repeatable; default all: {', '.join(STRATEGIES)}."),
    ] = None,
    semantics: Annotated[
        list[Semantics] | None, typer.Option("--semantics", help="Default: both.")
    ] = None,
    release_every: Annotated[
        float | None,
        typer.Option(
            "--release-every",
            help="Pin at app releases every DAYS (default: at every observation).",
            callback=number_in(0, MAX_DAYS, "days", above=True),
        ),
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option("--ca-file", help="One trust store for every date (PEM).")
    ] = None,
    validate_at: Annotated[
        str | None,
        typer.Option(
            "--validate-at",
            help="Validate every chain at this time (lab stores).",
            callback=valid_time,
        ),
    ] = None,
    truststores: Annotated[
        Path,
        typer.Option("--truststores", help="certifi release cache (pinlab truststores fetch)."),
    ] = Path("data/certifi"),
    engine: Annotated[
        Engine,
        typer.Option(
            "--engine",
            help="python: every rule, release calendars, legacy SHA-1 paths; duckdb: out of "
            "core for stores of any size (OUT is a folder of Parquet parts); auto: python "
            f"up to {AUTO_PYTHON_LIMIT:,} ok observations, duckdb above, whatever the format.",
        ),
    ] = Engine.AUTO,
    sensitivity: Annotated[
        bool,
        typer.Option(
            "--sensitivity",
            help="Also replay with the other trust store choice (certifi's history against "
            "--ca-file, or today's roots against the history) and print both summaries.",
        ),
    ] = False,
    memory_limit: MemoryLimitOption = None,
) -> None:
    """When would each pinning strategy have broken the app? One row per pin."""
    budget = memory_budget(memory_limit)
    with usage_errors():
        data = _data_at_hand(db, budget)
    chosen = _choose(engine, data)
    if engine is Engine.AUTO:
        say(shown(_why(chosen, data, budget)), err=True)
    for note in _caveats(chosen, data):
        say(shown(note), err=True)
    if chosen.out_of_core:
        if sensitivity:
            raise typer.BadParameter("--sensitivity needs --engine python", param_hint="--engine")
        with usage_errors():
            _simulate_out_of_core(db, out, strategies, semantics, release_every, ca_file,
                                  truststores, validate_at, budget)  # fmt: skip
        return
    with usage_errors():
        for name in strategies or ():
            strategy(name)
        frames = load_store_frames(db, memory=budget)
        choices = [choose_trust_stores(ca_file, truststores)]
        if sensitivity:
            choices.append(_other_trust_stores(ca_file, truststores))
        at = parse_time(validate_at) if validate_at else None
        results = []
        for stores, described in choices:
            chains = observed_chains(
                frames.observations, frames.certificates, trust_stores=stores,
                validate_at=at, scans=frames.scans,
            )  # fmt: skip
            replayed = replay(
                chains, strategies=strategies, semantics=semantics or list(Semantics),
                release_every=release_every,
            )  # fmt: skip
            results.append((described, chains, replayed))
        described, chains, replayed = results[0]
        write_table(replayed, out)
    say(f"{len(replayed)} pins replayed over {len(chains)} observations: {shown(out)}")
    # rows already on a release calendar are not thinned again
    fit_options = {"release_every": None} if release_every else {}
    for described, chains, replayed in results:
        _report(described, checkability(frames.observations, chains), replayed, fit_options)


def _report(
    described: str, checked: pd.DataFrame, replayed: pd.DataFrame, fit_options: dict[str, None]
) -> None:
    """What the survival figures rest on (trust store, observations checked and why not),
    then the fitted summary."""
    counts = dict(zip(checked["reason"], checked["observations"], strict=True))
    total = int(checked["observations"].sum() - counts["  of which SHA-1-era legacy paths"])
    say(
        f"trust stores: {described}; validated {counts['validated']} of {total} observations"
    )  # fmt: skip
    say(checked.to_string(index=False))
    if not replayed.empty:
        model = PinSurvival(trust_store=described, **fit_options).fit(replayed)  # type: ignore[arg-type]
        table = model.summary.drop(columns=["trust_store"]).round(2)
        say(table.to_string(index=False))


def _other_trust_stores(
    ca_file: Path | None, truststores: Path
) -> tuple[TrustStore | Callable[[datetime], TrustStore], str]:
    """The comparison ``--sensitivity`` adds: certifi's history against ``--ca-file``, or
    today's certifi store against the history."""
    if ca_file is not None:
        return choose_trust_stores(None, truststores)
    return TrustStore.certifi(), "today's certifi store for every date"


def _simulate_out_of_core(
    db: Path,
    out: Path,
    strategies: list[str] | None,
    semantics: list[Semantics] | None,
    release_every: float | None,
    ca_file: Path | None,
    truststores: Path,
    validate_at: str | None,
    budget: MemoryBudget,
) -> None:
    """The duckdb engine: :func:`pinlab.survival.replay_store` with a progress bar, DuckDB
    and the replay's batches within ``budget``."""
    from pinlab.survival import replay_store

    if release_every is not None:
        raise PinlabError(
            "--release-every needs --engine python (the duckdb engine pins at every observation)"
        )
    if out.suffix in (".csv", ".parquet"):
        raise PinlabError(
            f"{out}: the duckdb engine writes a folder of Parquet parts; pass a folder, or "
            "--engine python for a file"
        )
    trust, described = load_trust_stores(ca_file, truststores)
    columns = (TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    store = open_store(db, memory=budget)
    with store, Progress(*columns, console=err_console) as progress:
        task = progress.add_task("replay", total=None)
        result = replay_store(
            store, trust_store=trust, strategies=strategies,
            semantics=semantics or list(Semantics), out=out,
            validate_at=parse_time(validate_at) if validate_at else None,
            batch_rows=budget.replay_batch_rows(),
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )  # fmt: skip
    say(f"{result.pins} pins replayed over {result.observations} observations: {shown(out)}/")
    say(
        f"trust stores: {described}; validated {result.validated} of {result.observations} "
        "replayed observations (failed connections and unknown certificates are not replayed)"
    )  # fmt: skip
    if result.pins:
        summary = PinSurvival(trust_store=described).fit(result.counts).summary
        table = summary.drop(columns=["trust_store"]).round(2)
        say(table.to_string(index=False))


def register(app: typer.Typer) -> None:
    """Add ``simulate`` to the CLI."""
    app.command("simulate")(simulate_command)
