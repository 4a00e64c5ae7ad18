"""``pinlab truststores``: fetch and inspect Mozilla's root store over the years."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pinlab.commands._common import console, usage_errors
from pinlab.commands._output import say, shown
from pinlab.truststores import TrustStoreHistory, available_versions, fetch

truststores_app = typer.Typer(help="Mozilla's root store over the years (certifi releases).")

DirOption = Annotated[Path, typer.Option("--dir", help="The release cache.")]
DEFAULT_DIR = Path("data/certifi")


@truststores_app.command("fetch")
def fetch_command(
    directory: DirOption = DEFAULT_DIR,
    jobs: Annotated[int, typer.Option("--jobs", help="Downloads in parallel.")] = 4,
    find_links: Annotated[
        Path | None, typer.Option("--find-links", help="Take archives from this folder only.")
    ] = None,
) -> None:
    """Download every certifi release (pip download --no-deps) into the cache."""
    options = ["--no-index", "--find-links", str(find_links)] if find_links else []
    with usage_errors():
        versions = available_versions(options)
        with Progress(
            TextColumn("certifi releases"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[version]}", markup=False), TimeElapsedColumn(),
            console=console,
        ) as progress:  # fmt: skip
            task = progress.add_task("fetch", total=len(versions), version="")
            archives = fetch(
                directory,
                versions=versions,
                pip_options=options,
                jobs=jobs,
                progress=lambda v: progress.update(task, advance=1, version=shown(v)),
            )
        history = TrustStoreHistory.load(directory)
    say(f"{len(archives)} archives in {shown(directory)}: {history.describe()}")


@truststores_app.command("list")
def list_command(directory: DirOption = DEFAULT_DIR) -> None:
    """One line per release: date, roots, roots added and removed."""
    with usage_errors():
        history = TrustStoreHistory.load(directory)
    changes = history.changes()
    changes["released"] = changes["released"].dt.date
    say(changes.to_string(index=False))


def register(app: typer.Typer) -> None:
    """Add the ``truststores`` group to the CLI."""
    app.add_typer(truststores_app, name="truststores")
