"""CAR files: the header bytes, streaming write and verified read, v2, and the block source
that serves a DAG walk from a CAR stream."""

from __future__ import annotations

import io
import struct

import pytest

from provenance.errors import IntegrityError
from provenance.storage import cid as cids
from provenance.storage import unixfs
from provenance.storage.car import CarBlockSource, CarReader, CarWriter, encode_header

EMPTY = cids.parse("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")


def test_header_is_canonical_dag_cbor() -> None:
    # {"roots": [CID], "version": 1}: map(2), "roots", array(1), tag 42, bytes(37) 00+CID, ...
    expected = "3a" + "a265726f6f747381d82a5825" + "00" + EMPTY.hex() + "6776657273696f6e01"
    assert encode_header([EMPTY]).hex() == expected


def _car(blocks: dict[bytes, bytes], roots: list[bytes]) -> bytes:
    out = io.BytesIO()
    writer = CarWriter(out, roots)
    for cid, block in blocks.items():
        writer.add(cid, block)
    assert writer.written == len(out.getvalue())
    return out.getvalue()


CONTENT = bytes(100) * 8 + b"tail"  # nine chunks, eight of them alike


def _dag() -> tuple[bytes, dict[bytes, bytes]]:
    blocks: dict[bytes, bytes] = {}
    layout = unixfs.Layout(chunk_size=100, max_links=3)
    built = unixfs.build_bytes(CONTENT, blocks.__setitem__, layout)
    return built.cid, blocks


def test_round_trip() -> None:
    root, blocks = _dag()
    reader = CarReader(io.BytesIO(_car(blocks, [root])), "test.car")
    assert reader.roots == (root,)
    assert dict(reader) == blocks


def test_a_tampered_block_is_rejected() -> None:
    root, blocks = _dag()
    data = bytearray(_car(blocks, [root]))
    data[-1] ^= 0xFF  # the last byte of the last block
    last = list(blocks)[-1]
    with pytest.raises(IntegrityError) as info:
        list(CarReader(io.BytesIO(bytes(data)), "test.car"))
    assert str(info.value) == f"block {cids.to_str(last)} from test.car does not match its CID"


def test_a_truncated_car_is_rejected() -> None:
    root, blocks = _dag()
    data = _car(blocks, [root])[:-10]
    with pytest.raises(IntegrityError) as info:
        list(CarReader(io.BytesIO(data), "test.car"))
    assert str(info.value) == "CAR from test.car is truncated"


def test_not_a_car() -> None:
    with pytest.raises(IntegrityError) as info:
        CarReader(io.BytesIO(b"\x05hello"), "x.car")
    assert str(info.value).startswith("CAR from x.car has a malformed header: ")


def test_car_v2_reads_its_inner_car_v1() -> None:
    root, blocks = _dag()
    inner = _car(blocks, [root])
    pragma = bytes.fromhex("0aa16776657273696f6e02")
    padding = b"\0" * 9
    offset = len(pragma) + 40 + len(padding)
    header = struct.pack("<16sQQQ", bytes(16), offset, len(inner), 0)
    v2 = pragma + header + padding + inner + b"index bytes that are ignored"
    reader = CarReader(io.BytesIO(v2), "v2.car")
    assert reader.roots == (root,)
    assert dict(reader) == blocks


def test_block_source_follows_the_stream_and_fetches_what_it_lacks() -> None:
    root, blocks = _dag()
    order = [cid for cid, _ in unixfs.walk_blocks(blocks.__getitem__, root)]
    # root, two distinct nodes (the first two are alike), two distinct leaves: each once
    assert len(order) == len(blocks) == 5
    fetched: list[bytes] = []

    def fallback(cid: bytes) -> bytes:
        fetched.append(cid)
        return blocks[cid]

    car = _car({cid: blocks[cid] for cid in order}, [root])
    source = CarBlockSource(CarReader(io.BytesIO(car), "s"), fallback, "s", cache_bytes=0)
    data = b"".join(unixfs.read_file(source, root))
    assert data == CONTENT
    assert fetched  # the repeated leaves came through the fallback
    assert set(fetched) <= set(order[1:])


def test_block_source_verifies_the_fallback() -> None:
    root, blocks = _dag()
    car = _car({root: blocks[root]}, [root])
    source = CarBlockSource(CarReader(io.BytesIO(car), "s"), lambda cid: b"forged", "s")
    leaf = unixfs.links(root, blocks[root])[0]
    assert source(root) == blocks[root]
    with pytest.raises(IntegrityError) as info:
        source(leaf)
    assert str(info.value) == f"block {cids.to_str(leaf)} from s does not match its CID"
