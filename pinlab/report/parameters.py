"""Papermill-style parameters: the ``parameters`` cell, and the cell that overrides it.

A notebook declares its inputs in one code cell tagged ``parameters``: plain assignments of
literals, with defaults that work from JupyterLab. :func:`inject_parameters` adds right after
it a cell tagged ``injected-parameters`` that sets the names the notebook declares (replacing
one left by an earlier run), so an executed notebook is the notebook a user runs by hand with
other inputs.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pinlab.report.errors import ReportError

__all__ = [
    "INJECTED_TAG",
    "PARAMETERS_TAG",
    "declared_parameters",
    "inject_parameters",
    "parameter_names",
    "parse_parameter",
    "tags",
]

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


def tags(cell: Mapping[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _parameters_index(nb: Any) -> int | None:
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and PARAMETERS_TAG in tags(cell):
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
    result.cells = [cell for cell in result.cells if INJECTED_TAG not in tags(cell)]
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
