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

import ast
import copy
import html
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pinlab.errors import PinlabError

__all__ = [
    "INJECTED_TAG",
    "KERNEL_NAME",
    "PARAMETERS_TAG",
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

KERNEL_NAME = "pinlab"
KERNEL_DISPLAY_NAME = "Python (pinlab)"
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"

CellProgress = Callable[[str, int, int], None]
"""Called as (notebook name, code cells done, code cells in the notebook)."""

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ReportError(PinlabError):
    """The report cannot be built (no notebooks, no kernel, unwritable output)."""


class NotebookFailed(PinlabError):
    """A notebook cell raised: which notebook, which cell, which error."""

    def __init__(
        self, notebook: str, cell: int | str, ename: str, evalue: str, html_path: Path
    ) -> None:
        self.notebook, self.cell, self.ename, self.evalue = notebook, cell, ename, evalue
        self.html_path = html_path
        super().__init__(
            f"{notebook}: cell {cell} raised {ename}: {evalue} (outputs so far: {html_path})"
        )


@dataclass(slots=True)
class NotebookResult:
    """One notebook of the report: where it went and how long it took, or why it was skipped."""

    name: str
    title: str
    summary: str
    html: Path | None
    seconds: float = 0.0
    skipped: str | None = None


def default_notebooks_dir() -> Path:
    """``notebooks/`` of the source tree pinlab runs from (an editable install)."""
    return Path(__file__).resolve().parent.parent / "notebooks"


# -- parameters ----------------------------------------------------------------------------


def _tags(cell: Mapping[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _parameters_index(nb: Any) -> int | None:
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and PARAMETERS_TAG in _tags(cell):
            return int(index)
    return None


def parameter_names(nb: Any) -> list[str]:
    """The names the ``parameters`` cell assigns, in order (none without such a cell)."""
    index = _parameters_index(nb)
    if index is None:
        return []
    names: list[str] = []
    for node in ast.parse(nb.cells[index].source).body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    return names


def declared_parameters(notebooks: Sequence[Path]) -> set[str]:
    """Every name the ``parameters`` cells of ``notebooks`` declare."""
    import nbformat

    names: set[str] = set()
    for path in notebooks:
        try:
            names.update(parameter_names(nbformat.read(path, as_version=4)))  # type: ignore[no-untyped-call]
        except (OSError, ValueError) as error:
            raise ReportError(f"{path}: cannot read notebook: {error}") from None
    return names


def parse_parameter(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` from the command line: VALUE as a Python literal, else as a string."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise ReportError(f"-p {text!r}: write NAME=VALUE (e.g. -p release_every=90)")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def inject_parameters(nb: Any, parameters: Mapping[str, object]) -> Any:
    """A copy of ``nb`` with a cell setting the ``parameters`` it declares, papermill style.

    The cell goes right after the ``parameters`` cell (first, if there is none) and replaces
    an ``injected-parameters`` cell already there. Values are written with ``repr``, so they
    must be literals (str, numbers, None, lists and dicts of them); Paths become strings.
    """
    import nbformat

    declared = parameter_names(nb)
    chosen = {name: parameters[name] for name in declared if name in parameters}
    result = copy.deepcopy(nb)
    result.cells = [cell for cell in result.cells if INJECTED_TAG not in _tags(cell)]
    if not chosen:
        return result
    lines = ["# Parameters injected by `pinlab report`"]
    for name, value in chosen.items():
        literal = str(value) if isinstance(value, Path) else value
        text = repr(literal)
        try:
            ast.literal_eval(text)  # refuse what would not read back as the same value
        except (ValueError, SyntaxError):
            raise ReportError(
                f"parameter {name}: {text} is not a Python literal (str, number, None, list, dict)"
            ) from None
        lines.append(f"{name} = {text}")
    cell = nbformat.v4.new_code_cell(  # type: ignore[no-untyped-call]
        "\n".join(lines), metadata={"tags": [INJECTED_TAG]}
    )
    index = _parameters_index(result)
    result.cells.insert(0 if index is None else index + 1, cell)
    return result


# -- kernel and execution ------------------------------------------------------------------


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Install the kernelspec ``name`` for this Python into its environment, if missing.

    ``python -m ipykernel install --sys-prefix`` puts it in ``<venv>/share/jupyter``, where
    JupyterLab started from the same environment finds it. A spec left by another
    environment (its Python gone or different) is replaced.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
        python = Path(spec.argv[0])
        if python.exists() and python.resolve() == Path(sys.executable).resolve():
            return name
    except NoSuchKernel:
        pass
    command = [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", name]
    command += ["--display-name", KERNEL_DISPLAY_NAME]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ReportError(
            f"cannot install the {name!r} Jupyter kernel: {done.stderr.strip()[-300:]} "
            "(is ipykernel installed in this environment?)"
        )
    return name


def _code_cells(nb: Any) -> int:
    return sum(1 for cell in nb.cells if cell.cell_type == "code")


def execute_notebook(
    nb: Any,
    *,
    name: str,
    cwd: Path,
    kernel: str = KERNEL_NAME,
    timeout: float = 900,
    progress: CellProgress | None = None,
) -> tuple[Any, tuple[int | str, str, str] | None]:
    """Run every cell of ``nb`` in ``cwd``; (the executed notebook, the failure if any).

    The failure is (code cell number from 1, not counting an injected cell; error name,
    error value); execution stops at the failing cell, and the notebook returned holds the
    outputs up to it.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    total = _code_cells(nb)
    position = {"code": 0, "index": 0}
    # Cells are numbered as in the notebook as stored: the injected cell is not counted.
    stored = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and INJECTED_TAG not in _tags(cell)
    ]
    number = {index: count for count, index in enumerate(stored, start=1)}

    def started(cell: Any, cell_index: int) -> None:
        position["index"] = cell_index

    def finished(cell: Any, cell_index: int, **_: Any) -> None:
        if cell.cell_type == "code":
            position["code"] += 1
            if progress is not None:
                progress(name, position["code"], total)

    client = NotebookClient(
        nb,
        kernel_name=kernel,
        timeout=int(timeout),
        resources={"metadata": {"path": str(cwd)}},
        on_cell_start=started,
        on_cell_executed=finished,
    )

    def cell() -> int | str:
        return number.get(position["index"], "of injected parameters")

    try:
        # The kernel's own log (transport warnings) is noise on the report's terminal.
        client.execute(stderr=subprocess.DEVNULL)
    except CellExecutionError as error:
        evalue = _ANSI.sub("", error.evalue).strip() or "(no message)"
        return nb, (cell(), error.ename, evalue)
    except DeadKernelError as error:
        return nb, (cell(), "DeadKernelError", f"the kernel died ({error})")
    return nb, None


# -- HTML ----------------------------------------------------------------------------------


def _notebook_html(nb: Any) -> str:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")  # type: ignore[no-untyped-call]
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb)
    return str(body)


def _title_and_summary(nb: Any, fallback: str) -> tuple[str, str]:
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = [line.strip() for line in cell.source.splitlines()]
        title = next((line.lstrip("# ") for line in lines if line.startswith("#")), fallback)
        paragraph: list[str] = []
        for line in lines:
            if line.startswith("#"):
                if paragraph:
                    break
                continue
            if not line and paragraph:
                break
            if line:
                paragraph.append(line)
        return title, " ".join(paragraph)
    return fallback, ""


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
        title, summary = _title_and_summary(nb, path.stem)
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
        target.write_text(_notebook_html(executed), encoding="utf-8")
        if failure is not None:
            raise NotebookFailed(path.name, *failure, html_path=target)
        seconds = time.monotonic() - started
        results.append(NotebookResult(path.stem, title, summary, target, seconds))
    _write_index(out, results, parameters, now)
    return results


_INDEX = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>pinlab report</title>
<style>
 body {{ font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
        max-width: 52rem; margin: 3rem auto; padding: 0 1.5rem; }}
 h1 {{ font-size: 1.9rem; margin-bottom: .2rem; }}
 .lead {{ color: #555; margin-top: 0; }}
 ol {{ padding-left: 0; list-style: none; counter-reset: nb; }}
 li {{ border-top: 1px solid #e3e3e3; padding: 1rem 0; }}
 li a {{ font-size: 1.15rem; font-weight: 600; color: #0b57d0; text-decoration: none; }}
 li a:hover {{ text-decoration: underline; }}
 li p {{ margin: .3rem 0 0; color: #333; }}
 .meta {{ color: #777; font-size: .85rem; }}
 .skipped {{ color: #a15c00; }}
 table {{ border-collapse: collapse; font-size: .9rem; margin-top: 2rem; }}
 td {{ padding: .15rem 1rem .15rem 0; vertical-align: top; }}
 td:first-child {{ color: #777; }}
 code {{ font-size: .85rem; }}
</style></head>
<body>
<h1>pinlab report</h1>
<p class="lead">What servers do when they renew, whether pins would have survived it, and
what a pin check costs.</p>
<ol>
{items}
</ol>
<table>
{parameters}
<tr><td>generated</td><td>{now} by pinlab {version}</td></tr>
</table>
</body></html>
"""


def _inline_markdown(text: str) -> str:
    """Escaped ``text`` with Markdown's inline code, bold and emphasis as HTML."""
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    escaped = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"(?<![\w*])\*([^*]+)\*(?![\w*])", r"<em>\1</em>", escaped)


def _write_index(
    out: Path, results: Sequence[NotebookResult], parameters: Mapping[str, object], now: datetime
) -> Path:
    from pinlab.store import pinlab_version

    items = []
    for result in results:
        title, summary = html.escape(result.title), _inline_markdown(result.summary)
        if result.html is None:
            items.append(
                f'<li><span class="meta">{html.escape(result.name)}</span><br>'
                f"<strong>{title}</strong><p>{summary}</p>"
                f'<p class="skipped">Skipped: {html.escape(result.skipped or "")}</p></li>'
            )
            continue
        link = html.escape(result.html.name)
        items.append(
            f'<li><span class="meta">{html.escape(result.name)}</span><br>'
            f'<a href="{link}">{title}</a><p>{summary}</p>'
            f'<span class="meta">executed in {result.seconds:.0f} s</span></li>'
        )
    rows = [
        f"<tr><td>{html.escape(name)}</td><td><code>{html.escape(str(value))}</code></td></tr>"
        for name, value in parameters.items()
        if value is not None
    ]
    target = out / "index.html"
    target.write_text(
        _INDEX.format(
            items="\n".join(items),
            parameters="\n".join(rows),
            now=html.escape(now.strftime("%Y-%m-%d %H:%M UTC")),
            version=html.escape(pinlab_version()),
        ),
        encoding="utf-8",
    )
    return target
