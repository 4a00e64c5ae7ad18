"""How much memory an analysis may use: one budget for DuckDB and for pinlab's own buffers.

A DuckDB ``memory_limit`` alone does not bound an analysis: what pinlab fetches out of
DuckDB (Arrow batches, pandas frames, replay rows) lives outside DuckDB's buffer manager.
:class:`MemoryBudget` therefore splits one figure, by default half of the machine's memory
(``--memory-limit``), into

- DuckDB's ``memory_limit`` (:data:`DUCKDB_SHARE` of the budget) with a private
  ``temp_directory`` to spill joins, sorts and aggregates to past it;
- the size of pinlab's own buffers (:data:`BUFFER_SHARE`), such as how many observations
  the out-of-core replay holds at once (:meth:`MemoryBudget.replay_batch_rows`);

the rest is headroom for the interpreter, libraries and what neither accounts for.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pinlab.errors import PinlabError

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "BUFFER_SHARE",
    "DUCKDB_SHARE",
    "ENVIRONMENT",
    "MIN_BYTES",
    "MemoryBudget",
    "MemoryLimitError",
    "physical_memory",
]

DUCKDB_SHARE = 0.6
"""DuckDB's share of the budget: it spills past it, so it can have most."""
BUFFER_SHARE = 0.2
"""pinlab's own buffers' share (the replay's batches and the rows built from them)."""
ENVIRONMENT = "PINLAB_MEMORY_LIMIT"
"""A budget given to code that opens stores without a ``memory=`` argument of its own:
``pinlab report`` sets it for the notebooks' kernels, and a user may set it before
``make lab``. Same syntax as ``--memory-limit``."""
MIN_BYTES = 64 * 2**20
"""The smallest budget accepted: below it DuckDB cannot hold a sort's working set."""
REPLAY_ROW_BYTES = 8_000
"""A generous estimate of what one observation costs in a replay batch: its Arrow row
(host, lineage, leaf digest, key-id lists), the numpy outcomes of 7 strategies x 2
semantics, and one strategy's replay rows for ``--out`` at a time. Generous on purpose:
past about 100,000 observations a batch is no faster."""
MAX_REPLAY_ROWS = 250_000
"""Beyond this a batch is no faster (numpy is already vectorised) and only bigger."""

_UNITS = {
    "": 1, "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
}  # fmt: skip
_PATTERN = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*|%)\s*$")


class MemoryLimitError(PinlabError, ValueError):
    """A memory limit that cannot be read, or is not a size this machine can give."""


def physical_memory() -> int:
    """Bytes of memory this process can have: the machine's RAM, or the cgroup's limit when
    lower (a container's limit is what the kernel enforces, not what the machine has)."""
    total = 0
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
        except OSError:
            pass
    if total <= 0:
        total = 8 * 2**30  # nothing tells: assume a small machine rather than a large one
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


@dataclass(frozen=True, slots=True)
class MemoryBudget:
    """A memory budget in bytes; build it with :meth:`parse` or :meth:`default`."""

    bytes: int

    def __post_init__(self) -> None:
        if self.bytes < MIN_BYTES:
            raise MemoryLimitError(
                f"a memory limit of {_size(self.bytes)} is too small: give at least "
                f"{_size(MIN_BYTES)}"
            )

    @classmethod
    def default(cls) -> MemoryBudget:
        """Half of :func:`physical_memory`: the analysis leaves the other half to the rest
        of the machine (a collector, a notebook) and never starts the system swapping."""
        return cls(max(physical_memory() // 2, MIN_BYTES))

    @classmethod
    def from_environment(cls) -> MemoryBudget | None:
        """The budget :data:`ENVIRONMENT` names, None when it is unset or empty."""
        text = os.environ.get(ENVIRONMENT, "").strip()
        if not text:
            return None
        try:
            return cls.parse(text)
        except MemoryLimitError as error:
            raise MemoryLimitError(f"{ENVIRONMENT}={text}: {error}") from None

    @classmethod
    def parse(cls, text: str) -> MemoryBudget:
        """``"4GB"``, ``"512MB"``, ``"3.5GiB"``, ``"2000000000"`` (bytes) or ``"50%"`` of
        :func:`physical_memory`. KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB of 1024,
        as DuckDB reads them. :class:`MemoryLimitError` says what is wrong."""
        found = _PATTERN.match(text)
        unit = found.group(2).upper() if found else ""
        if found is None or (unit not in _UNITS and unit != "%"):
            raise MemoryLimitError(
                f"memory limit {text!r} is not a size: give e.g. 4GB, 512MB, 3.5GiB or 50% "
                "(of this machine's memory)"
            )
        number = float(found.group(1))
        machine = physical_memory()
        if unit == "%":
            if not 0 < number <= 100:
                raise MemoryLimitError(
                    f"memory limit {text!r}: a share of memory is above 0% and at most 100%"
                )
            size = machine * number / 100
        else:
            size = number * _UNITS[unit]
        if not math.isfinite(size) or size <= 0:
            raise MemoryLimitError(f"memory limit {text!r}: give a size above 0")
        if size > machine:
            raise MemoryLimitError(
                f"memory limit {text!r} is more than this machine's {_size(machine)}: past it "
                "the system swaps or kills the analysis; give at most 100%"
            )
        return cls(int(size))

    @property
    def duckdb_bytes(self) -> int:
        """What DuckDB may hold before it spills (:data:`DUCKDB_SHARE`)."""
        return max(int(self.bytes * DUCKDB_SHARE), MIN_BYTES // 2)

    @property
    def duckdb_limit(self) -> str:
        """:attr:`duckdb_bytes` in DuckDB's syntax (whole MiB)."""
        return f"{self.duckdb_bytes // 2**20}MiB"

    @property
    def buffer_bytes(self) -> int:
        """What pinlab's own buffers may hold (:data:`BUFFER_SHARE`)."""
        return int(self.bytes * BUFFER_SHARE)

    def replay_batch_rows(self) -> int:
        """Observations the out-of-core replay holds at once (whole timelines are kept
        together, so a batch may exceed it by one timeline)."""
        return max(1, min(MAX_REPLAY_ROWS, self.buffer_bytes // REPLAY_ROW_BYTES))

    def configure(self, con: duckdb.DuckDBPyConnection, spill: Path) -> None:
        """Set ``con``'s ``memory_limit`` and make it spill to ``spill`` past it."""
        con.execute("SET memory_limit = ?", [self.duckdb_limit])
        con.execute("SET temp_directory = ?", [str(spill)])

    def spill_directory(self) -> Path:
        """A new private directory to spill to; whoever closes the connection removes it
        (:func:`remove_spill`)."""
        return Path(tempfile.mkdtemp(prefix="pinlab-duckdb-"))

    def __str__(self) -> str:
        return _size(self.bytes)


def remove_spill(spill: Path | None) -> None:
    """Remove a spill directory made by :meth:`MemoryBudget.spill_directory`."""
    if spill is not None:
        shutil.rmtree(spill, ignore_errors=True)


def _size(count: float) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{int(count)} B"
