"""``pinlab ct log|static|crtsh``: backfill issuance history from Certificate Transparency.

A thin skin over :mod:`pinlab.ct`: options, a progress bar (entries/s, ETA) on stderr, a
summary table on stdout. CT shows when certificates were issued, not what servers served.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from pinlab.commands._common import console, err_console, usage_errors
from pinlab.commands._options import count_in, valid_rate
from pinlab.commands._output import say, shown
from pinlab.ct import (
    BackfillOptions,
    BackfillResult,
    CrtSh,
    DomainFilter,
    LogKey,
    backfill_log,
    backfill_static,
    import_crtsh,
    read_crtsh_json,
)
from pinlab.ct.crtsh import DEFAULT_URL, cached_certificate
from pinlab.ct.domains import normalise_name
from pinlab.ct.errors import CTError
from pinlab.store import Store

DEFAULT_DB = Path("data/pinlab.duckdb")

DbOption = Annotated[Path, typer.Option("--db", help="The store (DuckDB file).")]
DomainsOption = Annotated[
    Path | None,
    typer.Option("--domains", help="Keep only certificates for these names (one per line)."),
]
SubdomainsOption = Annotated[
    bool, typer.Option("--subdomains", help="A listed name also matches every name under it.")
]
LabelOption = Annotated[str | None, typer.Option(help="Free text stored with the scan.")]


def _now() -> datetime:
    return datetime.now(UTC)


def _progress(what: str) -> Progress:
    return Progress(
        TextColumn(f"[bold]{what}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
    )


def _run(what: str, job: Callable[[Callable[[int, int], None]], BackfillResult]) -> BackfillResult:
    with _progress(what) as progress:
        task = progress.add_task(what, total=None, rate="")
        started = time.monotonic()

        def report(done: int, total: int) -> None:
            rate = done / max(time.monotonic() - started, 1e-6)
            progress.update(task, completed=done, total=total, rate=f"{rate:,.0f} entries/s")

        try:
            return job(report)
        except KeyboardInterrupt:
            say("pinlab: interrupted; run the same command again to resume", err=True)
            raise typer.Exit(130) from None


def _summary(result: BackfillResult, seconds: float) -> None:
    stats = result.stats
    table = Table(title=f"ct scan {result.scan_id}", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    rows = [
        ("source", result.log),
        ("entries", f"{result.start}..{result.end} of {result.tree_size}"),
        ("verified against the tree head", "yes" if result.verified else "no"),
        ("entries read", f"{stats.entries:,}"),
        ("matching the domains", f"{stats.matched:,}"),
        ("issuances stored", f"{stats.issuances:,}"),
        ("observations stored", f"{stats.observations:,}"),
        ("precert + final merged", f"{stats.merged:,}"),
        ("final linked to earlier precert", f"{stats.linked:,}"),
        ("already stored (skipped)", f"{stats.duplicates:,}"),
        ("unparsable certificates (stored raw)", f"{stats.unparsable:,}"),
        ("without SAN or CN (not stored)", f"{stats.nameless:,}"),
        ("chain not signed in order (flagged)", f"{stats.bad_chains:,}"),
        ("requests", f"{result.requests:,}"),
        ("elapsed (s)", f"{seconds:.1f}"),
        ("entries/s", f"{stats.entries / max(seconds, 1e-6):,.0f}"),
    ]
    for name, value in rows:
        table.add_row(name, Text(shown(value)))  # the log's URL or crt.sh source: data, not markup
    console.print(table)


def _domains(path: Path | None, subdomains: bool) -> DomainFilter | None:
    return DomainFilter.from_file(path, subdomains=subdomains) if path is not None else None


def _log_command(static: bool) -> Callable[..., None]:
    def command(
        url: Annotated[str, typer.Argument(help="The log's URL (static: monitoring prefix).")],
        db: DbOption = DEFAULT_DB,
        domains: DomainsOption = None,
        subdomains: SubdomainsOption = False,
        start: Annotated[
            int | None, typer.Option(min=0, help="First entry (default: resume, else 0).")
        ] = None,
        end: Annotated[
            int | None, typer.Option(min=0, help="One past the last entry (default: tree size).")
        ] = None,
        verify: Annotated[
            bool, typer.Option("--verify", help="Check every batch against the tree head.")
        ] = False,
        public_key: Annotated[
            Path | None,
            typer.Option("--public-key", help="The log key (PEM): tree heads are checked."),
        ] = None,
        batch_size: Annotated[int, typer.Option(min=1, help="Entries per batch.")] = 1000,
        workers: Annotated[
            int, typer.Option(help="Fetches in flight.", callback=count_in(1, 1024))
        ] = 4,
        rate: Annotated[
            float | None, typer.Option(help="Max requests per second.", callback=valid_rate)
        ] = None,
        retries: Annotated[
            int, typer.Option(help="Retries per request.", callback=count_in(0, 100))
        ] = 4,
        parse_workers: Annotated[
            int | None,
            typer.Option(
                help="Processes parsing entries (default: one per usable core, for 20,000 "
                "entries or more; 0: in this process).",
                callback=count_in(0, 256),
            ),
        ] = None,
        label: LabelOption = None,
    ) -> None:
        with usage_errors():
            key = LogKey.load(public_key) if public_key is not None else None
            if key is None:
                say("pinlab: warning: no --public-key: tree heads are not authenticated", err=True)
            options = BackfillOptions(
                start=start, end=end, verify=verify, batch_size=batch_size,
                workers=workers, rate=rate, retries=retries, label=label,
                parse_workers=parse_workers,
            )  # fmt: skip
            filter_ = _domains(domains, subdomains)
            run = backfill_static if static else backfill_log
            began = time.monotonic()
            with Store.open(db) as store:

                def job(report: Callable[[int, int], None]) -> BackfillResult:
                    return run(
                        store, url, key=key, domains=filter_, options=options, clock=_now,
                        progress=report,
                    )  # fmt: skip

                result = _run("ct static" if static else "ct log", job)
            _summary(result, time.monotonic() - began)

    command.__doc__ = (
        "Backfill from a static-ct-api (tiled) log: checkpoint, data tiles, issuers."
        if static
        else "Backfill from an RFC 6962 log (get-sth, get-entries), resumable by entry index."
    )
    return command


def crtsh_command(
    file_or_domain: Annotated[
        str, typer.Argument(help="crt.sh JSON output (a file), or a domain to search crt.sh for.")
    ],
    db: DbOption = DEFAULT_DB,
    domains: DomainsOption = None,
    subdomains: SubdomainsOption = False,
    certs: Annotated[
        Path | None,
        typer.Option("--certs", help="Directory of <id>.pem/.crt/.der; downloads are kept there."),
    ] = None,
    url: Annotated[str, typer.Option("--url", help="crt.sh base URL.")] = DEFAULT_URL,
    rate: Annotated[
        float, typer.Option(help="Max crt.sh requests per second.", callback=valid_rate)
    ] = 1.0,
    offline: Annotated[
        bool, typer.Option("--offline", help="Never download: every certificate is in --certs.")
    ] = False,
    label: LabelOption = None,
) -> None:
    """Import a domain's history from crt.sh (search + downloads) or from its JSON export."""
    with usage_errors():
        client = CrtSh.at(url, rate=rate, cache=certs)
        path = Path(file_or_domain)
        if path.is_file():
            records = read_crtsh_json(path.read_bytes(), source=str(path))
            filter_ = _domains(domains, subdomains)
            source = str(path.resolve())
        else:
            if offline:
                raise CTError(f"{file_or_domain}: no such file (and --offline forbids a search)")
            name = normalise_name(file_or_domain)
            records = client.search(name)
            if subdomains:
                seen = {r.id for r in records}
                records += [r for r in client.search("%." + name) if r.id not in seen]
            filter_ = _domains(domains, subdomains) or DomainFilter([name], subdomains=subdomains)
            source = name

        def certificate(record_id: int) -> bytes:
            if offline:
                found = cached_certificate(certs, record_id) if certs is not None else None
                if found is None:
                    raise CTError(f"certificate {record_id} is not in --certs (and --offline)")
                return found
            return client.certificate(record_id)

        began = time.monotonic()
        with Store.open(db) as store:

            def job(report: Callable[[int, int], None]) -> BackfillResult:
                return import_crtsh(
                    store, records, certificate=certificate, domains=filter_, source=source,
                    clock=_now, label=label, progress=report,
                )  # fmt: skip

            result = _run("ct crtsh", job)
        _summary(result, time.monotonic() - began)


def register(app: typer.Typer) -> None:
    """Add the ``ct`` group."""
    group = typer.Typer(
        name="ct",
        help="Backfill issuance history from Certificate Transparency (issuance, not deployment).",
        no_args_is_help=True,
    )
    group.command("log")(_log_command(static=False))
    group.command("static")(_log_command(static=True))
    group.command("crtsh")(crtsh_command)
    app.add_typer(group)
