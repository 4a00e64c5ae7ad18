"""``pinlab simulate``: replay a store's histories against pinning strategies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pinlab.commands._common import (
    console,
    err_console,
    load_store_frames,
    parse_time,
    usage_errors,
)
from pinlab.commands.history import DEFAULT_DB, write_table
from pinlab.pins import Semantics
from pinlab.strategies import STRATEGIES, strategy
from pinlab.survival import PinSurvival, observed_chains, replay
from pinlab.truststores import choose_trust_stores


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
) -> None:
    """When would each pinning strategy have broken the app? One row per pin."""
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


def register(app: typer.Typer) -> None:
    """Add ``simulate`` to the CLI."""
    app.command("simulate")(simulate_command)
