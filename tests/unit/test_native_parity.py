"""The native leaf and tree loop (native/, the provenance_native extension) give the bytes of
the pure-Python definitions in provenance.attest: leaves, every level of every tree, roots and
proofs, on random records and on the edge cases (one leaf, odd counts, empty input, values the
extension does not take)."""

from __future__ import annotations

import hashlib
import random

import pytest
from eth_abi import encode
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.attest import OutputRecord, OutputTree, keccak256, root_from_proof
from provenance.attest import native as attest_native
from provenance.attest.native import output_leaves, record_leaves, tree_levels
from provenance.errors import ConfigError

needs_native = pytest.mark.skipif(
    not attest_native.native_available,
    reason="provenance_native is not built (scripts/setup.sh builds it when cargo is there)",
)

U64 = 2**64 - 1


def random_records(rng: random.Random, n: int, *, models: int = 3) -> list[OutputRecord]:
    ids = [(rng.randbytes(32), rng.randbytes(32)) for _ in range(models)]
    out = []
    for _ in range(n):
        model_id, digest = rng.choice(ids)
        seq = rng.choice([0, 1, U64, rng.randrange(U64)])
        ts = rng.choice([0, U64, rng.randrange(2**40)])
        out.append(OutputRecord(model_id, digest, rng.randbytes(32), rng.randbytes(32), seq, ts))
    return out


def abi_leaf(r: OutputRecord) -> bytes:
    """The leaf from eth-abi, independently of OutputRecord.encoded."""
    types = ["bytes32", "bytes32", "bytes32", "bytes32", "uint256", "uint256"]
    return keccak256(keccak256(encode(types, list(r.as_abi()))))


@needs_native
@pytest.mark.parametrize("n", [1, 2, 3, 7, 100, 5001])
@pytest.mark.parametrize("threads", [0, 1, 2])
def test_record_leaves_native_equal_python(n: int, threads: int) -> None:
    records = random_records(random.Random(n * 10 + threads), n)
    native = record_leaves(records, native=True, threads=threads)
    assert native == record_leaves(records, native=False) == [r.leaf for r in records]
    assert all(type(leaf) is bytes for leaf in native)
    assert native[0] == abi_leaf(records[0])


@needs_native
def test_record_leaves_edge_values_decided_by_python() -> None:
    """Values the extension does not take (beyond 64 bits, a bytearray) get Python's answer."""
    rng = random.Random(7)
    base = random_records(rng, 3)
    big = OutputRecord(
        base[0].model_id, base[0].model_digest, b"\x01" * 32, b"\x02" * 32, 2**64, 2**200
    )
    odd = OutputRecord(base[1].model_id, base[1].model_digest, bytearray(32), b"\x03" * 5, 1, 2)  # type: ignore[arg-type]
    records = [*base, big, odd]
    assert record_leaves(records, native=True) == [r.leaf for r in records]
    assert record_leaves(records, native=True)[3] == abi_leaf(big)
    negative = OutputRecord(
        base[0].model_id, base[0].model_digest, b"\x01" * 32, b"\x02" * 32, -1, 0
    )
    with pytest.raises(OverflowError, match="can't convert negative int to unsigned"):
        record_leaves([negative], native=True)
    with pytest.raises(OverflowError, match="can't convert negative int to unsigned"):
        record_leaves([negative], native=False)
    assert record_leaves([], native=True) == record_leaves([], native=False) == []


@needs_native
@pytest.mark.parametrize("n", [0, 1, 2, 3, 4097, 4099])
@pytest.mark.parametrize("threads", [0, 1, 2])
def test_output_leaves_native_equal_python(n: int, threads: int) -> None:
    rng = random.Random(n + threads)
    model_id, digest = rng.randbytes(32), rng.randbytes(32)
    inputs = [rng.randbytes(rng.choice([0, 1, 55, 64, 1000])) for _ in range(n)]
    outputs = [rng.randbytes(rng.choice([0, 3, 200])) for _ in range(n)]
    first = rng.choice([0, U64 - n + 1 if n else U64])
    args = (model_id, digest, inputs, outputs, first, 1_700_000_000)
    native = output_leaves(*args, native=True, threads=threads)
    python = output_leaves(*args, native=False)
    assert native == python
    xs, ys, ls = native
    assert xs == [hashlib.sha256(x).digest() for x in inputs]
    assert ys == [hashlib.sha256(y).digest() for y in outputs]
    expected = [
        OutputRecord(model_id, digest, x, y, first + i, 1_700_000_000).leaf
        for i, (x, y) in enumerate(zip(xs, ys, strict=True))
    ]
    assert ls == expected


@needs_native
def test_output_leaves_past_64_bits_and_mismatched_lengths() -> None:
    rng = random.Random(3)
    args = (rng.randbytes(32), rng.randbytes(32), [b"a", b"b"], [b"c", b"d"])
    past = output_leaves(*args, U64, 5, native=True)  # the second sequence is 2**64
    assert past == output_leaves(*args, U64, 5, native=False)
    for native in (True, False):
        with pytest.raises(ValueError, match=r"^the record fields are not all of the same length$"):
            output_leaves(args[0], args[1], [b"a"], [], 0, 0, native=native)


def _leaves(rng: random.Random, n: int) -> list[bytes]:
    return [rng.randbytes(32) for _ in range(n)]


@needs_native
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 31, 1000, 4097])
def test_tree_native_equal_python(n: int) -> None:
    rng = random.Random(n)
    leaves = _leaves(rng, n)
    if n > 3:  # equal leaves and sorted runs: the sorted-pair order matters
        leaves[1] = leaves[0]
        leaves[2:4] = sorted(leaves[2:4], reverse=True)
    native = tree_levels(leaves, native=True)
    python = tree_levels(leaves, native=False)
    assert native == python
    assert all(type(node) is bytes for level in native for node in level)
    tree = OutputTree(leaves)
    assert tree.levels == python and tree.root == python[-1][0]
    for index in {0, n // 2, n - 1}:
        proof = tree.proof(index)
        assert root_from_proof(leaves[index], proof) == tree.root


@needs_native
@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70))
def test_tree_parity_property(leaves: list[bytes]) -> None:
    assert tree_levels(leaves, native=True) == tree_levels(leaves, native=False)


@needs_native
def test_tree_edge_cases() -> None:
    leaf = b"\x05" * 32
    assert tree_levels([leaf], native=True) == tree_levels([leaf], native=False) == [[leaf]]
    for native in (True, False):
        with pytest.raises(ValueError, match=r"^an output tree needs at least one leaf$"):
            tree_levels([], native=native)
    with pytest.raises(ValueError, match=r"^an output tree needs at least one leaf$"):
        OutputTree([])
    # leaves that are not 32 bytes are Python's to hash (the extension takes only 32)
    short = [b"ab", b"\x00" * 33, b"", b"z" * 32, b"q"]
    assert tree_levels(short, native=True) == tree_levels(short, native=False)


def test_native_required_but_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attest_native, "_native", None)
    message = "^the native attestation extension is not built: run scripts/setup.sh with cargo$"
    with pytest.raises(ConfigError, match=message):
        tree_levels([b"\x00" * 32], native=True)
    with pytest.raises(ConfigError, match=message):
        record_leaves([], native=True)
    leaves = _leaves(random.Random(1), 5)
    assert tree_levels(leaves) == tree_levels(leaves, native=False)  # the fallback runs
    assert attest_native.implementation().startswith("pure Python")


def test_implementation_names_what_runs() -> None:
    expected = "native" if attest_native.native_available else "pure Python"
    assert attest_native.implementation().split(" ")[0] == expected.split(" ")[0]
