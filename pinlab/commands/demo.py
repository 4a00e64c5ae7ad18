"""``pinlab demo``: the pins of every shared certificate, the first step of ``make demo``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated

import typer

from pinlab.certs import load_certificate_file
from pinlab.commands._common import usage_errors
from pinlab.commands._output import say, shown
from pinlab.errors import PinlabError

PIN_COLUMNS = [
    "dataset",
    "host",
    "observed_at",
    "position",
    "pin",
    "subject",
    "issuer",
    "not_before",
    "not_after",
    "key",
    "is_ca",
    "sha256",
    "file",
]


def _manifest_rows(data: Path) -> list[tuple[str, str, str, Path]]:
    """(dataset, host, observed_at, file) for every chain of the shared data."""
    histories, hierarchy = data / "real-histories", data / "le-hierarchy"
    rows: list[tuple[str, str, str, Path]] = []
    for manifest in (histories / "manifest.csv", hierarchy / "manifest.csv"):
        if not manifest.is_file():
            raise PinlabError(f"{manifest} is missing: is --data the shared data folder?")
    with (histories / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.append(
                ("real-histories", row["host"], row["observed_at"], histories / row["chain_file"])
            )
    with (hierarchy / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.append(("le-hierarchy", row["subject_cn"], "", hierarchy / row["file"]))
    return sorted(rows, key=lambda r: (r[0], r[1], r[2]))


def write_pins(data: Path, out: Path) -> tuple[Path, int]:
    """Write the pins of every certificate of the shared data, host by host."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / "pins.csv"
    count = 0
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(PIN_COLUMNS)
        for dataset, host, observed_at, file in _manifest_rows(data):
            for position, c in enumerate(load_certificate_file(file)):
                writer.writerow(
                    [
                        dataset,
                        host,
                        observed_at,
                        position,
                        c.pin,
                        c.subject,
                        c.issuer,
                        c.not_before.isoformat(),
                        c.not_after.isoformat(),
                        c.key_label,
                        c.is_ca,
                        c.sha256,
                        file.relative_to(data).as_posix(),
                    ]
                )
                count += 1
    return target, count


def demo_command(
    data: Annotated[Path, typer.Option("--data", help="The shared data folder.")] = Path(
        "../shared/data"
    ),
    out: Annotated[Path, typer.Option("--out", help="Where the demo writes.")] = Path("data/demo"),
) -> None:
    """Write the pins of every certificate of the shared data, host by host.

    The first step of ``make demo``, which then runs the lab, the ledger, the replay, a
    quick benchmark and the report.
    """
    with usage_errors():
        pins_file, count = write_pins(data, out)
    say(f"pins of {count} certificates, host by host: {shown(pins_file)}")


def demo_campaign_command(
    db: Annotated[Path, typer.Option("--db", help="The store the campaign writes into.")] = Path(
        "data/demo/pinlab.duckdb"
    ),
    out: Annotated[Path, typer.Option("--out", help="Where the targets and roots go.")] = Path(
        "data/demo/campaign"
    ),
) -> None:
    """Run a collection campaign on loopback: ``pinlab collect`` against an nginx farm whose
    answers are known (valid chains, an untrusted root, hostname mismatches, a closed port).
    """
    from pinlab.commands.collect import collect_command
    from pinlab.lab.campaign import demo_campaign

    with usage_errors(), demo_campaign(out) as campaign:
        expected = ", ".join(f"{count} {kind}" for kind, count in campaign.expected.items())
        say(f"demo campaign on loopback: {expected} (targets: {campaign.targets})")
        collect_command(
            campaign.targets, db=db, concurrency=16, per_ip=16, rate=None, timeout=5.0,
            port=443, label="demo campaign (loopback nginx)", resume=False, strict=True,
            no_sni=False, ca_file=campaign.ca_file, retries=0, cluster=None, workers=None,
        )  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add ``demo`` and ``demo-campaign`` to the CLI."""
    app.command("demo")(demo_command)
    app.command("demo-campaign")(demo_campaign_command)
