"""pinlab's Merkle code against RFC 6962 section 2.1 itself, written out here from the RFC.

The reference below is the RFC's recursive definitions taken literally (MTH, PATH, PROOF
and SUBPROOF over the list of entries), slow and obviously right; it shares nothing with
:mod:`pinlab.ct.merkle`. Subtrees, audit paths and consistency proofs of every size up
to 70 must agree with it, verify, and fail when mangled; static-ct tiles must hold the
subtree hashes static-ct-api defines in the RFC's terms.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from pinlab.ct.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleTree,
    ProofError,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from pinlab.ct.static import tile_path
from pinlab.testbed.ctlog import LocalLog
from pinlab.testbed.pki import CA

# -- RFC 6962 section 2.1, verbatim in Python -----------------------------------------------


def _k(n: int) -> int:
    """'k is the largest power of two smaller than n (i.e., k < n <= 2k)' (section 2.1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    """MTH(D[n]) of section 2.1: SHA-256() for n = 0, SHA-256(0x00 || d(0)) for one
    entry, SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])) above."""
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(n)
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of section 2.1.1."""
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of section 2.1.2 (0 < m < n)."""
    return subproof(m, d, True)


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of section 2.1.2."""
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = _k(n)
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


# -- the comparisons ------------------------------------------------------------------------

ENTRIES = [bytes([i, (i * 37) % 256, 0x5A]) * (1 + i % 3) for i in range(70)]


@pytest.fixture(scope="module")
def tree() -> MerkleTree:
    return MerkleTree([leaf_hash(entry) for entry in ENTRIES])


def test_subtrees_and_roots_are_the_rfc_mth(tree: MerkleTree) -> None:
    """Every subtree pinlab hashes, aligned or not, is MTH of its entries (section 2.1)."""
    assert mth([]) == EMPTY_ROOT
    for start in range(0, 70, 3):
        for end in range(start, 71):
            assert tree.subtree(start, end) == mth(ENTRIES[start:end]), (start, end)
    compact = CompactRange()
    for size, entry in enumerate(ENTRIES, start=1):
        compact.append(leaf_hash(entry))
        assert compact.root() == tree.root(size) == mth(ENTRIES[:size])


def test_audit_paths_are_the_rfc_path_and_verify(tree: MerkleTree) -> None:
    """PATH(m, D[n]) of section 2.1.1 for every leaf of every tree up to 70 entries."""
    for n in range(1, 71):
        root = mth(ENTRIES[:n])
        for m in range(n):
            expected = path(m, ENTRIES[:n])
            assert tree.inclusion_proof(m, n) == expected, (m, n)
            prefix = verify_inclusion(leaf_hash(ENTRIES[m]), m, n, expected, root)
            assert prefix.root() == mth(ENTRIES[:m])
            for position in range(len(expected)):
                bent = list(expected)
                bent[position] = hashlib.sha256(bent[position]).digest()
                with pytest.raises(ProofError):
                    verify_inclusion(leaf_hash(ENTRIES[m]), m, n, bent, root)


def test_consistency_proofs_are_the_rfc_proof_and_verify(tree: MerkleTree) -> None:
    """PROOF(m, D[n]) of section 2.1.2 for every 0 < m < n <= 70; every proof with one
    hash changed, one dropped or one added, or checked against another old root, fails."""
    for n in range(2, 71):
        new_root = mth(ENTRIES[:n])
        for m in range(1, n):
            expected = proof(m, ENTRIES[:n])
            assert tree.consistency_proof(m, n) == expected, (m, n)
            old_root = mth(ENTRIES[:m])
            verify_consistency(m, n, old_root, new_root, expected)
            for position in range(len(expected)):
                bent = list(expected)
                bent[position] = hashlib.sha256(bent[position]).digest()
                with pytest.raises(ProofError):
                    verify_consistency(m, n, old_root, new_root, bent)
                with pytest.raises(ProofError):
                    verify_consistency(m, n, old_root, new_root, expected[:position])
            with pytest.raises(ProofError):
                verify_consistency(m, n, old_root, new_root, [*expected, new_root])
            with pytest.raises(ProofError):
                verify_consistency(m, n, mth(ENTRIES[: m - 1]), new_root, expected)


def test_a_proof_from_the_empty_tree_is_only_the_empty_proof() -> None:
    """Section 2.1.2 defines PROOF for 0 < m only: from size 0 nothing but the empty proof
    and the empty tree's root (MTH({}) = SHA-256()) may pass."""
    root = mth(ENTRIES[:5])
    verify_consistency(0, 5, mth([]), root, [])
    verify_consistency(0, 0, mth([]), mth([]), [])
    with pytest.raises(ProofError, match="empty tree must be empty"):
        verify_consistency(0, 5, mth([]), root, [root])
    with pytest.raises(ProofError, match="empty tree must be empty"):
        verify_consistency(0, 5, mth([]), root, path(0, ENTRIES[:5]))
    with pytest.raises(ProofError, match="size 0"):
        verify_consistency(0, 5, root, root, [])
    with pytest.raises(ProofError, match="size 0"):
        verify_consistency(0, 0, root, root, [])


def test_every_hash_must_be_32_bytes() -> None:
    """SHA-256 outputs only (section 2.1): an empty or short leaf hash, root or proof hash
    is refused, even where it would otherwise compare equal."""
    entries = ENTRIES[:6]
    root, leaf = mth(entries), leaf_hash(entries[2])
    audit = path(2, entries)
    with pytest.raises(ProofError, match="leaf hash of 0 bytes"):
        verify_inclusion(b"", 0, 1, [], b"")
    with pytest.raises(ProofError, match="root hash of 31 bytes"):
        verify_inclusion(leaf, 2, 6, audit, root[:31])
    with pytest.raises(ProofError, match="audit path hash of 0 bytes"):
        verify_inclusion(leaf, 2, 6, [*audit[:-1], b""], root)
    with pytest.raises(ProofError, match="root hash of 0 bytes"):
        verify_consistency(3, 3, b"", b"", [])
    with pytest.raises(ProofError, match="root hash of 0 bytes"):
        verify_consistency(0, 6, b"", root, [])
    consistency = proof(4, entries)
    with pytest.raises(ProofError, match="consistency proof hash of 33 bytes"):
        verify_consistency(4, 6, mth(entries[:4]), root, [consistency[0] + b"\x00"])
    with pytest.raises(ValueError, match="0 bytes"):
        CompactRange().append(b"")
    with pytest.raises(ValueError, match="0 bytes"):
        MerkleTree([b""])


def test_static_tiles_hold_the_subtrees_static_ct_api_defines(tmp_path: Path) -> None:
    """static-ct-api: hash n of tile l is MTH(D[(n * 256 + i) * 256**l : ... + 256**l]),
    partial tiles at the right edge, and a data tile leaf per entry (600 entries)."""
    root_ca = CA.root("Tile Root")
    log = LocalLog()
    leaf = root_ca.issue_leaf("tiles.test").der
    for index in range(600):
        log.add_certificate(leaf, (root_ca.der,), timestamp=1_600_000_000_000 + index)
    entries = [stored.entry.leaf_input for stored in log.stored]
    tiles = log.write_tiles(tmp_path, origin="127.0.0.1/tiles")
    level0 = b"".join(
        (tiles / tile_path("0", n, width)).read_bytes()
        for n, width in ((0, 256), (1, 256), (2, 88))
    )
    assert [level0[i : i + 32] for i in range(0, len(level0), 32)] == [
        mth([entry]) for entry in entries
    ]
    level1 = (tiles / tile_path("1", 0, 2)).read_bytes()
    assert level1 == mth(entries[:256]) + mth(entries[256:512])
    checkpoint = (tiles / "checkpoint").read_text().splitlines()
    assert checkpoint[1] == "600"
    assert base64.b64decode(checkpoint[2]) == mth(entries)
