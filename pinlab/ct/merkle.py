"""RFC 6962 Merkle tree hashing, proofs and their verification (pure, no I/O).

A log commits to its entries by the Merkle Tree Hash of RFC 6962 section 2.1: leaves are
hashed as ``SHA-256(0x00 || leaf)``, inner nodes as ``SHA-256(0x01 || left || right)``, and
a tree of ``n`` leaves splits at the largest power of two below ``n``. Every left subtree is
therefore perfect and aligned, which is what lets a client keep the whole prefix
``[0, size)`` of a log as one hash per set bit of ``size`` (:class:`CompactRange`), extend
it leaf by leaf, and check it against a signed tree head with one inclusion proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pinlab.errors import PinlabError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "MerkleTree",
    "ProofError",
    "leaf_hash",
    "node_hash",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The Merkle Tree Hash of the empty tree."""
HASH_SIZE = 32
"""Every hash of an RFC 6962 tree is a SHA-256 output: leaf hashes, nodes, roots, proofs."""


class ProofError(PinlabError, ValueError):
    """A proof does not verify (the caller turns it into a log misbehaviour)."""


def leaf_hash(leaf: bytes) -> bytes:
    """``SHA-256(0x00 || leaf)``: the hash of one log entry's ``MerkleTreeLeaf``."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _check_sizes(what: str, hashes: Sequence[bytes]) -> None:
    """Refuse a hash that is not 32 bytes: a short (even empty) one would otherwise just
    fail to match, or worse, match a root of the same wrong length."""
    for item in hashes:
        if len(item) != HASH_SIZE:
            raise ProofError(f"{what} of {len(item)} bytes: every hash is {HASH_SIZE} bytes")


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of a list of leaf hashes (RFC 6962 ``MTH``)."""
    compact = CompactRange()
    for item in leaf_hashes:
        compact.append(item)
    return compact.root()


