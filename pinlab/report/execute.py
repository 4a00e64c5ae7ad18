"""Run a notebook on the ``pinlab`` kernel with nbclient, cell by cell."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pinlab.report.errors import ReportError
from pinlab.report.parameters import INJECTED_TAG, tags

__all__ = [
    "KERNEL_DISPLAY_NAME",
    "KERNEL_NAME",
    "CellProgress",
    "ensure_kernel",
    "execute_notebook",
]

KERNEL_NAME = "pinlab"
KERNEL_DISPLAY_NAME = "Python (pinlab)"

CellProgress = Callable[[str, int, int], None]
"""Called as (notebook name, code cells done, code cells in the notebook)."""

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Install the kernelspec ``name`` for this Python into its environment, if missing.

    ``python -m ipykernel install --sys-prefix`` puts it in ``<venv>/share/jupyter``, where
    JupyterLab started from the same environment finds it. A spec left by another
    environment (its Python gone or different) is replaced.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def ours() -> str | None:
        """None when the spec runs this environment's Python, else where it is."""
        try:
            spec = KernelSpecManager().get_kernel_spec(name)
        except NoSuchKernel:
            return "missing"
        python = Path(spec.argv[0])
        # Same environment: the same bin/ folder (resolving links would lead every venv
        # back to the one base interpreter).
        if python.exists() and python.absolute().parent == Path(sys.executable).absolute().parent:
            return None
        return str(spec.resource_dir)

    if ours() is None:
        return name
    command = [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", name]
    command += ["--display-name", KERNEL_DISPLAY_NAME]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ReportError(
            f"cannot install the {name!r} Jupyter kernel: {done.stderr.strip()[-300:]} "
            "(is ipykernel installed in this environment?)"
        )
    shadow = ours()
    if shadow is not None:
        raise ReportError(
            f"the {name!r} Jupyter kernel at {shadow} runs another Python and hides this "
            f"environment's; remove it (jupyter kernelspec remove {name}) and run again"
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
        if cell.cell_type == "code" and INJECTED_TAG not in tags(cell)
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
