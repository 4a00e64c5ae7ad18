"""``pinlab simulate``: replay a store's histories against pinning strategies."""

from __future__ import annotations

import enum
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
from pinlab.store import is_dataset, open_store
from pinlab.survival import STRATEGIES, PinSurvival, observed_chains, replay, strategy
from pinlab.truststores import choose_trust_stores, load_trust_stores


class Engine(enum.StrEnum):
    """How the replay runs: in Python objects, or out of core in DuckDB and numpy."""

    AUTO = "auto"
    PYTHON = "python"
    DUCKDB = "duckdb"


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
            "core for stores of any size (OUT is a folder of Parquet parts); auto: duckdb "
            "for a dataset folder, python for a DuckDB file.",
        ),
    ] = Engine.AUTO,
) -> None:
    """When would each pinning strategy have broken the app? One row per pin."""
    if engine is Engine.DUCKDB or (engine is Engine.AUTO and is_dataset(db)):
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
        raise PinlabError("--release-every needs --engine python (pins at every observation)")
    if out.suffix in (".csv", ".parquet"):
        raise PinlabError(f"{out}: the duckdb engine writes a folder of Parquet parts")
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
