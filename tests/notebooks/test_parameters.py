"""Parameter injection, papermill style, without a kernel."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from pinlab.report import (
    INJECTED_TAG,
    ReportError,
    inject_parameters,
    parameter_names,
    parse_parameter,
)


def _nb(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    return new_notebook(cells=list(cells))


def _parameters(source: str) -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


def test_declared_names_in_order() -> None:
    nb = _nb(new_markdown_cell("# t"), _parameters("db = 'a'\nbench: str | None = None\nn = 3"))
    assert parameter_names(nb) == ["db", "bench", "n"]
    assert parameter_names(_nb(new_code_cell("x = 1"))) == []


def test_injected_cell_follows_the_parameters_cell_and_sets_declared_names_only() -> None:
    nb = _nb(new_markdown_cell("# t"), _parameters("db = 'a'\nn = 3"), new_code_cell("print(db)"))
    injected = inject_parameters(nb, {"db": Path("/data/x.duckdb"), "n": 5, "other": 1})
    assert [c.source.splitlines()[-1] for c in injected.cells[1:3]] == ["n = 3", "n = 5"]
    cell = injected.cells[2]
    assert cell.metadata["tags"] == [INJECTED_TAG]
    assert "db = '/data/x.duckdb'" in cell.source
    assert "other" not in cell.source
    assert len(nb.cells) == 3  # the original is untouched


def test_a_second_injection_replaces_the_first() -> None:
    nb = _nb(_parameters("n = 3"), new_code_cell("n"))
    twice = inject_parameters(inject_parameters(nb, {"n": 5}), {"n": 9})
    assert [c.source for c in twice.cells if INJECTED_TAG in c.metadata.get("tags", [])] == [
        "# Parameters injected by `pinlab report`\nn = 9"
    ]
    assert len(twice.cells) == 3


def test_without_a_parameters_cell_nothing_is_injected() -> None:
    nb = _nb(new_code_cell("x = 1"))
    assert inject_parameters(nb, {"x": 2}).cells == nb.cells


def test_values_must_be_literals() -> None:
    with pytest.raises(ReportError, match="literal"):
        inject_parameters(_nb(_parameters("n = 3")), {"n": object()})


def test_command_line_values() -> None:
    assert parse_parameter("n=90") == ("n", 90)
    assert parse_parameter("ca_file=None") == ("ca_file", None)
    assert parse_parameter("db=data/x.duckdb") == ("db", "data/x.duckdb")
    assert parse_parameter("pair=(1, 2)") == ("pair", (1, 2))
    with pytest.raises(ReportError, match="NAME=VALUE"):
        parse_parameter("no-equals")
