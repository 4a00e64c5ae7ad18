"""The report: the analysis notebooks executed against one store, written as HTML.

Each notebook of ``notebooks/`` declares its inputs in a cell tagged ``parameters``
(papermill's convention: plain assignments with defaults that work from JupyterLab).
:func:`inject_parameters` adds, right after it, a cell tagged ``injected-parameters`` that
overrides the names the notebook declares (replacing one left by an earlier run), so a
notebook executed here is the same notebook a user runs by hand with other inputs.

Notebooks run with nbclient on the ``pinlab`` kernel (:func:`ensure_kernel` installs it into
the running environment when missing), in the notebooks' folder, one after the other; each
is written as HTML with nbconvert, then ``index.html`` links them. A cell that raises stops
the report with :class:`NotebookFailed`, which names the notebook, the cell and the error;
the failed notebook is still written as HTML with its outputs so far, for diagnosis.

A notebook may require data outside the store (``metadata.pinlab.requires``: parameter ->
file expected under that path); when it is absent the notebook is listed as skipped, with
the reason, instead of failing the report.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pinlab.report.errors import NotebookFailed, ReportError
from pinlab.report.execute import KERNEL_NAME, CellProgress, ensure_kernel, execute_notebook
from pinlab.report.pages import notebook_html, page_findings, title_and_summary, write_index
from pinlab.report.parameters import (
    INJECTED_TAG,
    PARAMETERS_TAG,
    declared_parameters,
    inject_parameters,
    parameter_names,
    parse_parameter,
)

__all__ = [
    "INJECTED_TAG",
    "KERNEL_NAME",
    "PARAMETERS_TAG",
    "CellProgress",
    "NotebookFailed",
    "NotebookResult",
    "ReportError",
    "build_report",
    "declared_parameters",
    "default_notebooks_dir",
    "ensure_kernel",
    "execute_notebook",
    "inject_parameters",
    "parameter_names",
    "parse_parameter",
]


@dataclass(slots=True)
class NotebookResult:
    """One notebook of the report: where it went and how long it took, or why it was skipped."""

    name: str
    title: str
    summary: str
    html: Path | None
    seconds: float = 0.0
    skipped: str | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    """What the page found (:func:`pinlab.findings.show_findings`), for the index."""


def default_notebooks_dir() -> Path:
    """``notebooks/`` of the source tree pinlab runs from (an editable install)."""
    return Path(__file__).resolve().parents[2] / "notebooks"


def _skip_reason(nb: Any, parameters: Mapping[str, object]) -> str | None:
    requires = nb.metadata.get("pinlab", {}).get("requires", {})
    for parameter, relative in requires.items():
        base = parameters.get(parameter)
        if base is None:
            continue
        expected = Path(str(base)) / relative
        if not expected.exists():
            return f"no {relative} under {parameter}={base} ({expected} is missing)"
    return None


def build_report(
    notebooks: Sequence[Path],
    out: Path,
    parameters: Mapping[str, object],
    *,
    kernel: str = KERNEL_NAME,
    timeout: float = 900,
    progress: CellProgress | None = None,
    now: datetime,
) -> list[NotebookResult]:
    """Execute ``notebooks`` with ``parameters``, write ``out/<name>.html`` and ``index.html``.

    Raises :class:`NotebookFailed` at the first failing cell (after writing that notebook's
    HTML). ``now`` is the time printed on the index.
    """
    import nbformat

    if not notebooks:
        raise ReportError("no notebooks to run")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReportError(f"{out}: cannot create the report folder: {error.strerror}") from None
    results: list[NotebookResult] = []
    for path in notebooks:
        try:
            nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
        except (OSError, ValueError) as error:
            raise ReportError(f"{path}: cannot read notebook: {error}") from None
        title, summary = title_and_summary(nb, path.stem)
        reason = _skip_reason(nb, parameters)
        if reason is not None:
            results.append(NotebookResult(path.stem, title, summary, None, skipped=reason))
            if progress is not None:
                progress(path.name, 0, 0)
            continue
        started = time.monotonic()
        executed, failure = execute_notebook(
            inject_parameters(nb, parameters),
            name=path.name,
            cwd=path.parent.resolve(),
            kernel=kernel,
            timeout=timeout,
            progress=progress,
        )
        target = out / f"{path.stem}.html"
        target.write_text(notebook_html(executed), encoding="utf-8")
        if failure is not None:
            raise NotebookFailed(path.name, *failure, html_path=target)
        seconds = time.monotonic() - started
        found = page_findings(executed)
        results.append(NotebookResult(path.stem, title, summary, target, seconds, None, found))
    write_index(out, results, parameters, now)
    return results
