"""``pinlab collect``, ``export``, ``import``, ``import-pem``: fill the store and move it around.

The progress bar and the summary table live here; the collector only reports committed
observations to an observer.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from pinlab.collect import (
    CollectOptions,
    collect,
    count_target_lines,
    import_pem,
    iter_targets,
)
from pinlab.commands._campaign import (
    MAX_REPORTED_BAD_LINES,
    new_scan,
    now,
    print_summary,
    scan_parameters,
)
from pinlab.commands._common import (
    err_console,
    interrupt_once,
    trust_store,
    usage_errors,
)
from pinlab.commands._options import count_in, valid_rate, valid_seconds
from pinlab.commands._output import say, shown
from pinlab.errors import PinlabError, TargetError
from pinlab.store import Observation, Scan, Status, Store

DEFAULT_DB = Path("data/pinlab.duckdb")

DbOption = Annotated[Path, typer.Option("--db", help="The store (DuckDB file).")]


class _Progress:
    """Observer of committed observations that drives a rich progress bar."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self.progress, self.task = progress, task
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.started = time.monotonic()

    def __call__(self, observation: Observation) -> None:
        with self.lock:
            self.counts["ok" if observation.status == Status.OK else "failed"] += 1
            elapsed = max(time.monotonic() - self.started, 1e-6)
            self.progress.update(
                self.task,
                advance=1,
                ok=self.counts["ok"],
                failed=self.counts["failed"],
                rate=f"{self.counts.total() / elapsed:.0f} handshakes/s",
            )


