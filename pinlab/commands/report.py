"""``pinlab report``: execute the analysis notebooks against a store and write them as HTML.

Exit status: 0 when every notebook ran (notebooks whose data is absent are listed as
skipped in ``index.html``); 1 when a notebook cell raised (one line on stderr names the
notebook, the cell and the error, and where that notebook's HTML, outputs so far, was
written); 2 for unusable input (no such store, missing benchmark file, no notebooks).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from pinlab.commands._common import err_console, usage_errors
from pinlab.commands._options import MemoryLimitOption, memory_budget, valid_seconds
from pinlab.commands._output import say, shown
from pinlab.errors import PinlabError

if TYPE_CHECKING:
    from pinlab.memory import MemoryBudget

EXIT_NOTEBOOK_FAILED = 1


def _notebooks(directory: Path, only: list[str] | None) -> list[Path]:
    found = sorted(directory.glob("[0-9]*.ipynb"))
    if not found:
        raise PinlabError(f"{directory}: no notebooks (NN-name.ipynb) to run")
    if only:
        chosen = [path for path in found if any(path.name.startswith(o) for o in only)]
        if not chosen:
            names = ", ".join(path.name for path in found)
            raise PinlabError(f"--notebook {' '.join(only)}: matches none of {names}")
        return chosen
    return found


def report_command(
    db: Annotated[
        Path, typer.Option("--db", help="The store the notebooks read (DuckDB file or dataset).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for the HTML pages and index.html.")],
    bench: Annotated[
        Path | None,
        typer.Option(
            "--bench",
            help="Benchmark results (pinlab bench pins --out FILE); default: "
            "data/demo/bench.json, else data/bench/pins-full.json, else a quick run.",
        ),
    ] = None,
    data: Annotated[
        Path, typer.Option("--data", help="Shared real data (real-histories, le-hierarchy).")
    ] = Path("../shared/data"),
    lab: Annotated[
        Path | None,
        typer.Option(
            "--lab",
            help="A lab run's --out folder (truth.csv) for the lab check page; "
            "default: lab/ beside the store, when there.",
        ),
    ] = None,
    truststores: Annotated[
        Path, typer.Option("--truststores", help="certifi release cache.")
    ] = Path("data/certifi"),
    notebooks: Annotated[
        Path | None,
        typer.Option("--notebooks", help="Notebook folder (default: the project's notebooks/)."),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--notebook", help="Run only notebooks whose name starts so (repeatable)."),
    ] = None,
    extra: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="NAME=VALUE for the notebooks' parameters cells (repeatable)."
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds allowed per cell.", callback=valid_seconds)
    ] = 900,
    screenshots: Annotated[
        Path | None,
        typer.Option(
            "--screenshots",
            help="Render every page with headless Chromium into this folder and fail (exit 1) "
            "if a reader would see NaN, inf, an empty chart or a negative cost.",
        ),
    ] = None,
    memory_limit: MemoryLimitOption = None,
) -> None:
    """Execute the notebooks against a store; write each as HTML plus an index.html."""
    from pinlab.report import (
        NotebookFailed,
        build_report,
        declared_parameters,
        default_notebooks_dir,
        ensure_kernel,
        parse_parameter,
    )
    from pinlab.store import open_store

    with usage_errors():
        chosen = _notebooks(notebooks or default_notebooks_dir(), only)
        budget = memory_budget(memory_limit)
        open_store(db, memory=budget).close()  # a clear error now, not in a kernel later
        if bench is not None and not bench.is_file():
            raise PinlabError(f"--bench {bench}: no such file")
        parameters: dict[str, object] = {
            "db": db.resolve(),
            "bench": bench.resolve() if bench is not None else None,
            "shared_data": data.resolve(),
            "truststores": truststores.resolve(),
            "lab_dir": (lab or db.resolve().parent / "lab").resolve(),
        }
        parameters = {name: value for name, value in parameters.items() if value is not None}
        declared = declared_parameters(chosen)
        for text in extra or ():
            name, value = parse_parameter(text)
            if name not in declared:
                raise PinlabError(
                    f"-p {name}: no notebook declares it ({', '.join(sorted(declared))})"
                )
            parameters[name] = value
        kernel = ensure_kernel()
        columns = (
            TextColumn("{task.description:<22}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("cells"),
            TimeElapsedColumn(),
        )
        tasks: dict[str, TaskID] = {}
        with Progress(*columns, console=err_console) as progress:

            def advance(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    label = name.removesuffix(".ipynb") + ("" if total else " (skipped)")
                    tasks[name] = progress.add_task(shown(label), total=total or 1)
                progress.update(tasks[name], completed=done if total else 1)

            try:
                with _budget_for_kernels(budget):
                    results = build_report(
                        chosen,
                        out,
                        parameters,
                        kernel=kernel,
                        timeout=timeout,
                        progress=advance,
                        now=datetime.now(UTC),
                    )
            except NotebookFailed as failure:
                progress.stop()
                say(f"pinlab: error: {shown(failure)}", err=True)
                raise typer.Exit(EXIT_NOTEBOOK_FAILED) from None
    for result in results:
        if result.skipped:
            say(f"skipped {shown(result.name)}: {shown(result.skipped)}")
    say(f"report: {(out / 'index.html').resolve()}")
    if screenshots is not None:
        _check_pages(out, screenshots)


@contextlib.contextmanager
def _budget_for_kernels(budget: MemoryBudget) -> Iterator[None]:
    """Give the notebooks' kernels (which inherit this environment) ``budget``: their
    ``open_store`` calls read it (:data:`pinlab.memory.ENVIRONMENT`). The notebooks run one
    after the other, so each may have all of it."""
    from pinlab.memory import ENVIRONMENT

    before = os.environ.get(ENVIRONMENT)
    os.environ[ENVIRONMENT] = str(budget.bytes)
    try:
        yield
    finally:
        if before is None:
            del os.environ[ENVIRONMENT]
        else:
            os.environ[ENVIRONMENT] = before


def _check_pages(out: Path, screenshots: Path) -> None:
    from pinlab.report.check import check_report

    with usage_errors():
        checks = check_report(out, screenshots)
    bad = [check for check in checks if check.problems]
    for check in bad:
        for problem in check.problems:
            say(f"{shown(check.page.name)}: {shown(problem)}", err=True)
    say(f"screenshots: {screenshots.resolve()} ({len(checks)} pages, {len(bad)} with problems)")
    if bad:
        raise typer.Exit(EXIT_NOTEBOOK_FAILED)


def register(app: typer.Typer) -> None:
    """Add ``report`` to the CLI."""
    app.command("report")(report_command)
