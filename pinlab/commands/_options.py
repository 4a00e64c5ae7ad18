"""Options checked where they enter: every number and date with its accepted range.

Typer reads ``inf``, ``nan`` and ``1e-9`` as floats without complaint, and each once went
deep before failing: ``--timeout inf`` hung ``collect`` and overflowed a socket timeout in
``pins``, ``--rate 1e-9`` waited for ever. The callbacks here refuse such values while the
command line is read (exit 2, "Invalid value for '--timeout': ..."), naming the range.

Dates must be ones an X.509 certificate can carry (RFC 5280: UTCTime from 1950,
GeneralizedTime to 9999) and still be in range once moved to UTC, so that no later sum
overflows and no date earlier than any certificate silently means "long expired".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pinlab.errors import PinlabError

if TYPE_CHECKING:
    from pinlab.memory import MemoryBudget

__all__ = [
    "EARLIEST",
    "LATEST",
    "MAX_DAYS",
    "MAX_RATE",
    "MAX_SECONDS",
    "MEMORY_LIMIT_HELP",
    "MIN_RATE",
    "MIN_SECONDS",
    "MemoryLimitOption",
    "OptionRangeError",
    "count_in",
    "memory_budget",
    "number_in",
    "parse_time",
    "valid_memory_limit",
    "valid_rate",
    "valid_seconds",
    "valid_time",
]

MIN_SECONDS, MAX_SECONDS = 0.001, 86_400.0
"""A timeout: one millisecond to one day (longer is a hang, not a timeout)."""
MIN_RATE, MAX_RATE = 0.001, 1_000_000.0
"""Requests per second: one per ~17 minutes to a million."""
EARLIEST = datetime(1950, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
_TIME_RANGE = "1950-01-01T00:00:00Z to 9999-12-31T23:59:59Z, the dates a certificate can carry"


class OptionRangeError(PinlabError, ValueError):
    """A number or date given on the command line is outside what pinlab accepts."""


def check_range(value: float, low: float, high: float, unit: str) -> float:
    """``value`` if finite and in ``[low, high]``; :class:`OptionRangeError` naming both."""
    if not (math.isfinite(value) and low <= value <= high):
        raise OptionRangeError(f"{value:g} is not a number of {unit} in {low:g}..{high:g}")
    return value


def parse_time(text: str | None) -> datetime:
    """An ISO-8601 time in UTC (UTC when no offset is given); now when ``text`` is None.

    :class:`OptionRangeError` unless it is one a certificate can carry, once in UTC.
    """
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise OptionRangeError(
            f"time {text!r} is not ISO-8601 (e.g. 2026-01-31T12:00:00Z)"
        ) from None
    try:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise OptionRangeError(f"time {text!r} is outside {_TIME_RANGE}") from None
    if not EARLIEST <= value <= LATEST:
        raise OptionRangeError(f"time {text!r} is outside {_TIME_RANGE}")
    return value


def _bad(error: PinlabError) -> typer.BadParameter:
    return typer.BadParameter(str(error))


def valid_seconds(value: float | None) -> float | None:
    """Typer callback for timeouts: positive, finite, at most a day."""
    if value is None:
        return None
    try:
        return check_range(value, MIN_SECONDS, MAX_SECONDS, "seconds")
    except OptionRangeError as error:
        raise _bad(error) from None


def valid_rate(value: float | None) -> float | None:
    """Typer callback for ``--rate``: positive and finite (None means unlimited)."""
    if value is None:
        return None
    try:
        return check_range(value, MIN_RATE, MAX_RATE, "requests per second")
    except OptionRangeError as error:
        raise _bad(error) from None


def count_in(low: int, high: int) -> Callable[[int | None], int | None]:
    """A Typer callback for a count (workers, connections, retries) in ``low..high``."""

    def valid_count(value: int | None) -> int | None:
        if value is not None and not low <= value <= high:
            raise typer.BadParameter(f"{value} is not a count in {low}..{high}")
        return value

    return valid_count


def valid_time(value: str | None) -> str | None:
    """Typer callback for date options: the text, once :func:`parse_time` accepts it."""
    if value is None:
        return None
    try:
        parse_time(value)
    except OptionRangeError as error:
        raise _bad(error) from None
    return value


MAX_DAYS = 36_525.0
"""A span in days: at most a century (longer outlives every certificate and release)."""


def number_in(low: float, high: float, unit: str, *, above: bool = False) -> Callable[[Any], Any]:
    """A Typer callback for a finite number (or each of a repeated option's numbers) in
    ``low..high``; with ``above``, ``low`` itself is refused (a span of 0 days is no span).

    ``--horizon nan`` or ``--users -1`` once reached the model and gave a NaN ranking or a
    negative count of broken users; they now stop where the command line is read.
    """

    def valid_number(value: Any) -> Any:
        for number in value if isinstance(value, list) else [value]:
            if number is None:
                continue
            finite = math.isfinite(number) and low <= number <= high
            if not finite or (above and number == low):
                span = f"above {low:g}, at most {high:g}" if above else f"in {low:g}..{high:g}"
                raise typer.BadParameter(f"{number:g} is not a number of {unit} {span}")
        return value

    return valid_number


MEMORY_LIMIT_HELP = (
    "Memory the analysis may use: 4GB, 512MB, 3.5GiB or 50% of this machine's (default: "
    "half). DuckDB gets most of it and spills to a temporary folder past it; pinlab's own "
    "buffers are sized from the rest."
)


def valid_memory_limit(value: str | None) -> str | None:
    """Typer callback for ``--memory-limit``: the text, once :class:`MemoryBudget` reads it.

    "abc", "0", "-1GB", "inf" or more than the machine has stop here (exit 2), not as a
    DuckDB error halfway through an analysis, nor as a limit that bounds nothing.
    """
    if value is None:
        return None
    from pinlab.memory import MemoryBudget, MemoryLimitError

    try:
        MemoryBudget.parse(value)
    except MemoryLimitError as error:
        raise _bad(error) from None
    return value


def memory_budget(value: str | None) -> MemoryBudget:
    """The budget ``--memory-limit`` names; half of the machine's memory when not given."""
    from pinlab.memory import MemoryBudget

    return MemoryBudget.default() if value is None else MemoryBudget.parse(value)


MemoryLimitOption = Annotated[
    str | None,
    typer.Option(
        "--memory-limit", help=MEMORY_LIMIT_HELP, callback=valid_memory_limit, metavar="SIZE"
    ),
]
"""``--memory-limit`` of every command that opens a store for analysis."""
