"""RFC 6962 hashing against the published reference vectors, and proofs over many sizes."""

from __future__ import annotations

import hashlib

import pytest

from pinlab.ct.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleTree,
    ProofError,
    leaf_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

# The reference leaves and tree heads of the certificate-transparency test suite (the
# vectors every RFC 6962 implementation checks itself against).
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]  # fmt: skip
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]  # fmt: skip
CONSISTENCY = [
    (2, 8, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]  # fmt: skip


@pytest.fixture(scope="module")
def reference() -> MerkleTree:
    return MerkleTree([leaf_hash(leaf) for leaf in LEAVES])


def test_roots_match_the_reference_vectors(reference: MerkleTree) -> None:
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == reference.root(0)
    for size, expected in enumerate(ROOTS, start=1):
        assert reference.root(size).hex() == expected
        assert root_hash(reference.levels[0][:size]).hex() == expected


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_inclusion_proofs_match_the_reference_vectors(
    reference: MerkleTree, index: int, size: int, path: list[str]
) -> None:
    proof = reference.inclusion_proof(index, size)
    assert [h.hex() for h in proof] == path
    prefix = verify_inclusion(reference.levels[0][index], index, size, proof, reference.root(size))
    assert prefix.root() == reference.root(index)


@pytest.mark.parametrize(("first", "second", "path"), CONSISTENCY)
def test_consistency_proofs_match_the_reference_vectors(
    reference: MerkleTree, first: int, second: int, path: list[str]
) -> None:
    proof = reference.consistency_proof(first, second)
    assert [h.hex() for h in proof] == path
    verify_consistency(first, second, reference.root(first), reference.root(second), proof)


def test_every_proof_of_every_size_verifies_and_mangled_ones_fail() -> None:
    leaves = [leaf_hash(bytes([i, i * 7 % 256])) for i in range(70)]
    tree = MerkleTree(leaves)
    compact = CompactRange()
    for size in range(71):
        assert compact.root() == tree.root(size) == root_hash(leaves[:size])
        root = tree.root(size)
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert verify_inclusion(leaves[index], index, size, proof, root).hashes == (
                CompactRange(index, []).hashes if index == 0 else _compact(leaves[:index]).hashes
            )
            if proof:
                bad = [*proof[:-1], bytes(32)]
                with pytest.raises(ProofError):
                    verify_inclusion(leaves[index], index, size, bad, root)
                with pytest.raises(ProofError):
                    verify_inclusion(leaves[index], index, size, proof[:-1], root)
            with pytest.raises(ProofError):
                verify_inclusion(leaves[index], index, size, [*proof, bytes(32)], root)
        for first in range(size + 1):
            proof = tree.consistency_proof(first, size)
            verify_consistency(first, size, tree.root(first), root, proof)
            if proof and 0 < first < size:
                with pytest.raises(ProofError):
                    verify_consistency(first, size, tree.root(first), root, [bytes(32), *proof[1:]])
        if size < 70:
            compact.append(leaves[size])


def _compact(leaves: list[bytes]) -> CompactRange:
    compact = CompactRange()
    for item in leaves:
        compact.append(item)
    return compact


def test_subtrees_append_like_their_leaves() -> None:
    leaves = [leaf_hash(bytes([i])) for i in range(48)]
    tree = MerkleTree(leaves)
    compact = CompactRange()
    compact.append_subtree(tree.subtree(0, 32), 5)
    compact.append_subtree(tree.subtree(32, 40), 3)
    for item in leaves[40:]:
        compact.append(item)
    assert compact.root() == tree.root()
    with pytest.raises(ValueError, match="cannot start"):
        CompactRange(3, compact.hashes[:2]).append_subtree(leaves[0], 1)


def test_shrinking_or_forked_trees_fail_consistency() -> None:
    tree = MerkleTree([leaf_hash(bytes([i])) for i in range(9)])
    with pytest.raises(ProofError, match="shrank"):
        verify_consistency(9, 8, tree.root(9), tree.root(8), [])
    with pytest.raises(ProofError, match="different root"):
        verify_consistency(8, 8, tree.root(8), tree.root(9), [])
