from __future__ import annotations

import pytest
from eth_utils.crypto import keccak

from provenance.attest import (
    Batch,
    OutputRecord,
    OutputTree,
    hash_pair,
    root_from_proof,
    verify_output_proof,
)
from provenance.errors import IntegrityError


def record(seq: int) -> OutputRecord:
    return OutputRecord(
        b"\x01" * 32,
        b"\x02" * 32,
        keccak(b"in%d" % seq),
        keccak(b"out%d" % seq),
        seq,
        1_700_000_000,
    )


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 100])
def test_every_leaf_proves_into_the_root(size: int) -> None:
    records = [record(i) for i in range(size)]
    tree = OutputTree([r.leaf for r in records])
    for i, r in enumerate(records):
        assert root_from_proof(r.leaf, tree.proof(i)) == tree.root
        verify_output_proof(tree.root, tree.proof(i), r)


def test_a_single_output_is_its_own_root() -> None:
    r = record(0)
    assert OutputTree([r.leaf]).root == r.leaf
    assert Batch.of_one(r).root == r.leaf and Batch.of_one(r).count == 1


def test_pairs_hash_commutatively_and_leaves_are_double_hashed() -> None:
    a, b = keccak(b"a"), keccak(b"b")
    assert hash_pair(a, b) == hash_pair(b, a)
    assert record(0).leaf != keccak(record(0).leaf)  # the leaf is keccak(keccak(abi.encode(...)))


def test_changed_records_and_wrong_proofs_are_refused() -> None:
    records = [record(i) for i in range(6)]
    tree = OutputTree([r.leaf for r in records])
    changed = OutputRecord(*records[3].as_abi()[:3], keccak(b"tampered"), 3, records[3].timestamp)
    with pytest.raises(IntegrityError) as info:
        verify_output_proof(tree.root, tree.proof(3), changed)
    assert str(info.value) == (
        f"output record 3 of model 0x{'01' * 32} is not in the batch with root 0x{tree.root.hex()}"
    )
    with pytest.raises(IntegrityError):
        verify_output_proof(tree.root, tree.proof(2), records[3])
    with pytest.raises(IndexError, match=r"^leaf 6 is not in a tree of 6$"):
        tree.proof(6)
    with pytest.raises(ValueError, match=r"^an output tree needs at least one leaf$"):
        OutputTree([])


def test_the_fast_encoding_is_abi_encode() -> None:
    from eth_abi.abi import encode

    r = record(7)
    assert r.encoded() == encode(
        ["bytes32", "bytes32", "bytes32", "bytes32", "uint64", "uint64"], list(r.as_abi())
    )
    assert r.leaf == keccak(keccak(r.encoded()))
