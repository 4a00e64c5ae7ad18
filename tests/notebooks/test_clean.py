"""The notebooks as stored: no outputs, the pinlab kernel, a parameters cell, pinlab calls."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from pinlab.report import PARAMETERS_TAG, parameter_names
from tests.notebooks.conftest import NOTEBOOKS

# What a notebook may import besides pinlab: the standard library it needs and numpy for
# a seeded random generator. Analysis logic belongs in pinlab, not in cells.
ALLOWED_IMPORTS = {"datetime", "pathlib", "tempfile", "numpy", "pandas"}


def test_the_six_notebooks_are_there() -> None:
    assert [path.stem[:2] for path in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        index
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} hold outputs; clear them before committing "
        f"(jupyter nbconvert --clear-output --inplace {path})"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_pinlab_kernel_and_parameters_cell(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.kernelspec.name == "pinlab"
    tagged = [c for c in nb.cells if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: exactly one cell tagged {PARAMETERS_TAG!r}"
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.Assign), f"{path.name}: parameters are plain assignments"
        ast.literal_eval(node.value)  # literals only: what a report can override
    assert parameter_names(nb)
    assert not [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_cells_call_pinlab_rather_than_hold_logic(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module] if isinstance(node, ast.ImportFrom) else []
                names += [] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                for name in names:
                    top = (name or "").split(".")[0]
                    assert top == "pinlab" or top in ALLOWED_IMPORTS, f"{path.name}: {name}"
            assert not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.Lambda), (
                f"{path.name}: define functions in pinlab (pinlab.analysis), not in cells"
            )
