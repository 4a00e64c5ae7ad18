"""``pinlab store check``: is a store file whole, and if not, what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pinlab.commands._common import console, err_console
from pinlab.store import check_store

store_app = typer.Typer(help="Look after a store file: check it.", no_args_is_help=True)

EXIT_DAMAGED = 1


@store_app.command("check")
def check_command(
    db: Annotated[Path, typer.Argument(help="The store (DuckDB file).")],
) -> None:
    """Read every table of DB and check its schema version and that every certificate an
    observation names is stored; exit 0 when healthy, 1 naming each problem otherwise."""
    report = check_store(db)
    version = "unknown" if report.schema_version is None else str(report.schema_version)
    console.print(f"{db}: schema version {version}", markup=False, highlight=False)
    for table, count in report.counts.items():
        console.print(f"  {table}: {count} rows", markup=False, highlight=False)
    if report.healthy:
        console.print(f"{db}: healthy", markup=False, highlight=False)
        return
    for problem in report.problems:
        err_console.print(f"pinlab: {db}: {problem}", markup=False, highlight=False)
    err_console.print(
        f"pinlab: {db} is not healthy; restore it from its Parquet export "
        "(pinlab import DIR --db NEW), or export what can still be read",
        markup=False,
        highlight=False,
    )
    raise typer.Exit(EXIT_DAMAGED)


def register(app: typer.Typer) -> None:
    """Add the ``store`` command group."""
    app.add_typer(store_app, name="store")
