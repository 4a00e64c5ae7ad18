"""The layout holds: no import cycles, analysis never imports test infrastructure or the
collector, nobody reaches into the store's privates, every error is a PinlabError."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pinlab
from pinlab.errors import PinlabError

PACKAGE = Path(pinlab.__file__).parent


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text())
    return found


def _imports(tree: ast.Module, known: set[str]) -> set[str]:
    """pinlab modules imported anywhere in ``tree`` (function-level imports included)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pinlab"):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("pinlab"))
    return names & known


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        name: {
            target
            for target in _imports(tree, known)
            # a package and its own modules import each other by design (the front door)
            if not (target.startswith(name + ".") or name.startswith(target + "."))
        }
        for name, tree in modules.items()
    }


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles = sorted(name for name in graph if name in _reachable(graph, name))
    assert cycles == []


def test_analysis_never_imports_test_infrastructure_or_network_code() -> None:
    graph = _graph()
    for stage in ("pinlab.history", "pinlab.survival", "pinlab.advice", "pinlab.analysis"):
        for name in graph:
            if name == stage or name.startswith(stage + "."):
                direct = graph[name]
                assert not {t for t in direct if t.startswith("pinlab.testbed")}, name
                assert not {t for t in direct if t.startswith("pinlab.collect.")}, name


def test_nobody_outside_the_store_touches_its_privates() -> None:
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "store":
            continue
        text = path.read_text()
        for private in ("store._insert", "._arrow(", "import _arrow"):
            assert private not in text, f"{path}: {private}"


def test_every_exception_derives_from_pinlab_error() -> None:
    for module in pkgutil.walk_packages([str(PACKAGE)], prefix="pinlab."):
        loaded = importlib.import_module(module.name)
        for _, value in inspect.getmembers(loaded, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__.startswith("pinlab"):
                assert issubclass(value, PinlabError), f"{value.__module__}.{value.__name__}"
