"""``pinlab lab run``: the rotation lab (Pebble + lego + nginx on loopback) into the store."""

from __future__ import annotations

import signal
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from pinlab.commands._common import usage_errors
from pinlab.commands._output import say

lab_app = typer.Typer(
    name="lab",
    help="Make real ACME renewals happen on loopback and record them.",
    no_args_is_help=True,
)


def _terminate(signum: int, frame: types.FrameType | None) -> None:
    # SIGTERM would end Python without running cleanup; unwind like Ctrl-C instead.
    raise KeyboardInterrupt(f"signal {signum}")


@lab_app.command("run")
def run_command(
    scenario: Annotated[
        Path, typer.Argument(help="The scenario TOML (e.g. data/lab/default.toml).")
    ],
    db: Annotated[Path, typer.Option("--db", help="The store to record the lab's scan in.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where truth.csv goes (default: <db stem>-lab/ beside --db)."),
    ] = None,
) -> None:
    """Run a lab scenario: issue, renew, reload nginx, collect each round; write truth.csv.

    Each round is one scan of source ``lab`` on the virtual clock; the validation column is
    computed at real time against the run's Pebble roots (written to roots.pem).
    """
    from pinlab.lab.run import preflight, run_lab
    from pinlab.lab.scenario import load_scenario
    from pinlab.store import Store

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with usage_errors():
            spec = load_scenario(scenario)
            preflight(spec)
            target = out if out is not None else db.parent / f"{db.stem}-lab"
            with Store.open(db) as store:
                say(
                    f"lab {spec.name}: {len(spec.hosts)} hosts x {spec.rounds} rounds "
                    f"(virtual clock from {spec.start:%Y-%m-%d}, {spec.days_per_round} days/round)"
                )
                result = run_lab(
                    spec,
                    target,
                    store,
                    validation_clock=lambda: datetime.now(UTC),
                    source=scenario,
                    on_round=lambda i, s: say(f"round {i}: {s:.2f} s"),
                )
    finally:
        signal.signal(signal.SIGTERM, previous)
    total = sum(result.round_seconds)
    valid = sum(o.observation.validation == "valid" for o in result.observations)
    say(
        f"{len(result.observations)} observations ({valid} valid) into {db}: "
        f"{len(result.scans)} scans of source lab (lab run {result.run_id}); "
        f"truth: {result.truth_csv}; roots: {result.roots_pem}; {total:.1f} s, "
        f"{total / len(result.round_seconds):.2f} s per round"
    )
    if result.mismatches:
        listed = ", ".join(f"{host}@{round_}" for host, round_ in result.mismatches[:5])
        say(f"{len(result.mismatches)} observations differ from truth: {listed}")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``lab`` command group to the CLI."""
    app.add_typer(lab_app, name="lab")