class CompactRange:
    """The prefix ``[0, size)`` of a tree as the roots of its perfect subtrees, largest first.

    ``append`` costs O(1) amortised and memory stays O(log size): a log of any length is
    hashed in constant memory.
    """

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            raise ValueError(f"a compact range of size {size} holds {size.bit_count()} hashes")
        self.size = size
        self.hashes = list(hashes)

    def copy(self) -> CompactRange:
        """An independent copy."""
        return CompactRange(self.size, self.hashes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash at index ``size``."""
        self.append_subtree(leaf, 0)

    def append_subtree(self, subtree: bytes, height: int) -> None:
        """Add the root of a perfect subtree of ``2**height`` leaves starting at ``size``."""
        width = 1 << height
        if len(subtree) != HASH_SIZE:
            raise ValueError(f"a hash of {len(subtree)} bytes: every hash is {HASH_SIZE} bytes")
        if self.size % width:
            raise ValueError(f"a subtree of {width} leaves cannot start at index {self.size}")
        node, size = subtree, self.size >> height
        while size & 1:
            node = node_hash(self.hashes.pop(), node)
            size >>= 1
        self.hashes.append(node)
        self.size += width

    def root(self) -> bytes:
        """The Merkle Tree Hash of ``[0, size)``."""
        if not self.hashes:
            return EMPTY_ROOT
        result = self.hashes[-1]
        for item in reversed(self.hashes[:-1]):
            result = node_hash(item, result)
        return result


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, path: Sequence[bytes], root: bytes
) -> CompactRange:
    """Check an audit path (RFC 9162 section 2.1.3.2); return the verified ``[0, index)``.

    The left siblings on the path of leaf ``index`` are exactly the perfect subtrees that
    cover every earlier leaf, so a verified proof also hands over the compact range of the
    prefix before the leaf. Raises :class:`ProofError` when the proof does not verify.
    """
    _check_sizes("leaf hash", [leaf])
    _check_sizes("root hash", [root])
    _check_sizes("audit path hash", path)
    if not 0 <= index < tree_size:
        raise ProofError(f"leaf index {index} outside a tree of size {tree_size}")
    fn, sn, result = index, tree_size - 1, leaf
    left: list[bytes] = []
    for sibling in path:
        if sn == 0:
            raise ProofError("audit path longer than the tree is high")
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            left.append(sibling)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("audit path shorter than the tree is high")
    if result != root:
        raise ProofError("audit path does not lead to the tree head's root hash")
    return CompactRange(index, left[::-1])


def verify_consistency(
    first_size: int, second_size: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``second_size`` extends that of ``first_size`` (RFC 9162
    section 2.1.4.2). Raises :class:`ProofError` when it does not.

    The empty tree is a prefix of every tree, but only the empty tree's root
    (:data:`EMPTY_ROOT`) and an empty proof prove it: RFC 6962 section 2.1.2 defines no
    consistency proof from size 0, so anything else there is a malformed proof.
    """
    _check_sizes("root hash", [first_root, second_root])
    _check_sizes("consistency proof hash", proof)
    if first_size < 0:
        raise ProofError(f"negative tree size {first_size}")
    if first_size > second_size:
        raise ProofError(f"tree shrank from {first_size} to {second_size} entries")
    if first_size == second_size:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if first_root != second_root:
            raise ProofError("same tree size, different root hashes")
    if first_size == 0:
        if proof:
            raise ProofError("a consistency proof from the empty tree must be empty")
        if first_root != EMPTY_ROOT:
            raise ProofError("a tree of size 0 has the empty tree's root hash, not this one")
        return
    if first_size == second_size:
        return
    path = list(proof)
    if first_size & (first_size - 1) == 0:  # a power of two: the old root starts the path
        path.insert(0, first_root)
    if not path:
        raise ProofError("empty consistency proof")
    fn, sn = first_size - 1, second_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for item in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof too long")
        if fn & 1 or fn == sn:
            fr = node_hash(item, fr)
            sr = node_hash(item, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, item)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof too short")
    if fr != first_root or sr != second_root:
        raise ProofError("consistency proof does not match the two root hashes")


class MerkleTree:
    """A whole tree kept in memory, level by level: what a (test) log needs to serve
    roots and proofs for any tree size up to its own."""

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[]]
        for item in leaf_hashes:
            self.append(item)

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self.levels[0])

    def append(self, leaf: bytes) -> None:
        """Add a leaf hash; complete perfect subtrees are hashed as they close."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash of {len(leaf)} bytes: every hash is {HASH_SIZE} bytes")
        self.levels[0].append(leaf)
        level, index = 0, len(self.levels[0]) - 1
        while index & 1:
            if len(self.levels) == level + 1:
                self.levels.append([])
            pair = self.levels[level]
            self.levels[level + 1].append(node_hash(pair[index - 1], pair[index]))
            level, index = level + 1, index >> 1

    def subtree(self, start: int, end: int) -> bytes:
        """MTH of the leaves ``[start, end)`` (a subtree as RFC 6962 splits them)."""
        width = end - start
        if width <= 0:
            return EMPTY_ROOT
        if width & (width - 1) == 0 and start % width == 0:
            return self.levels[width.bit_length() - 1][start // width]
        k = _split(width)
        return node_hash(self.subtree(start, start + k), self.subtree(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all by default)."""
        return self.subtree(0, self.size if size is None else size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The audit path of leaf ``index`` in the tree of ``size`` leaves (RFC 6962 PATH)."""
        if not 0 <= index < size <= self.size:
            raise ValueError(f"no leaf {index} in a tree of size {size}")
        return self._path(index, 0, size)

    def _path(self, index: int, start: int, end: int) -> list[bytes]:
        if end - start == 1:
            return []
        k = _split(end - start)
        if index < start + k:
            return [*self._path(index, start, start + k), self.subtree(start + k, end)]
        return [*self._path(index, start + k, end), self.subtree(start, start + k)]

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """The proof that the tree of ``second`` leaves extends that of ``first`` (PROOF)."""
        if not 0 <= first <= second <= self.size:
            raise ValueError(f"no consistency proof from {first} to {second}")
        if first in (0, second):
            return []
        return self._subproof(first, 0, second, True)

    def _subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [self.subtree(start, end)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, start, start + k, complete), self.subtree(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self.subtree(start, start + k)]
