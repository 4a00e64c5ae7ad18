"""``pinlab recommend`` (what to pin for a host) and ``pinlab audit`` (check a pin config)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from pinlab.advice import PinRule, lint, parse_config, score
from pinlab.advice.recommend import (
    DEFAULT_HORIZON_DAYS,
    catalog_from_frames,
    host_chains,
    recommend,
)
from pinlab.certs import load_certificate_file
from pinlab.commands._common import (
    console,
    err_console,
    load_store_frames,
    parse_time,
    usage_errors,
)
from pinlab.commands.history import DEFAULT_DB
from pinlab.errors import PinlabError
from pinlab.truststores import choose_trust_stores

EXIT_FINDINGS = 1

DbOption = Annotated[Path, typer.Option("--db", help="The store.")]
CaFileOption = Annotated[
    Path | None, typer.Option("--ca-file", help="One trust store for every date (PEM).")
]
TruststoresOption = Annotated[
    Path,
    typer.Option("--truststores", help="certifi release cache (pinlab truststores fetch)."),
]


def recommend_command(
    host: Annotated[str, typer.Argument(help="The host, as stored.")],
    db: DbOption = DEFAULT_DB,
    horizon: Annotated[
        float, typer.Option("--horizon", help="Days a pin must survive.")
    ] = DEFAULT_HORIZON_DAYS,
    ca_file: CaFileOption = None,
    truststores: TruststoresOption = Path("data/certifi"),
) -> None:
    """Rank pinning strategies for HOST from its history: protection among survivors."""
    with usage_errors():
        stores, described = choose_trust_stores(ca_file, truststores)
        observations, certificates, scans = load_store_frames(db)
        chains = host_chains(observations, certificates, [host], trust_stores=stores, scans=scans)
        catalog = catalog_from_frames(observations, certificates, chains)
        if not chains:
            hosts = sorted(set(observations["host"]))
            raise PinlabError(
                f"no observation of {host!r} in {db}; hosts: {', '.join(hosts[:10]) or 'none'}"
                + (f" and {len(hosts) - 10} more" if len(hosts) > 10 else "")
            )
        ranked = recommend(chains, host, horizon_days=horizon, catalog=catalog)
    err_console.print(f"trust stores: {described}", markup=False, highlight=False)
    console.print(f"{host}: strategies ranked for a {horizon:.0f}-day horizon", markup=False)
    for row in ranked.itertuples():
        mark = "ok " if row.survives else "-- "
        console.print(
            f"{row.rank}. {mark}{row.strategy:<18} {row.explanation}",
            markup=False, highlight=False,
        )  # fmt: skip


def audit_command(
    config: Annotated[Path, typer.Argument(help="OkHttp source, NSC XML, TrustKit, plist.")],
    db: DbOption = DEFAULT_DB,
    at: Annotated[
        str | None, typer.Option("--at", help="Time for expiry checks, ISO-8601 (default: now).")
    ] = None,
    rotating: Annotated[
        list[Path] | None,
        typer.Option(
            "--rotating",
            help="PEM of intermediates a CA rotates among at random (repeatable).",
        ),
    ] = None,
    ca_file: CaFileOption = None,
    truststores: TruststoresOption = Path("data/certifi"),
) -> None:
    """Lint a pin configuration and score it against the history in the store.

    Exit status 1 when a warning is found or a rule rejects a host's latest chain, 2 when
    the configuration cannot be read.
    """
    with usage_errors():
        now = parse_time(at)
        try:
            data = config.read_bytes()
        except OSError as error:
            raise PinlabError(f"{config}: {error.strerror or error}") from None
        parsed = parse_config(data, name=config.name)
        rotating_keys = {
            c.spki_sha256 for path in rotating or () for c in load_certificate_file(path)
        }
        stores, described = choose_trust_stores(ca_file, truststores)
        observations, certificates, scans = load_store_frames(db)
        hosts = _matching_hosts(parsed.rules, observations)
        chains = host_chains(observations, certificates, hosts, trust_stores=stores, scans=scans)
        findings = lint(parsed, chains, at=now, rotating=rotating_keys)
        scores = score(parsed, chains)
    err_console.print(f"trust stores: {described}", markup=False, highlight=False)
    _print_audit(parsed.format, config, len(parsed.rules), findings, scores, now)
    if (findings["severity"] == "warning").any() or scores["rejects_latest"].any():
        raise typer.Exit(EXIT_FINDINGS)


def _matching_hosts(rules: Sequence[PinRule], observations: pd.DataFrame) -> list[str]:
    """Stored hosts a rule covers, by host name or by the SNI sent to them."""
    matched = set()
    for host, sni in zip(observations["host"], observations["sni"], strict=True):
        names = [str(host)] + ([sni] if isinstance(sni, str) and sni else [])
        if any(rule.applies_to(name) for rule in rules for name in names):
            matched.add(str(host))
    return sorted(matched)


def _print_audit(
    kind: str,
    config: Path,
    rules: int,
    findings: pd.DataFrame,
    scores: pd.DataFrame,
    now: datetime,
) -> None:
    console.print(f"{config}: {kind}, {rules} rule(s), checked at {now.date()}", markup=False)
    for row in findings.itertuples():
        console.print(
            f"{row.severity}: {row.domain}: [{row.check}] {row.message}",
            markup=False, highlight=False,
        )  # fmt: skip
    for row in scores.itertuples():
        console.print(
            f"history: {row.domain} on {row.host}: {row.verdict}", markup=False, highlight=False
        )


def register(app: typer.Typer) -> None:
    """Add ``recommend`` and ``audit`` to the CLI."""
    app.command("recommend")(recommend_command)
    app.command("audit")(audit_command)
