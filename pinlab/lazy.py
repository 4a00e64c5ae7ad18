"""Front doors that import their stage's modules on first use (PEP 562).

A package's ``__init__`` names what the stage offers (``from pinlab.store import Store``),
but importing it for one light module (``pinlab.store.records`` for the status names, or
``pinlab.collect.tls`` for one handshake) must not import pandas, pyarrow and DuckDB: that
made ``pinlab check`` start as slowly as the analyses. Names are resolved, and cached in the
package, when first asked for.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, names: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package`` giving each name from its module in ``names``."""

    def __getattr__(name: str) -> object:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
