"""``pinlab collect --workers N`` / ``--cluster ADDRESS``: one campaign over Dask workers.

Reached from ``pinlab collect`` (not a command of its own). The library side is
:mod:`pinlab.collect.cluster`; here live the progress bar, the scan record's parameters and
the summary, as for a single-process campaign.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pinlab.collect import CollectOptions, iter_targets
from pinlab.collect.cluster import ShardProgress, dask_client, run_campaign, unfinished_campaign
from pinlab.collect.plan import default_shards
from pinlab.commands._campaign import (
    MAX_REPORTED_BAD_LINES,
    new_scan,
    now,
    print_summary,
    scan_parameters,
)
from pinlab.commands._common import err_console, interrupt_once
from pinlab.commands._output import say, shown
from pinlab.errors import PinlabError, TargetError
from pinlab.store import Scan
from pinlab.verify import TrustStore


def collect_on_cluster(
    source: Path,
    dataset: Path,
    options: CollectOptions,
    anchors: TrustStore,
    *,
    cluster: str | None,
    workers: int | None,
    port: int,
    label: str | None,
    resume: bool,
    no_sni: bool,
    total: int,
) -> None:
    """Run the campaign of ``source`` over Dask into the Parquet dataset ``dataset``."""
    if cluster is not None and workers is not None:
        raise PinlabError("give --cluster ADDRESS or --workers N, not both")
    if dataset.suffix == ".duckdb" or dataset.is_file():
        raise PinlabError(
            f"{dataset}: --cluster/--workers write a Parquet dataset; pass --db DIRECTORY "
            "(pinlab.store.open_store reads it; pinlab.store.import_dataset merges it)"
        )
    bad_lines = 0

    def report(error: TargetError) -> None:
        nonlocal bad_lines
        bad_lines += 1
        if bad_lines <= MAX_REPORTED_BAD_LINES:
            say(f"pinlab: skipped: {shown(error)}", err=True)

    with dask_client(workers=workers, address=cluster) as client:
        slots = max(1, sum(client.nthreads().values()))
        scan = unfinished_campaign(dataset, str(source)) if resume else None
        if scan is not None:
            say(f"pinlab: resuming scan {scan.scan_id} (committed shards are kept)", err=True)
        else:
            if resume:
                say(f"pinlab: no unfinished scan of {shown(source)}; starting a new one", err=True)
            scan = _new_scan(source, options, anchors.name, label, no_sni, cluster, workers)
        columns = (
            TextColumn("[bold]collect"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[workers]} workers"),
            TimeElapsedColumn(),
        )
        with (
            interrupt_once(),
            Progress(*columns, console=err_console, transient=False) as progress,
        ):
            task = progress.add_task("collect", total=total, workers=len(client.nthreads()))

            def advance(event: ShardProgress) -> None:
                progress.update(task, completed=event.total)

            try:
                result = run_campaign(
                    dataset, scan, client=client, clock=now, options=options,
                    targets=iter_targets(source, on_error=report, default_port=port,
                                         sni=not no_sni),
                    trust_store=anchors, shards=default_shards(total, slots),
                    on_progress=advance,
                )  # fmt: skip
            except KeyboardInterrupt:
                say("pinlab: interrupted; continue with --resume", err=True)
                raise typer.Exit(130) from None
            summary = result.summary
            progress.update(task, total=summary.observations + summary.skipped)
            progress.update(task, completed=summary.observations + summary.skipped)
    if bad_lines > MAX_REPORTED_BAD_LINES:
        say(f"pinlab: {bad_lines} bad target lines in all", err=True)
    print_summary(summary, bad_lines)
    shards = sum(1 for size in result.plan.sizes if size)
    say(
        f"{shards} shards on {result.workers} workers: {result.ran} collected, "
        f"{result.already_done} already done, {result.restarted} restarted; "
        f"dataset {shown(dataset)}",
        err=True,
    )
    if result.failed:
        first = min(result.failed)
        say(
            f"pinlab: {len(result.failed)} shards failed (shard {first}: "
            f"{shown(result.failed[first])}); continue with --resume",
            err=True,
        )
        raise typer.Exit(1)


def _new_scan(
    source: Path,
    options: CollectOptions,
    anchors: str,
    label: str | None,
    no_sni: bool,
    cluster: str | None,
    workers: int | None,
) -> Scan:
    parameters = {
        **scan_parameters(options, no_sni=no_sni, anchors=anchors),
        "cluster": cluster,
        "workers": workers,
    }
    return new_scan(source, label, parameters)
