"""``pinlab updates`` (users stranded by broken pins) and ``pinlab forward`` (future rules)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from pinlab.advice.forward import (
    LE_2024_INTERMEDIATES,
    forward_replay,
    host_profiles,
    scenario_summary,
    select_intermediates,
    standard_scenarios,
)
from pinlab.advice.updates import LogNormalLag, bricked_user_days, user_breakage
from pinlab.certs import Certificate, load_certificate_file
from pinlab.commands._common import (
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
from pinlab.commands._output import say
from pinlab.commands.history import DEFAULT_DB, write_table
from pinlab.commands.recommend import (
    CaFileOption,
    DbOption,
    TruststoresOption,
)
from pinlab.errors import PinlabError
from pinlab.memory import MemoryBudget
from pinlab.pins import Semantics
from pinlab.survival import (
    STRATEGIES,
    ObservedChain,
    TrustStores,
    observed_chains,
    replay,
    strategy,
)
from pinlab.truststores import choose_trust_stores

StrategyOption = Annotated[
    list[str] | None,
    typer.Option("--strategy", help=f"Repeatable; default all: {', '.join(STRATEGIES)}."),
]


def updates_command(
    db: DbOption = DEFAULT_DB,
    release_every: Annotated[
        float,
        typer.Option(
            "--release-every",
            help="Days between app releases.",
            callback=number_in(0, MAX_DAYS, "days", above=True),
        ),
    ] = 30.0,
    expiry: Annotated[
        list[float] | None,
        typer.Option(
            "--expiry",
            help="Pin-set expiry, days after a release (repeatable; none is always shown).",
            callback=number_in(0, MAX_DAYS, "days"),
        ),
    ] = None,
    median_lag: Annotated[
        float,
        typer.Option(
            "--median-lag",
            help="Median days to install a release.",
            callback=number_in(0, MAX_DAYS, "days", above=True),
        ),
    ] = 7.0,
    lag_sigma: Annotated[
        float,
        typer.Option(
            "--lag-sigma",
            help="Log-normal spread.",
            callback=number_in(0, 10, "log-days", above=True),
        ),
    ] = 1.5,
    never: Annotated[
        float,
        typer.Option("--never", help="Share never updating.", callback=number_in(0, 1, "shares")),
    ] = 0.0,
    users: Annotated[
        float,
        typer.Option(
            "--users", help="Users per host.", callback=number_in(0, 1e12, "users", above=True)
        ),
    ] = 1000.0,
    strategies: StrategyOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Daily shares per host (.csv or .parquet).")
    ] = None,
    ca_file: CaFileOption = None,
    truststores: TruststoresOption = Path("data/certifi"),
    memory_limit: MemoryLimitOption = None,
) -> None:
    """Users stranded by broken pins, given releases every N days and slow updaters."""
    with usage_errors():
        for name in strategies or ():
            strategy(name)
        try:
            lag = LogNormalLag(median_days=median_lag, sigma=lag_sigma, never=never)
        except ValueError as error:
            raise PinlabError(str(error)) from None
        stores, described = choose_trust_stores(ca_file, truststores)
        chains = _chains(db, stores, memory_budget(memory_limit))
        replayed = replay(
            chains, strategies=strategies, semantics=[Semantics.VERIFIED],
            release_every=release_every,
        )  # fmt: skip
        # No expiry is always the first row: the baseline each expiry is compared to.
        expiries: list[float | None] = [None, *(expiry or [])]
        daily = pd.concat(
            [user_breakage(replayed, lag=lag, expiry_days=e) for e in expiries],
            ignore_index=True,
        )
        summary = bricked_user_days(daily, users=users)
        if out is not None:
            write_table(daily, out)
    say(f"trust stores: {described}", err=True)
    say(
        f"releases every {release_every:g} days; adoption: median {median_lag:g} days, "
        f"sigma {lag_sigma:g}, never {never:.0%}; per {users:g} users per host"
    )
    say(summary.round(3).to_string(index=False))


def _load(paths: list[Path]) -> list[Certificate]:
    """Certificates of PEM files, or of directories holding a ``manifest.csv`` of them."""
    certificates = []
    for path in paths:
        if path.is_dir():
            manifest = path / "manifest.csv"
            if not manifest.exists():
                raise PinlabError(f"{path}: a directory needs a manifest.csv listing its files")
            with manifest.open(newline="") as handle:
                files = [path / row["file"] for row in csv.DictReader(handle)]
        else:
            files = [path]
        for file in files:
            certificates.extend(load_certificate_file(file))
    return certificates


def forward_command(
    pool: Annotated[
        list[Path],
        typer.Option(
            "--pool",
            help="Rotating intermediates and their roots: PEM files, or a directory with "
            "a manifest.csv (../shared/data/le-hierarchy). Repeatable.",
        ),
    ],
    db: DbOption = DEFAULT_DB,
    names: Annotated[
        list[str] | None,
        typer.Option("--name", help=f"Intermediates by CN (default {LE_2024_INTERMEDIATES})."),
    ] = None,
    issued_by: Annotated[
        str | None, typer.Option("--issued-by", help="Keep intermediates of this issuer CN.")
    ] = "ISRG Root X1",
    start: Annotated[
        str | None, typer.Option("--start", help="ISO-8601.", callback=valid_time)
    ] = "2026-01-01",
    end: Annotated[
        str | None, typer.Option("--end", help="ISO-8601.", callback=valid_time)
    ] = "2030-01-01",
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    release_every: Annotated[
        float,
        typer.Option(
            "--release-every",
            help="Days between pins (app releases).",
            callback=number_in(0, MAX_DAYS, "days", above=True),
        ),
    ] = 30.0,
    strategies: StrategyOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Replay rows with scenario (.csv/.parquet).")
    ] = None,
    ca_file: CaFileOption = None,
    truststores: TruststoresOption = Path("data/certifi"),
    memory_limit: MemoryLimitOption = None,
) -> None:
    """Survival per strategy under SC-081, 6-day certificates and random rotation."""
    with usage_errors():
        for name in strategies or ():
            strategy(name)
        loaded = _load(pool)
        intermediates = select_intermediates(
            loaded, tuple(names or LE_2024_INTERMEDIATES), issued_by=issued_by
        )
        if not intermediates:
            raise PinlabError("--pool holds none of the intermediates asked for (--name)")
        roots = [c for c in loaded if c.is_ca and c.self_issued]
        try:
            scenarios = standard_scenarios(intermediates, roots)
        except ValueError as error:
            raise PinlabError(str(error)) from None
        stores, described = choose_trust_stores(ca_file, truststores)
        profiles = host_profiles(_chains(db, stores, memory_budget(memory_limit)))
        if not profiles:
            raise PinlabError(f"{db}: no host with a validated chain to profile")
        replayed = forward_replay(
            profiles, scenarios, start=parse_time(start), end=parse_time(end),
            rng=np.random.default_rng(seed), release_every=release_every, strategies=strategies,
        )  # fmt: skip
        summary = scenario_summary(replayed, baseline=scenarios[0].name)
        if out is not None:
            write_table(replayed, out)
    say(f"trust stores: {described}", err=True)
    say(f"{len(profiles)} host profiles, {len(intermediates)} rotating intermediates, seed {seed}")
    columns = ["scenario", "strategy", "pins", "breaks", "median_days", "survival_1y",
               "median_vs_baseline"]  # fmt: skip
    say(summary[columns].round(3).to_string(index=False))


def register(app: typer.Typer) -> None:
    """Add ``updates`` and ``forward`` to the CLI."""
    app.command("updates")(updates_command)
    app.command("forward")(forward_command)


def _chains(db: Path, stores: TrustStores, memory: MemoryBudget) -> list[ObservedChain]:
    frames = load_store_frames(db, memory=memory)
    return observed_chains(
        frames.observations, frames.certificates, trust_stores=stores, scans=frames.scans
    )
