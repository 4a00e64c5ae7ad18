"""What can go wrong while reading a CT log: the log cannot be reached, or it misbehaves."""

from __future__ import annotations

from pinlab.errors import PinlabError

__all__ = ["CTError", "LogFetchError", "LogMisbehaviourError"]


class CTError(PinlabError):
    """Root of the Certificate Transparency errors."""


class LogFetchError(CTError):
    """The log (or crt.sh) could not be read: refused, timed out, HTTP error, cut short.

    Nothing of the batch in flight is stored; run the same command again to resume.
    ``status`` is the HTTP status of a refused request (None for network failures).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LogMisbehaviourError(CTError):
    """The log served something provably wrong: a bad STH signature, an entry that is not
    in its tree, a malformed entry, a tree that shrank. Nothing of it is stored."""
