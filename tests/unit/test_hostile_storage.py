"""Hostile DAGs and CARs: shared-subtree bombs (a few KB claiming gigabytes or millions of
files), sizes that lie, unsafe entry names, deep folders. Extraction is bounded by
:class:`~provenance.untrusted.Limits`, sizes are checked against what each parent declares, and
a refused extraction leaves nothing behind."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from provenance.errors import IntegrityError, StorageError
from provenance.storage import cid as cids
from provenance.storage import unixfs
from provenance.storage.car import CarWriter
from provenance.storage.dagpb import DIRECTORY_DATA, PBLink, encode_file_data, encode_node
from provenance.storage.local import LocalStore
from provenance.untrusted import Limits


class Blocks(dict[bytes, bytes]):
    def raw(self, data: bytes) -> bytes:
        cid = cids.raw_cid(hashlib.sha256(data).digest())
        self[cid] = data
        return cid

    def node(self, links: list[PBLink], data: bytes) -> bytes:
        block = encode_node(links, data)
        cid = cids.dag_pb_cid(hashlib.sha256(block).digest())
        self[cid] = block
        return cid

    def file(self, children: list[tuple[bytes, int]], filesize: int | None = None) -> bytes:
        sizes = [size for _, size in children]
        total = sum(sizes) if filesize is None else filesize
        return self.node([PBLink(c, "", s) for c, s in children], encode_file_data(total, sizes))

    def directory(self, entries: list[tuple[str, bytes]]) -> bytes:
        return self.node([PBLink(c, name, 1) for name, c in entries], DIRECTORY_DATA)

    def car(self, root: bytes) -> bytes:
        out = io.BytesIO()
        writer = CarWriter(out, [root])
        for cid, block in self.items():
            writer.add(cid, block)
        return out.getvalue()


def nothing_left(folder: Path) -> None:
    assert [p.name for p in folder.iterdir()] == []


def test_a_million_files_from_a_few_blocks_are_refused(tmp_path: Path) -> None:
    blocks = Blocks()
    leaf = blocks.raw(b"x")
    inner = blocks.directory([(f"f{i:04}", leaf) for i in range(1000)])
    root = blocks.directory([(f"d{i:04}", inner) for i in range(1000)])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(StorageError) as info:
        unixfs.write_tree(blocks.__getitem__, root, out / "x", limits=Limits(max_entries=500))
    assert str(info.value) == (
        f"{cids.to_str(root)} holds more than 500 files and folders (limits.max_entries)"
    )
    nothing_left(out)


def test_gigabytes_claimed_by_a_shared_subtree_are_refused_before_writing(
    tmp_path: Path,
) -> None:
    blocks = Blocks()
    chunk = blocks.raw(bytes(unixfs.CHUNK_SIZE))
    big = blocks.file([(chunk, unixfs.CHUNK_SIZE)] * 174)  # 45 MB from one 256 KiB block
    root = blocks.directory([(f"f{i}", big) for i in range(100)])  # 4.5 GB
    assert len(blocks.car(root)) < 300_000
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(StorageError) as info:
        unixfs.write_tree(
            blocks.__getitem__, root, out / "x", limits=Limits(max_download_bytes=50 << 20)
        )
    assert str(info.value) == (
        f"{cids.to_str(root)} holds more than {50 << 20} bytes (limits.max_download_bytes)"
    )
    nothing_left(out)


def test_deep_folders_are_refused(tmp_path: Path) -> None:
    blocks = Blocks()
    cid = blocks.raw(b"x")
    for _ in range(40):
        cid = blocks.directory([("d", cid)])
    with pytest.raises(StorageError) as info:
        unixfs.write_tree(blocks.__getitem__, cid, tmp_path / "x", limits=Limits(max_depth=30))
    assert str(info.value).endswith("nests folders deeper than 30 levels (limits.max_depth)")
    nothing_left(tmp_path)


def test_a_huge_declared_leaf_size_is_refused_not_a_memory_error() -> None:
    blocks = Blocks()
    leaf = blocks.raw(b"abc")
    root = blocks.file([(leaf, 1 << 62)])
    with pytest.raises(IntegrityError) as info:
        b"".join(unixfs.read_file(blocks.__getitem__, root))
    assert str(info.value) == (
        f"malformed UnixFS file {cids.to_str(root)}: a leaf of block {cids.to_str(root)} "
        f"declares {1 << 62} bytes (at most {unixfs.MAX_LEAF})"
    )


def test_a_leaf_shorter_than_declared_is_refused() -> None:
    blocks = Blocks()
    leaf = blocks.raw(b"abc")
    root = blocks.file([(leaf, 5)])
    with pytest.raises(IntegrityError) as info:
        b"".join(unixfs.read_file(blocks.__getitem__, root))
    assert str(info.value) == (
        f"malformed UnixFS file {cids.to_str(root)}: leaf {cids.to_str(leaf)} has 3 bytes, its "
        "parent says 5"
    )


def test_a_filesize_that_disagrees_with_its_parts_is_refused() -> None:
    blocks = Blocks()
    leaf = blocks.raw(b"abc")
    root = blocks.file([(leaf, 3)], filesize=5_000_000_000)
    with pytest.raises(IntegrityError) as info:
        b"".join(unixfs.read_file(blocks.__getitem__, root))
    assert str(info.value) == (
        f"malformed UnixFS file {cids.to_str(root)}: block {cids.to_str(root)} declares "
        "5000000000 bytes but its parts hold 3"
    )


def test_an_inner_node_that_lies_to_its_parent_is_refused() -> None:
    blocks = Blocks()
    leaf = blocks.raw(b"abc")
    inner = blocks.file([(leaf, 3)])
    root = blocks.file([(inner, 4)])
    with pytest.raises(IntegrityError) as info:
        b"".join(unixfs.read_file(blocks.__getitem__, root))
    assert str(info.value) == (
        f"malformed UnixFS file {cids.to_str(root)}: block {cids.to_str(inner)} holds 3 bytes, "
        "its parent says 4"
    )


def test_the_local_store_refuses_to_pin_a_dag_that_lies_about_sizes(tmp_path: Path) -> None:
    blocks = Blocks()
    leaf = blocks.raw(b"abc")
    root = blocks.file([(leaf, 5)])
    store = LocalStore(tmp_path / "blocks")
    with pytest.raises(IntegrityError) as info:
        store.import_car(io.BytesIO(blocks.car(root)))
    assert str(info.value) == (
        f"malformed UnixFS file: leaf {cids.to_str(leaf)} has 3 bytes, its parent says 5"
    )
    assert store.pins() == frozenset()


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\b", "a\x00b", "a\x1bb", ""])
def test_unsafe_entry_names_are_refused(tmp_path: Path, name: str) -> None:
    blocks = Blocks()
    root = blocks.directory([(name, blocks.raw(b"x"))])
    with pytest.raises(IntegrityError) as info:
        unixfs.write_tree(blocks.__getitem__, root, tmp_path / "x")
    assert str(info.value) == (
        f"directory {cids.to_str(root)} has an unsafe or repeated entry name {name!r}"
    )
    nothing_left(tmp_path)


def test_limits_reach_the_local_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "blocks", limits=Limits(max_download_bytes=10))
    cid = store.put_bytes(b"x" * 11)
    with pytest.raises(StorageError) as info:
        store.get_path(cid, tmp_path / "out")
    assert str(info.value) == f"{cid} holds more than 10 bytes (limits.max_download_bytes)"
    assert not (tmp_path / "out").exists()
    store.get_path(store.put_bytes(b"x" * 10), tmp_path / "ok")
    assert (tmp_path / "ok").read_bytes() == b"x" * 10
