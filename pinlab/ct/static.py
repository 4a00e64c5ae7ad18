"""The static-ct-api (C2SP) read path: checkpoint, hash tiles, data tiles, issuers.

A tiled log serves its tree as immutable files: ``tile/<L>/<N>`` holds 256 consecutive
Merkle hashes of level ``8 * L`` (partial tiles ``.p/<W>`` at the right edge),
``tile/data/<N>`` the 256 entries of the matching level-0 tile as ``TileLeaf`` structures
whose chains are SHA-256 fingerprints, ``issuer/<hex>`` each chain certificate. Any
aligned perfect subtree's hash can be computed from one tile, which is how
:meth:`TiledLog.subtree` lets a client check a batch of entries against the checkpoint
without an inclusion proof endpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading

from pinlab.ct.client import HttpSource
from pinlab.ct.entries import LogEntry, parse_tile_leaves
from pinlab.ct.errors import LogMisbehaviourError
from pinlab.ct.merkle import CompactRange, root_hash
from pinlab.ct.sth import LogKey, SignedTreeHead, parse_checkpoint

__all__ = ["TILE_WIDTH", "TiledLog", "tile_path"]

TILE_WIDTH = 256
_TILE_CACHE_LIMIT = 256


def tile_path(level: str, index: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]`` with ``N`` in 3-digit path elements, all but the last
    prefixed with ``x`` (index 1234067 is ``x001/x234/067``)."""
    groups: list[str] = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if not index:
            break
    name = "/".join([*(f"x{g}" for g in reversed(groups[1:])), groups[0]])
    return f"tile/{level}/{name}" + (f".p/{width}" if width < TILE_WIDTH else "")


class TiledLog:
    """A static-ct-api log below ``source``'s URL (its monitoring prefix)."""

    def __init__(self, source: HttpSource, *, key: LogKey | None = None) -> None:
        self.source = source
        self.key = key
        self.origin: str | None = None
        self._issuers: dict[bytes, bytes] = {}
        self._tiles: dict[tuple[int, int, int], bytes] = {}
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The monitoring prefix, with a trailing slash."""
        return self.source.url

    def checkpoint(self) -> SignedTreeHead:
        """The current checkpoint as a tree head (its note signature checked with the key)."""
        body = self.source.get("checkpoint")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise LogMisbehaviourError("checkpoint: not UTF-8 text") from None
        self.origin, sth = parse_checkpoint(text, key=self.key)
        return sth

    # -- hashes ------------------------------------------------------------------------------

    def _tile(self, level: int, index: int, tree_size: int) -> bytes:
        """Hash tile ``index`` of ``level`` as it stands in a tree of ``tree_size``."""
        count = tree_size >> (8 * level)
        width = min(TILE_WIDTH, count - index * TILE_WIDTH)
        if width <= 0:
            raise LogMisbehaviourError(f"no tile {level}/{index} in a tree of size {tree_size}")
        cached = self._tiles.get((level, index, width))
        if cached is not None:
            return cached
        body = self.source.get(tile_path(str(level), index, width))
        if len(body) != 32 * width:
            raise LogMisbehaviourError(
                f"tile {level}/{index}: {len(body)} bytes, expected {32 * width}"
            )
        with self._lock:
            if len(self._tiles) >= _TILE_CACHE_LIMIT:
                self._tiles.clear()
            self._tiles[(level, index, width)] = body
        return body

    def subtree(self, start: int, height: int, tree_size: int) -> bytes:
        """The hash of the aligned perfect subtree of ``2**height`` leaves at ``start``."""
        level, rest = divmod(height, 8)
        first = start >> (8 * level)
        tile = self._tile(level, first // TILE_WIDTH, tree_size)
        offset = first % TILE_WIDTH
        hashes = [tile[32 * i : 32 * i + 32] for i in range(offset, offset + (1 << rest))]
        return root_hash(hashes)

    def compact_range(self, size: int, tree_size: int) -> CompactRange:
        """The compact range of ``[0, size)`` read from the tiles of a tree of ``tree_size``."""
        compact, position = CompactRange(), 0
        for height in range(size.bit_length() - 1, -1, -1):
            if size >> height & 1:
                compact.append_subtree(self.subtree(position, height, tree_size), height)
                position += 1 << height
        return compact

    def complete(self, compact: CompactRange, tree_size: int) -> bytes:
        """The root of ``tree_size`` from ``compact`` and the tiles to its right."""
        work, position = compact.copy(), compact.size
        while position < tree_size:
            height = 0
            while position % (2 << height) == 0 and position + (2 << height) <= tree_size:
                height += 1
            work.append_subtree(self.subtree(position, height, tree_size), height)
            position += 1 << height
        return work.root()

    # -- entries -----------------------------------------------------------------------------

    def issuer(self, fingerprint: bytes) -> bytes:
        """The chain certificate with that SHA-256, fetched once."""
        der = self._issuers.get(fingerprint)
        if der is None:
            der = self.source.get(f"issuer/{fingerprint.hex()}")
            if hashlib.sha256(der).digest() != fingerprint:
                raise LogMisbehaviourError(
                    f"issuer/{fingerprint.hex()}: served certificate has another SHA-256"
                )
            self._issuers[fingerprint] = der
        return der

    def data_tile(self, index: int, tree_size: int) -> list[LogEntry]:
        """The entries of data tile ``index``, chains resolved, in a tree of ``tree_size``."""
        first = index * TILE_WIDTH
        width = min(TILE_WIDTH, tree_size - first)
        if width <= 0:
            raise LogMisbehaviourError(f"no data tile {index} in a tree of size {tree_size}")
        body = self.source.get(tile_path("data", index, width))
        entries = []
        for leaf in parse_tile_leaves(body, first, width):
            chain = tuple(self.issuer(item) for item in leaf.fingerprints)
            entries.append(dataclasses.replace(leaf.entry, chain=chain))
        return entries
