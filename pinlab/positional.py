"""Pickling frozen, slotted dataclasses as their constructor call: for records that cross
process pipes by the million.

A ``@dataclass(slots=True)`` pickles through ``__getstate__``/``__setstate__`` written in
Python, which loop over :func:`dataclasses.fields` for every object. Certificate rows,
observations and CT log entries cross to and from the collector and CT parse processes by
the million, so they inherit :class:`PickledByPosition` instead: the fields in order,
read by one :func:`operator.attrgetter`, handed back to the constructor.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from typing import Any

__all__ = ["PickledByPosition"]

_GETTERS: dict[type, Callable[[Any], tuple[Any, ...]]] = {}


def _getter(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    fields = dataclasses.fields(cls)
    if any(not field.init for field in fields):
        raise TypeError(f"{cls.__name__} has fields its constructor does not take")
    names = [field.name for field in fields]
    if len(names) == 1:  # attrgetter of one name returns the value, not a 1-tuple
        (name,) = names
        return lambda record: (getattr(record, name),)
    return operator.attrgetter(*names)


class PickledByPosition:
    """Base of a dataclass that pickles as ``cls(*fields)`` (see the module's documentation)."""

    __slots__ = ()

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        cls = type(self)
        getter = _GETTERS.get(cls)
        if getter is None:
            getter = _GETTERS[cls] = _getter(cls)
        return cls, getter(self)