def collect_command(
    targets: Annotated[Path, typer.Argument(help="Target file: host, host:port, ip,sni[,port].")],
    db: DbOption = DEFAULT_DB,
    concurrency: Annotated[
        int, typer.Option(help="Handshakes in flight.", callback=count_in(1, 100_000))
    ] = 100,
    per_ip: Annotated[
        int, typer.Option("--per-ip", help="Connections per IP.", callback=count_in(1, 100_000))
    ] = 2,
    rate: Annotated[
        float | None, typer.Option(help="Max handshakes per second.", callback=valid_rate)
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds for connect + handshake.", callback=valid_seconds)
    ] = 10.0,
    connect_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds for the TCP connect alone.", callback=valid_seconds),
    ] = None,
    handshake_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds for the TLS handshake alone.", callback=valid_seconds),
    ] = None,
    dns_concurrency: Annotated[
        int, typer.Option(help="DNS lookups in flight.", callback=count_in(1, 100_000))
    ] = 500,
    dns_timeout: Annotated[
        float,
        typer.Option(help="Seconds for one name's A + AAAA lookups.", callback=valid_seconds),
    ] = 5.0,
    resolver: Annotated[
        str,
        typer.Option(
            help="'system' (getaddrinfo: /etc/hosts, then resolv.conf), 'resolv.conf' or "
            "HOST[:PORT]: dnspython's async resolver to those servers."
        ),
    ] = "system",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Default port.")] = 443,
    label: Annotated[str | None, typer.Option(help="Free text stored with the scan.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the unfinished scan of TARGETS.")] = False,
    strict: Annotated[bool, typer.Option(help="Fail on the first bad target line.")] = False,
    no_sni: Annotated[bool, typer.Option("--no-sni", help="Send no SNI.")] = False,
    ca_file: Annotated[
        Path | None, typer.Option(help="Trust anchors (PEM) for validation.")
    ] = None,
    retries: Annotated[
        int, typer.Option(help="Retries on timeout/reset.", callback=count_in(0, 100))
    ] = 1,
    cluster: Annotated[
        str | None, typer.Option(help="Dask scheduler: collect over it into a dataset (--db DIR).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Local Dask workers: collect into --db DIR.", callback=count_in(1, 1024)),
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            callback=count_in(0, 1024),
            help="Collector processes, targets sharded by IP; 0: one per usable core. "
            "Default: one per usable core, fewer for a campaign of under 2,000 targets "
            "or 500/s of --rate per process (it says how many it runs, and why).",
            show_default=False,
        ),
    ] = None,
    snapshot_every: Annotated[
        float | None,
        typer.Option(
            "--snapshot-every",
            min=0.001,
            help="Every SECONDS, export what is committed to DB.snapshots/ for readers "
            "(pinlab.store.open_snapshot).",
        ),
    ] = None,
) -> None:
    """Collect the certificate chains of every target into the store (a new scan)."""
    with usage_errors():
        source = targets.resolve()
        total = count_target_lines(source)  # also proves the file is readable
        if strict:  # fail before the first handshake, not half-way
            for _ in iter_targets(source, strict=True, default_port=port, sni=not no_sni):
                pass
        anchors = trust_store(ca_file)
        options = CollectOptions(
            concurrency=concurrency, per_ip=per_ip, rate=rate, timeout=timeout, retries=retries,
            snapshot_every=snapshot_every, connect_timeout=connect_timeout,
            handshake_timeout=handshake_timeout, dns_concurrency=dns_concurrency,
            dns_timeout=dns_timeout, resolver=resolver,
        )  # fmt: skip
        if cluster is not None or workers is not None:  # a Parquet dataset: pinlab.store.dataset
            if processes not in (None, 1):
                raise PinlabError(
                    "--processes is for a DuckDB store; a cluster runs one collector per "
                    "worker (--workers, or dask worker --nthreads 1 per core)"
                )
            if snapshot_every is not None:
                raise PinlabError(
                    "--snapshot-every is for a DuckDB store; a cluster's dataset is readable "
                    "while it grows (pinlab.store.open_store DIR)"
                )
            from pinlab.commands._cluster import collect_on_cluster

            return collect_on_cluster(
                source, db, options, anchors, cluster=cluster, workers=workers, port=port,
                label=label, resume=resume, no_sni=no_sni, total=total,
            )  # fmt: skip
        with Store.open(db) as store:
            scan, skip = _scan(store, source, options, anchors.name, label, resume, no_sni)
            processes = _processes(processes, total - len(skip), rate)
            bad_lines = 0

            def report(error: TargetError) -> None:
                nonlocal bad_lines
                bad_lines += 1
                if bad_lines <= MAX_REPORTED_BAD_LINES:
                    say(f"pinlab: skipped: {shown(error)}", err=True)

            columns = (
                TextColumn("[bold]collect"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("[green]{task.fields[ok]} ok [red]{task.fields[failed]} failed"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
            )
            with (
                interrupt_once(),
                Progress(*columns, console=err_console, transient=False) as progress,
            ):
                task = progress.add_task(
                    "collect", total=max(total - len(skip), 0), ok=0, failed=0, rate=""
                )
                observer = _Progress(progress, task)
                try:
                    summary = collect(
                        iter_targets(source, on_error=report, default_port=port, sni=not no_sni),
                        store,
                        scan,
                        clock=now,
                        options=options,
                        trust_store=anchors,
                        skip=skip,
                        observer=observer,
                        processes=processes,
                    )
                except KeyboardInterrupt:
                    say("pinlab: interrupted; continue with --resume", err=True)
                    raise typer.Exit(130) from None
                progress.update(task, total=summary.observations)
            validations = store.validation_counts(scan.scan_id)
        if bad_lines > MAX_REPORTED_BAD_LINES:
            say(f"pinlab: {bad_lines} bad target lines in all", err=True)
        print_summary(summary, bad_lines, validations)


def _processes(asked: int | None, targets: int, rate: float | None) -> int:
    """``--processes`` as given (0: one per usable core), or chosen and said on stderr."""
    from pinlab.collect.processes import choose_processes, usable_cores

    if asked is not None:
        return asked or usable_cores()
    choice = choose_processes(targets, rate)
    plural = "es" if choice.processes > 1 else ""
    say(f"pinlab: {choice.processes} collector process{plural}: {choice.reason}", err=True)
    return choice.processes


def _scan(
    store: Store,
    source: Path,
    options: CollectOptions,
    anchors: str,
    label: str | None,
    resume: bool,
    no_sni: bool,
) -> tuple[Scan, set[tuple[object, ...]]]:
    if resume:
        previous = store.unfinished_scan(str(source))
        if previous is not None:
            done: set[tuple[object, ...]] = set(store.done_keys(previous.scan_id))
            say(
                f"pinlab: resuming scan {previous.scan_id} ({len(done)} targets already done)",
                err=True,
            )
            return previous, done
        say(f"pinlab: no unfinished scan of {shown(source)}; starting a new one", err=True)
    scan = new_scan(source, label, scan_parameters(options, no_sni=no_sni, anchors=anchors))
    store.add_scan(scan)
    return scan, set()


def export_command(
    directory: Annotated[Path, typer.Argument(help="Directory to write the Parquet dataset in.")],
    db: DbOption = DEFAULT_DB,
    partitioned: Annotated[
        bool,
        typer.Option(
            "--partitioned",
            help="Partition by campaign date, as cluster campaigns write (pinlab.store.dataset).",
        ),
    ] = False,
) -> None:
    """Write the store as a Parquet dataset (one folder per table)."""
    from pinlab.store import export_dataset

    with usage_errors(), Store.open(db, read_only=True) as store:
        if partitioned:
            counts = export_dataset(store, directory)
        else:
            counts = store.export_parquet(directory)
    say(f"exported {_counts(counts)} to {shown(directory)}")


_IMPORT_HELP = "A dataset: pinlab export's (flat or --partitioned) or a cluster campaign's."


def import_command(
    directory: Annotated[Path, typer.Argument(help=_IMPORT_HELP)],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Add a Parquet dataset to the store (scans already present are skipped)."""
    from pinlab.store import import_dataset

    with usage_errors(), Store.open(db) as store:
        if any((directory / "observations").glob("*.parquet")):
            added = store.import_parquet(directory)
        else:  # partitioned by campaign date (or not a dataset: the reader says so)
            added = import_dataset(directory, store)
    say(f"imported {_counts(added)} from {shown(directory)}")


def import_pem_command(
    manifest: Annotated[Path, typer.Argument(help="CSV: host, observed_at, chain_file, ...")],
    db: DbOption = DEFAULT_DB,
    ca_file: Annotated[
        Path | None, typer.Option(help="Trust anchors (PEM) for validation.")
    ] = None,
    label: Annotated[str | None, typer.Option(help="Free text stored with the scan.")] = None,
) -> None:
    """Import PEM chain dumps listed by a manifest as one scan (source ``import``)."""
    with usage_errors():
        anchors = trust_store(ca_file)
        with Store.open(db) as store:
            scan = import_pem(store, manifest, now=now(), trust_store=anchors, label=label)
            count = len(store.observations_df(scan.scan_id))
    say(f"imported {count} observations from {shown(manifest)} as scan {scan.scan_id}")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {table}" for table, count in counts.items())


def register(app: typer.Typer) -> None:
    """Add the collection and store commands."""
    app.command("collect")(collect_command)
    app.command("export")(export_command)
    app.command("import")(import_command)
    app.command("import-pem")(import_pem_command)
