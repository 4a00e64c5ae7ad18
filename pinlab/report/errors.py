"""The report's errors: unusable input, and a notebook cell that raised."""

from __future__ import annotations

from pathlib import Path

from pinlab.errors import PinlabError

__all__ = ["NotebookFailed", "ReportError"]


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
