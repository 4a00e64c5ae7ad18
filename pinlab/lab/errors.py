"""Errors of the rotation lab, under pinlab's one root :class:`~pinlab.errors.PinlabError`."""

from __future__ import annotations

from pinlab.errors import PinlabError

__all__ = ["LabError", "ScenarioError"]


class LabError(PinlabError):
    """The lab cannot run: a binary is missing, a server did not start, an order failed."""


class ScenarioError(LabError, ValueError):
    """A scenario file that cannot be used; the message names the file and the key."""
