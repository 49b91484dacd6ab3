"""Storage against the real kubo of the session stack: CID parity between LocalStore, our kubo
client and `ipfs add --cid-version=1`; CAR round trips both ways; tampered blocks; the trustless
gateway; a 1 GiB file in bounded memory; the CLI on the kubo backend."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from provenance.config import url_port
from provenance.errors import IntegrityError, StorageError
from provenance.stack import Stack
from provenance.storage import Gateway, Kubo, Layout, LocalStore, cid_for_digest, cid_of_path, dagpb
from provenance.storage import cid as cids
from tests.integration.conftest import tools

pytestmark = pytest.mark.integration

CHUNK = 262_144
MiB = 1 << 20
PROVENANCE = Path(sys.executable).parent / "provenance"


def ipfs(stack: Stack, *args: str) -> bytes:
    """The `ipfs` command line, talking to the stack's daemon."""
    api = f"/ip4/127.0.0.1/tcp/{url_port(stack.config.ipfs.api)}"
    result = subprocess.run(
        [str(tools().find("ipfs")), "--api", api, *args], capture_output=True, timeout=300
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def ipfs_add(stack: Stack, path: Path, *flags: str) -> str:
    return ipfs(stack, "add", "--cid-version=1", "-Q", *flags, str(path)).decode().strip()


@pytest.fixture(scope="module")
def kubo(stack: Stack) -> Iterator[Kubo]:
    with Kubo(stack.config.ipfs.api) as client:
        yield client


def write_random(path: Path, size: int, seed: int = 0) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def make_tree(root: Path) -> Path:
    """A dataset folder with the awkward cases: nesting, an empty folder, an empty file, a
    hidden file, names with spaces, '+', '%' and non-ASCII, and a file of several chunks."""
    tree = root / "dataset"
    (tree / "train" / "shard-0").mkdir(parents=True)
    (tree / "empty folder").mkdir()
    (tree / "ünïcödé").mkdir()
    (tree / "train" / "shard-0" / "rows.bin").write_bytes(random.Random(1).randbytes(3 * CHUNK + 5))
    (tree / "train" / "labels+weights %.csv").write_text("a,1\nb,2\n")
    (tree / "ünïcödé" / "ß.txt").write_text("strasse")
    (tree / "empty").write_bytes(b"")
    (tree / ".hidden").write_text("hidden files are part of the dataset")
    (tree / "README").write_text("a test dataset\n")
    return tree


def same_tree(a: Path, b: Path) -> bool:
    left = sorted(p.relative_to(a) for p in a.rglob("*"))
    right = sorted(p.relative_to(b) for p in b.rglob("*"))
    if left != right:
        return False
    return all(
        (a / rel).is_dir() == (b / rel).is_dir()
        and ((a / rel).is_dir() or (a / rel).read_bytes() == (b / rel).read_bytes())
        for rel in left
    )


# ---------------------------------------------------------------- CID parity
SIZES = {
    "0 B": 0,
    "1 B": 1,
    "one chunk - 1": CHUNK - 1,
    "one chunk": CHUNK,
    "one chunk + 1": CHUNK + 1,
    "174 chunks (one level)": 174 * CHUNK,
    "174 chunks + 1 (second level)": 174 * CHUNK + 1,
    "5 MiB + 123": 5 * MiB + 123,
}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_file_cids_match_ipfs_add(stack: Stack, kubo: Kubo, tmp_path: Path, size: int) -> None:
    path = tmp_path / "file"
    data = write_random(path, size, seed=size)
    expected = ipfs_add(stack, path)
    assert LocalStore(tmp_path / "store").put_path(path) == expected
    assert kubo.put_path(path) == expected
    assert cid_of_path(path) == expected
    if size <= CHUNK:  # one raw block: the certificate case
        assert expected == cid_for_digest(hashlib.sha256(data).digest())
        assert kubo.put_bytes(data) == expected


def test_deep_trees_match_with_small_chunks_and_few_links(
    stack: Stack, kubo: Kubo, tmp_path: Path
) -> None:
    # 98 chunks of 1 KiB under nodes of at most 4 links: four levels, as 7.9 GB would give
    # with the defaults
    path = tmp_path / "file"
    write_random(path, 100_000, seed=7)
    expected = ipfs_add(stack, path, "--chunker=size-1024", "--max-file-links=4")
    layout = Layout(chunk_size=1024, max_links=4)
    assert LocalStore(tmp_path / "store", layout=layout).put_path(path) == expected
    with Kubo(stack.config.ipfs.api, layout=layout) as small:
        assert small.put_path(path) == expected
    assert cid_of_path(path) != expected


def test_nested_directory_cids_match_ipfs_add(stack: Stack, kubo: Kubo, tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    expected = ipfs_add(stack, tree, "-r", "--hidden")
    assert LocalStore(tmp_path / "store").put_path(tree) == expected
    assert kubo.put_path(tree) == expected
    assert cid_of_path(tree) == expected


def test_directories_kubo_would_shard_are_refused_at_kubos_threshold(
    stack: Stack, kubo: Kubo, tmp_path: Path
) -> None:
    big = tmp_path / "big"
    big.mkdir()
    for i in range(4096):  # 28-byte names + 36-byte CIDs: exactly 256 KiB of links
        (big / f"{i:028d}").write_bytes(b"x")
    assert LocalStore(tmp_path / "store").put_path(big) == ipfs_add(stack, big, "-r")
    (big / f"{4096:028d}").write_bytes(b"x")
    sharded = ipfs_add(stack, big, "-r", "--pin=false")
    root = dagpb.decode_node(kubo.block(cids.parse(sharded)))
    assert dagpb.decode_unixfs(root.data).type == dagpb.UnixFSType.HAMT_SHARD
    with pytest.raises(StorageError) as info:
        LocalStore(tmp_path / "store").put_path(big)
    assert "kubo would shard it as a HAMT, which is not supported" in str(info.value)


# ---------------------------------------------------------------- CAR round trips
def test_our_car_goes_into_kubo(stack: Stack, kubo: Kubo, tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    local = LocalStore(tmp_path / "store")
    cid = local.put_path(tree)
    car = tmp_path / "ours.car"
    local.export_car(cid, car)
    report = ipfs(stack, "dag", "import", str(car)).decode()
    assert f"Pinned root\t{cid}\tsuccess" in report
    assert ipfs(stack, "dag", "export", cid) == car.read_bytes()  # byte for byte
    kubo.get_path(cid, tmp_path / "back")
    assert same_tree(tree, tmp_path / "back")
    # and through our client's dag/import
    assert kubo.import_car(car) == (cid,)


def test_kubos_car_comes_into_ours(stack: Stack, kubo: Kubo, tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    cid = ipfs_add(stack, tree, "-r", "--hidden")
    car = tmp_path / "kubo.car"
    car.write_bytes(ipfs(stack, "dag", "export", cid))
    local = LocalStore(tmp_path / "store")
    assert local.import_car(car) == (cid,)
    assert local.pins() == {cid}
    local.get_path(cid, tmp_path / "back")
    assert same_tree(tree, tmp_path / "back")
    again = tmp_path / "again.car"
    local.export_car(cid, again)
    assert again.read_bytes() == car.read_bytes()
    # our client's export is kubo's dag export, verified on the way
    through = tmp_path / "through.car"
    kubo.export_car(cid, through)
    assert through.read_bytes() == car.read_bytes()


def test_repeated_blocks_survive_every_path(stack: Stack, kubo: Kubo, tmp_path: Path) -> None:
    path = tmp_path / "zeros"
    path.write_bytes(bytes(20 * CHUNK + 3))  # twenty identical leaves
    cid = kubo.put_path(path)
    assert kubo.get_bytes(cid) == path.read_bytes()
    car = tmp_path / "z.car"
    kubo.export_car(cid, car)
    assert car.read_bytes() == ipfs(stack, "dag", "export", cid)
    local = LocalStore(tmp_path / "store")
    local.import_car(car)
    assert local.get_bytes(cid) == path.read_bytes()
    with Gateway(stack.config.ipfs.gateway) as gateway:
        assert gateway.get_bytes(cid) == path.read_bytes()


# ---------------------------------------------------------------- verification
def flatfs_block(stack: Stack, cid: bytes) -> Path:
    """Where kubo's flatfs keeps a block: base32 of the multihash, sharded next-to-last/2."""
    key = base64.b32encode(cid[2:]).decode().rstrip("=")
    return stack.ipfs_repo / "blocks" / key[-3:-1] / f"{key}.data"


def test_a_block_altered_in_kubos_repo_is_rejected(
    stack: Stack, kubo: Kubo, tmp_path: Path
) -> None:
    data = random.Random(11).randbytes(3 * CHUNK)
    cid = kubo.put_bytes(data)
    leaf = unixfs_links(kubo, cid)[1]
    block_file = flatfs_block(stack, leaf)
    original = block_file.read_bytes()
    assert original == data[CHUNK : 2 * CHUNK]
    block_file.write_bytes(b"\xff" + original[1:])
    try:
        # kubo itself serves the altered bytes without a word
        assert ipfs(stack, "cat", cid) != data
        expected = f"block {cids.to_str(leaf)} from {kubo.api_url} does not match its CID"
        with pytest.raises(IntegrityError) as info:
            kubo.get_bytes(cid)
        assert str(info.value) == expected
        with pytest.raises(IntegrityError) as info:
            kubo.get_path(cid, tmp_path / "out")
        assert str(info.value) == expected
        assert not (tmp_path / "out").exists()
        with pytest.raises(IntegrityError) as info:
            kubo.export_car(cid, tmp_path / "out.car")
        assert str(info.value) == expected
        assert not (tmp_path / "out.car").exists()
        with Gateway(stack.config.ipfs.gateway) as gateway, pytest.raises(IntegrityError) as info:
            gateway.get_bytes(cid)
        assert str(info.value) == (
            f"block {cids.to_str(leaf)} from {gateway.url} does not match its CID"
        )
    finally:
        block_file.write_bytes(original)
    assert kubo.get_bytes(cid) == data


def unixfs_links(kubo: Kubo, cid: str) -> list[bytes]:
    return [link.cid for link in dagpb.decode_node(kubo.block(cids.parse(cid))).links]


def test_the_gateway_path_is_verified_and_complete(
    stack: Stack, kubo: Kubo, tmp_path: Path
) -> None:
    tree = make_tree(tmp_path)
    cid = kubo.put_path(tree)
    with Gateway(stack.config.ipfs.gateway) as gateway:
        gateway.get_path(cid, tmp_path / "back")
        car = tmp_path / "g.car"
        gateway.export_car(cid, car)
    assert same_tree(tree, tmp_path / "back")
    assert car.read_bytes() == ipfs(stack, "dag", "export", cid)


def test_a_node_that_lacks_the_content_says_so(kubo: Kubo) -> None:
    absent = cid_for_digest(hashlib.sha256(b"never added anywhere").digest())
    assert not kubo.has(absent)
    assert kubo.has(kubo.put_bytes(b"present"))


# ---------------------------------------------------------------- 1 GiB, bounded memory
ROUND_TRIP = """
import sys
from pathlib import Path
from provenance.storage import Kubo, LocalStore
kind, api, src, store, dest = sys.argv[1:]
storage = Kubo(api, timeout=600) if kind == "kubo" else LocalStore(Path(store))
cid = storage.put_path(Path(src))
storage.get_path(cid, Path(dest))
status = Path("/proc/self/status").read_text()
peak_kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
print(cid, peak_kib)
"""


def measured(*args: str) -> tuple[str, int]:
    """Run the round trip in a child process; its CID and its peak RSS in bytes.

    The peak is the child's own VmHWM: ``ru_maxrss`` would carry over the pytest process's
    RSS at fork time (Linux keeps the high-water mark across ``execve``)."""
    result = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP, *args], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr
    cid, peak_kib = result.stdout.split()
    return cid, int(peak_kib) * 1024


def file_digest(path: Path) -> bytes:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


def test_one_gib_round_trips_in_bounded_memory(stack: Stack, kubo: Kubo, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        for _ in range(1024):
            f.write(os.urandom(MiB))
    want = file_digest(src)
    api = stack.config.ipfs.api
    found: dict[str, str] = {}
    try:
        for kind in ("local", "kubo"):
            dest = tmp_path / f"back-{kind}.bin"
            cid, peak = measured(kind, api, str(src), str(tmp_path / "store"), str(dest))
            assert file_digest(dest) == want, kind
            assert peak < 200 * MiB, f"{kind}: peak RSS {peak // MiB} MiB for a 1 GiB file"
            dest.unlink()
            found[kind] = cid
        assert found["local"] == found["kubo"]
        kubo.unpin(found["kubo"])
    finally:
        for path in tmp_path.glob("*.bin"):
            path.unlink()
        shutil.rmtree(tmp_path / "store", ignore_errors=True)


# ---------------------------------------------------------------- CLI, kubo backend
def test_cli_on_the_kubo_backend(stack: Stack, cli_env: dict[str, str], tmp_path: Path) -> None:
    tree = make_tree(tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PROVENANCE), "ipfs", *args], env=cli_env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip

    added = run("add", "--json", str(tree))
    assert added.returncode == 0, added.stderr
    report = json.loads(added.stdout)
    assert report["cid"] == cid_of_path(tree)
    assert report["stored_in"] == {"backend": "kubo", "location": stack.config.ipfs.api}
    got = run("get", report["cid"], "-o", str(tmp_path / "back"))
    assert got.returncode == 0, got.stderr
    assert same_tree(tree, tmp_path / "back")
    exported = run("export", report["cid"], "-o", str(tmp_path / "d.car"))
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "d.car").read_bytes() == ipfs(stack, "dag", "export", report["cid"])
    imported = run("import", str(tmp_path / "d.car"))
    assert (imported.returncode, imported.stdout) == (0, report["cid"] + "\n")
