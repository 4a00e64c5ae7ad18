"""``pinlab simulate``: replay a store's histories against pinning strategies."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pinlab.commands._common import (
    console,
    err_console,
    load_store_frames,
    parse_time,
    usage_errors,
)
from pinlab.commands.history import DEFAULT_DB, write_table
from pinlab.errors import PinlabError
from pinlab.pins import Semantics
from pinlab.store import open_store
from pinlab.survival import (
    ENGINES,
    SHA1_ERA_END,
    STRATEGIES,
    PinSurvival,
    observed_chains,
    replay,
    strategy,
)
from pinlab.survival import Engine as SurvivalEngine
from pinlab.truststores import choose_trust_stores, load_trust_stores


class Engine(enum.StrEnum):
    """How the replay runs: in Python objects, or out of core in DuckDB and numpy."""

    AUTO = "auto"
    PYTHON = "python"
    DUCKDB = "duckdb"


AUTO_PYTHON_LIMIT = 200_000
"""``--engine auto`` replays up to this many ok observations in Python (every rule, about
0.4 ms each: under two minutes), more out of core. The size decides, never the format, so
a store and its Parquet export get the same engine and the same answer."""


@dataclass(frozen=True)
class _DataAtHand:
    ok: int
    sha1_era: int


def _data_at_hand(db: Path) -> _DataAtHand:
    if not db.exists():
        raise PinlabError(f"{db}: no such store (pinlab collect or import-pem makes one)")
    with open_store(db) as store:
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
        ),
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option("--ca-file", help="One trust store for every date (PEM).")
    ] = None,
    validate_at: Annotated[
        str | None,
        typer.Option("--validate-at", help="Validate every chain at this time (lab stores)."),
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
) -> None:
    """When would each pinning strategy have broken the app? One row per pin."""
    with usage_errors():
        data = _data_at_hand(db)
    chosen = _choose(engine, data)
    for note in _caveats(chosen, data):
        err_console.print(note, markup=False, highlight=False)
    if chosen.out_of_core:
        with usage_errors():
            _simulate_out_of_core(db, out, strategies, semantics, release_every, ca_file,
                                  truststores, validate_at)  # fmt: skip
        return
    with usage_errors():
        for name in strategies or ():
            strategy(name)
        stores, described = choose_trust_stores(ca_file, truststores)
        frames = load_store_frames(db)
        chains = observed_chains(
            frames.observations,
            frames.certificates,
            trust_stores=stores,
            validate_at=parse_time(validate_at) if validate_at else None,
            scans=frames.scans,
        )
        replayed = replay(
            chains, strategies=strategies, semantics=semantics or list(Semantics),
            release_every=release_every,
        )  # fmt: skip
        write_table(replayed, out)
    err_console.print(f"trust stores: {described}", markup=False, highlight=False)
    console.print(f"{len(replayed)} pins replayed over {len(chains)} observations: {out}")
    if not replayed.empty:
        summary = PinSurvival().fit(replayed).summary.round(1)
        console.print(summary.to_string(index=False), markup=False, highlight=False)


def _simulate_out_of_core(
    db: Path,
    out: Path,
    strategies: list[str] | None,
    semantics: list[Semantics] | None,
    release_every: float | None,
    ca_file: Path | None,
    truststores: Path,
    validate_at: str | None,
) -> None:
    """The duckdb engine: :func:`pinlab.survival.replay_store` with a progress bar."""
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
    with open_store(db) as store, Progress(*columns, console=err_console) as progress:
        task = progress.add_task("replay", total=None)
        result = replay_store(
            store, trust_store=trust, strategies=strategies,
            semantics=semantics or list(Semantics), out=out,
            validate_at=parse_time(validate_at) if validate_at else None,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )  # fmt: skip
    err_console.print(f"trust stores: {described}", markup=False, highlight=False)
    console.print(f"{result.pins} pins replayed over {result.observations} observations: {out}/")
    if result.pins:
        summary = PinSurvival().fit(result.counts).summary.round(1)
        console.print(summary.to_string(index=False), markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``simulate`` to the CLI."""
    app.command("simulate")(simulate_command)
