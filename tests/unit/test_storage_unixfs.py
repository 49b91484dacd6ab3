"""The UnixFS builder and reader, without a daemon: vectors recorded from kubo 0.43
(``ipfs add --cid-version=1``), the balanced layout's shape, and what is refused."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provenance.errors import IntegrityError, StorageError
from provenance.storage import cid as cids
from provenance.storage import dagpb, unixfs

# recorded with kubo 0.43.0: `ipfs add --cid-version=1 -Q`
EMPTY_FILE = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
ZEROS_600000 = "bafybeib7pcuusxw7atqqc4apxvkezssdjbqkkhymjpo5x7bsj5sytn2ph4"
EMPTY_DIR = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
# `ipfs dag get` of ZEROS_600000's root: Data = CAIYwM8kIICAECCAgBAgwM8E
ZEROS_ROOT_DATA = bytes.fromhex("080218c0cf242080801020808010" + "20c0cf04")


class Blocks(dict[bytes, bytes]):
    def sink(self, cid: bytes, block: bytes) -> None:
        self[cid] = block

    def fetch(self, cid: bytes) -> bytes:
        block = self[cid]
        cids.verify_block(cid, block, "memory")
        return block


def test_empty_file_is_one_empty_raw_block() -> None:
    blocks = Blocks()
    built = unixfs.build_bytes(b"", blocks.sink)
    assert cids.to_str(built.cid) == EMPTY_FILE
    assert list(blocks.values()) == [b""]


def test_kubo_vector_for_600000_zero_bytes() -> None:
    blocks = Blocks()
    built = unixfs.build_bytes(bytes(600_000), blocks.sink)
    assert cids.to_str(built.cid) == ZEROS_600000
    root = dagpb.decode_node(blocks[built.cid])
    assert root.data == ZEROS_ROOT_DATA
    assert [link.tsize for link in root.links] == [262_144, 262_144, 75_712]
    assert {link.name for link in root.links} == {""}
    assert dagpb.encode_node(root.links, root.data) == blocks[built.cid]
    assert len(blocks) == 3  # the two full chunks are one block
    assert built.size == 600_000
    assert built.tsize == len(blocks[built.cid]) + 2 * 262_144 + 75_712


def test_a_file_of_one_chunk_is_its_raw_block() -> None:
    data = os.urandom(unixfs.CHUNK_SIZE)
    built = unixfs.build_bytes(data)
    assert built.cid == cids.block_cid(data)


def test_empty_directory_vector(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    assert unixfs.cid_of_path(tmp_path / "d") == EMPTY_DIR


def _depth(blocks: Blocks, cid: bytes) -> int:
    if cids.codec(cid) == cids.RAW:
        return 0
    return 1 + max(_depth(blocks, link.cid) for link in dagpb.decode_node(blocks[cid]).links)


@pytest.mark.parametrize(
    ("chunks", "depth", "root_links"),
    [(1, 0, 0), (2, 1, 2), (3, 1, 3), (4, 2, 2), (9, 2, 3), (10, 3, 2), (27, 3, 3), (28, 4, 2)],
)
def test_balanced_layout_is_as_shallow_as_possible_and_filled_from_the_left(
    chunks: int, depth: int, root_links: int
) -> None:
    blocks = Blocks()
    layout = unixfs.Layout(chunk_size=4, max_links=3)
    built = unixfs.build_bytes(bytes(range(4 * chunks)), blocks.sink, layout)
    assert _depth(blocks, built.cid) == depth
    if depth:
        links = dagpb.decode_node(blocks[built.cid]).links
        assert len(links) == root_links
        # every subtree but the last is full
        for link in links[:-1]:
            assert _depth(blocks, link.cid) == depth - 1
            child = dagpb.decode_node(blocks[link.cid]) if depth > 1 else None
            size = dagpb.decode_unixfs(child.data).filesize if child else len(blocks[link.cid])
            assert size == 4 * 3 ** (depth - 1)
    assert b"".join(unixfs.read_file(blocks.fetch, built.cid)) == bytes(range(4 * chunks))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), max_size=30))
def test_pieces_of_any_size_give_the_same_dag(cuts: list[int]) -> None:
    data = random.Random(len(cuts)).randbytes(sum(cuts) + 7)
    layout = unixfs.Layout(chunk_size=16, max_links=3)
    whole = unixfs.build_bytes(data, layout=layout)
    builder = unixfs.FileBuilder(layout=layout)
    pos = 0
    for n in [*cuts, 7]:
        builder.write(data[pos : pos + n])
        pos += n
    assert builder.finish() == whole


def test_file_reads_back_block_by_block() -> None:
    blocks = Blocks()
    data = random.Random(1).randbytes(5 * 100 + 3)
    built = unixfs.build_bytes(data, blocks.sink, unixfs.Layout(chunk_size=100, max_links=2))
    chunks = list(unixfs.read_file(blocks.fetch, built.cid))
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) == 100


def test_a_tampered_block_stops_the_read() -> None:
    blocks = Blocks()
    built = unixfs.build_bytes(bytes(3 * 100), blocks.sink, unixfs.Layout(100, 174))
    leaf = dagpb.decode_node(blocks[built.cid]).links[0].cid
    blocks[leaf] = b"x" * 100
    with pytest.raises(IntegrityError) as info:
        list(unixfs.read_file(blocks.fetch, built.cid))
    assert str(info.value) == f"block {cids.to_str(leaf)} from memory does not match its CID"


def test_tree_round_trip_and_atomic_output(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "a.txt").write_bytes(b"a")
    (src / ".hidden").write_bytes(b"h")
    (src / "sub" / "deeper" / "big").write_bytes(random.Random(2).randbytes(700_000))
    (src / "sub" / "zero").write_bytes(b"")
    blocks = Blocks()
    built = unixfs.build_path(src, blocks.sink)
    dest = tmp_path / "out" / "copy"
    unixfs.write_tree(blocks.fetch, built.cid, dest)
    for rel in ("a.txt", ".hidden", "sub/deeper/big", "sub/zero"):
        assert (dest / rel).read_bytes() == (src / rel).read_bytes()
    assert (dest / "empty").is_dir()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy"]

    with pytest.raises(StorageError) as info:
        unixfs.write_tree(blocks.fetch, built.cid, dest)
    assert str(info.value) == f"{dest} already exists"

    big_root = dagpb.decode_node(blocks[_child(blocks, built.cid, "sub", "deeper", "big")])
    blocks[big_root.links[1].cid] = b"tampered"
    other = tmp_path / "out" / "second"
    with pytest.raises(IntegrityError):
        unixfs.write_tree(blocks.fetch, built.cid, other)
    assert sorted(p.name for p in other.parent.iterdir()) == ["copy"]  # nothing half-written


def _child(blocks: Blocks, cid: bytes, *names: str) -> bytes:
    for name in names:
        cid = next(link.cid for link in dagpb.decode_node(blocks[cid]).links if link.name == name)
    return cid


def test_directory_entries_are_sorted_by_name_bytes(tmp_path: Path) -> None:
    for name in ("b", "B", "ä", "a b", "a+b", "_"):
        (tmp_path / name).write_bytes(name.encode())
    blocks = Blocks()
    built = unixfs.build_path(tmp_path, blocks.sink)
    names = [link.name for link in dagpb.decode_node(blocks[built.cid]).links]
    assert names == sorted(names, key=lambda n: n.encode("utf-8"))
    assert names == ["B", "_", "a b", "a+b", "b", "ä"]


def test_symlinks_inside_a_tree_are_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    with pytest.raises(StorageError) as info:
        unixfs.cid_of_path(tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'link'} is a symbolic link; symbolic links cannot be stored"
    )


def test_a_directory_kubo_would_shard_is_refused(tmp_path: Path) -> None:
    # 28-byte names plus 36-byte raw CIDs: 4096 entries are exactly kubo's 256 KiB threshold
    # (still a basic directory), 4097 go over it (kubo makes a HAMT)
    big = tmp_path / "big"
    big.mkdir()
    for i in range(4096):
        (big / f"{i:028d}").write_bytes(b"x")
    unixfs.cid_of_path(big)
    (big / f"{4096:028d}").write_bytes(b"x")
    with pytest.raises(StorageError) as info:
        unixfs.cid_of_path(big)
    assert str(info.value) == (
        f"{big} has too many entries for a basic UnixFS directory (4097); kubo would shard it "
        "as a HAMT, which is not supported"
    )


def test_reading_a_directory_as_a_file_is_refused(tmp_path: Path) -> None:
    blocks = Blocks()
    built = unixfs.build_path(tmp_path, blocks.sink)
    with pytest.raises(StorageError) as info:
        list(unixfs.read_file(blocks.fetch, built.cid))
    assert str(info.value) == f"{cids.to_str(built.cid)} is a UnixFS directory, not a file"


def test_unsafe_entry_names_are_refused_on_write(tmp_path: Path) -> None:
    blocks = Blocks()
    leaf = unixfs.build_bytes(b"evil", blocks.sink)
    block, built = unixfs.directory_node([("..", leaf)], "crafted")
    blocks.sink(built.cid, block)
    with pytest.raises(IntegrityError) as info:
        unixfs.write_tree(blocks.fetch, built.cid, tmp_path / "out")
    assert str(info.value) == (
        f"directory {cids.to_str(built.cid)} has an unsafe or repeated entry name '..'"
    )
    assert not (tmp_path / "out").exists()


def test_malformed_dag_pb_is_an_integrity_error() -> None:
    with pytest.raises(IntegrityError) as info:
        dagpb.decode_node(b"\x12\xff\x01", "dag-pb block X")
    assert str(info.value) == "malformed dag-pb block X: field 2 overruns the block"
