"""Hostile DAGs through the real kubo of the session stack: kubo stores whatever blocks hash to
their CIDs, so bombs and size lies are ours to refuse when reading. A few KB claiming millions
of files or gigabytes stop at the configured limits with one line and leave nothing behind; a
DAG that lies about its sizes fails its check instead of a MemoryError."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provenance.errors import IntegrityError, StorageError
from provenance.stack import Stack
from provenance.storage import Kubo
from provenance.storage import cid as cids
from provenance.storage.car import CarWriter
from provenance.storage.dagpb import DIRECTORY_DATA, PBLink, encode_file_data, encode_node
from provenance.untrusted import Limits

pytestmark = pytest.mark.integration

PROVENANCE = Path(sys.executable).parent / "provenance"


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

    def file(self, children: list[tuple[bytes, int]]) -> bytes:
        sizes = [s for _, s in children]
        return self.node(
            [PBLink(c, "", s) for c, s in children], encode_file_data(sum(sizes), sizes)
        )

    def directory(self, entries: list[tuple[str, bytes]]) -> bytes:
        return self.node([PBLink(c, name, 1) for name, c in entries], DIRECTORY_DATA)

    def car(self, root: bytes) -> bytes:
        out = io.BytesIO()
        writer = CarWriter(out, [root])
        for cid, block in self.items():
            writer.add(cid, block)
        return out.getvalue()


def imported(kubo: Kubo, blocks: Blocks, root: bytes) -> str:
    assert kubo.import_car(io.BytesIO(blocks.car(root))) == (cids.to_str(root),)
    return cids.to_str(root)


def million_files() -> tuple[Blocks, bytes]:
    blocks = Blocks()
    leaf = blocks.raw(b"x")
    inner = blocks.directory([(f"f{i:04}", leaf) for i in range(1000)])
    return blocks, blocks.directory([(f"d{i:04}", inner) for i in range(1000)])


@pytest.fixture(scope="module")
def kubo(stack: Stack) -> Kubo:
    return Kubo(stack.config.ipfs.api, limits=Limits(max_entries=500, max_download_bytes=1 << 20))


def test_a_million_files_stop_at_the_entry_limit(kubo: Kubo, tmp_path: Path) -> None:
    blocks, root = million_files()
    assert len(blocks.car(root)) < 100_000
    cid = imported(kubo, blocks, root)
    with pytest.raises(StorageError) as info:
        kubo.get_path(cid, tmp_path / "out")
    assert str(info.value) == f"{cid} holds more than 500 files and folders (limits.max_entries)"
    assert list(tmp_path.iterdir()) == []


def test_gigabytes_from_one_block_stop_at_the_byte_limit(kubo: Kubo, tmp_path: Path) -> None:
    blocks = Blocks()
    chunk = blocks.raw(bytes(262_144))
    big = blocks.file([(chunk, 262_144)] * 174)
    root = blocks.directory([(f"f{i}", big) for i in range(100)])
    cid = imported(kubo, blocks, root)
    with pytest.raises(StorageError) as info:
        kubo.get_path(cid, tmp_path / "out")
    assert str(info.value) == f"{cid} holds more than {1 << 20} bytes (limits.max_download_bytes)"
    assert list(tmp_path.iterdir()) == []


def test_sizes_that_lie_are_refused(kubo: Kubo, tmp_path: Path) -> None:
    blocks = Blocks()
    leaf = blocks.raw(b"abc")
    huge = blocks.file([(leaf, 1 << 62)])
    short = blocks.file([(leaf, 5)])
    for root in (huge, short):
        cid = imported(kubo, blocks, root)
        with pytest.raises(IntegrityError):
            b"".join(kubo.cat(cid))
        with pytest.raises(IntegrityError):
            kubo.get_path(cid, tmp_path / "out")
        assert list(tmp_path.iterdir()) == []


def test_the_cli_reads_limits_from_the_config(
    stack: Stack, stack_config_path: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    blocks, root = million_files()
    cid = imported(Kubo(stack.config.ipfs.api), blocks, root)
    limited = stack_config_path.parent / "limited.toml"
    limited.write_text(stack_config_path.read_text() + "\n[limits]\nmax_entries = 300\n")
    env = dict(cli_env, PROVENANCE_CONFIG=str(limited))
    done = subprocess.run(
        [str(PROVENANCE), "ipfs", "get", cid, "-o", str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"error: {cid} holds more than 300 files and folders (limits.max_entries)\n"
    )
    assert os.listdir(tmp_path) == []
