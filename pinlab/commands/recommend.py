"""``pinlab recommend`` (a pin set with a backup for a host), ``pinlab audit`` (check one)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from pinlab.advice import PinConfig, lint, parse_config, score
from pinlab.advice.pinset import okhttp_snippet
from pinlab.advice.platforms import govern
from pinlab.advice.recommend import (
    DEFAULT_HORIZON_DAYS,
    Advice,
    advise,
    catalog_from_frames,
    host_chains,
)
from pinlab.certs import load_certificate_file
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
from pinlab.commands._output import say, shown
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
        float,
        typer.Option(
            "--horizon",
            help="Days a pin set should hold.",
            callback=number_in(0, MAX_DAYS, "days", above=True),
        ),
    ] = DEFAULT_HORIZON_DAYS,
    ca_file: CaFileOption = None,
    truststores: TruststoresOption = Path("data/certifi"),
    memory_limit: MemoryLimitOption = None,
) -> None:
    """Suggest a pin set with a backup for HOST, ranked within the history the store has."""
    with usage_errors():
        stores, described = choose_trust_stores(ca_file, truststores)
        memory = memory_budget(memory_limit)
        observations, certificates, scans = load_store_frames(db, memory=memory)
        chains = host_chains(observations, certificates, [host], trust_stores=stores, scans=scans)
        catalog = catalog_from_frames(observations, certificates, chains)
        if not chains:
            hosts = sorted(set(observations["host"]))
            raise PinlabError(
                f"no observation of {host!r} in {db}; hosts: {', '.join(hosts[:10]) or 'none'}"
                + (f" and {len(hosts) - 10} more" if len(hosts) > 10 else "")
            )
        advice = advise(chains, host, horizon_days=horizon, catalog=catalog)
    _print_advice(advice, described, horizon)


def _say(text: str) -> None:
    say(shown(text))


def _print_advice(advice: Advice, described: str, horizon: float) -> None:
    # The trust store decides what counts as history: it belongs on stdout, with its effect.
    _say(
        f"trust store: {described}; validated {advice.validated} of {advice.observations} "
        f"observations of {advice.host}"
    )
    _say(f"{advice.host}: {advice.history}")
    if advice.ranked:
        reach = min(horizon, advice.followup_days)
        _say(f"pin sets ranked over {int(reach)} days (horizon {horizon:.0f}), each with a backup:")
    else:
        _say("pin sets, unranked (ordered by protection alone), each with a backup:")
    for row in advice.table.itertuples():
        place = f"{row.rank}." if advice.ranked else "-"
        mark = ("held" if row.held else "broke") if advice.ranked else "unranked"
        _say(f"{place} {mark:<8} {row.strategy:<17} {row.explanation}")
    label = "top pick" if advice.ranked else "unranked suggestion"
    _say(f"pin set ({label}: {advice.top}, from the chain observed {advice.pinned_from.date()}):")
    for pin in advice.pin_set:
        _say(f"  {pin.pin}  {pin.role:<12} {pin.name}: {pin.why}")
    check = advice.check
    _say(
        f"this set over the history, as audit scores it: {check['accepted']} accepted, "
        f"{check['rejected']} rejected; {check['verdict']}"
    )
    _say("OkHttp:")
    for line in okhttp_snippet(advice.host, advice.pin_set).splitlines():
        _say("  " + line)


def audit_command(
    config: Annotated[Path, typer.Argument(help="OkHttp source, NSC XML, TrustKit, plist.")],
    db: DbOption = DEFAULT_DB,
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="Time for expiry checks, ISO-8601 (default: now).", callback=valid_time
        ),
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
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object for machines.")] = False,
    memory_limit: MemoryLimitOption = None,
) -> None:
    """Lint a pin configuration and replay it against the history in the store.

    Exit status 1 when an error or warning is found or a host's latest chain is rejected,
    2 when the configuration cannot be read at all.
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
        memory = memory_budget(memory_limit)
        observations, certificates, scans = load_store_frames(db, memory=memory)
        hosts = _matching_hosts(parsed, observations)
        chains = host_chains(observations, certificates, hosts, trust_stores=stores, scans=scans)
        findings = lint(parsed, chains, at=now, rotating=rotating_keys)
        scores = score(parsed, chains)
    if as_json:
        typer.echo(json.dumps(audit_json(parsed, findings, scores), indent=2))
    else:
        say(shown(f"trust stores: {described}"))
        _print_audit(parsed, config, findings, scores, now)
    if findings["severity"].isin(["error", "warning"]).any() or scores["rejects_latest"].any():
        raise typer.Exit(EXIT_FINDINGS)


def audit_json(parsed: PinConfig, findings: pd.DataFrame, scores: pd.DataFrame) -> dict[str, Any]:
    """The ``pinlab audit --json`` object: format, rules, hosts, findings."""

    def when(value: Any) -> str | None:
        return None if value is None or pd.isna(value) else pd.Timestamp(value).isoformat()

    rules = [
        {
            "rule": rule.pattern, "domain": rule.domain, "platform": rule.platform,
            "include_subdomains": rule.include_subdomains,
            "pins": [str(p) for p in rule.all_pins], "expires_at": when(rule.expires_at),
            "enforced": rule.enforced and not rule.excluded, "where": rule.where,
        }
        for rule in parsed.rules
    ]  # fmt: skip
    hosts = [
        {
            "host": row["host"], "rule": row["rule"], "pins": list(row["pins"]),
            "enforced": bool(row["enforced"]), "accepted": int(row["accepted"]),
            "rejected": int(row["rejected"]),
            "rejected_before_accept": int(row["rejected_before_accept"]),
            "first_rejected_at": when(row["first_rejected_at"]),
            "broken_at": when(row["broken_at"]), "verdict": row["verdict"],
        }
        for row in scores.to_dict("records")
    ]  # fmt: skip
    return {
        "format": parsed.format, "rules": rules, "hosts": hosts,
        "findings": findings[["severity", "code", "host", "message"]].to_dict("records"),
    }  # fmt: skip


def _matching_hosts(parsed: PinConfig, observations: pd.DataFrame) -> list[str]:
    """Stored hosts an entry covers, by host name or by the SNI sent to them."""
    matched = set()
    for host, sni in zip(observations["host"], observations["sni"], strict=True):
        names = [str(host)] + ([sni] if isinstance(sni, str) and sni else [])
        if any(govern(parsed, name).rules for name in names):
            matched.add(str(host))
    return sorted(matched)


def _print_audit(
    parsed: PinConfig, config: Path, findings: pd.DataFrame, scores: pd.DataFrame, now: datetime
) -> None:
    head = f"{config}: {parsed.format}, {len(parsed.rules)} rule(s), checked at {now.date()}"
    say(shown(head))
    for row in findings.itertuples():
        line = f"{row.severity}: {row.host}: [{row.code}] {row.message}"
        say(shown(line))
    for row in scores.itertuples():
        enforced = "" if row.enforced else " (pins not checked)"
        line = (
            f"history: {row.host} governed by {row.rule}{enforced}: {row.accepted} accepted, "
            f"{row.rejected} rejected ({row.rejected_before_accept} before the first "
            f"acceptance); {row.verdict}"
        )
        say(shown(line))


def register(app: typer.Typer) -> None:
    """Add ``recommend`` and ``audit`` to the CLI."""
    app.command("recommend")(recommend_command)
    app.command("audit")(audit_command)
