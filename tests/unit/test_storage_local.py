"""The embedded LocalStore: put and get, pins and gc, CAR exchange, tampering, policy."""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path

import pytest

from provenance.errors import IntegrityError, PolicyError, StorageError
from provenance.storage import LocalStore, cid_for_digest

CERTIFICATE = b'{"model": "m", "parents": [], "version": 1}' * 100


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "blocks")


def _tree(root: Path) -> Path:
    (root / "data" / "part").mkdir(parents=True)
    (root / "data" / "README").write_text("a dataset\n")
    (root / "data" / "part" / "rows.bin").write_bytes(random.Random(3).randbytes(600_000))
    return root / "data"


def test_a_certificate_is_one_raw_block_named_by_its_digest(store: LocalStore) -> None:
    cid = store.put_bytes(CERTIFICATE)
    assert cid == cid_for_digest(hashlib.sha256(CERTIFICATE).digest())
    assert store.get_bytes(cid) == CERTIFICATE
    assert store.has(cid)
    assert store.pins() == {cid}


def test_streams_and_files_round_trip(store: LocalStore, tmp_path: Path) -> None:
    data = random.Random(4).randbytes(1_000_000)
    seen: list[int] = []
    cid = store.put_stream(io.BytesIO(data), progress=seen.append)
    assert sum(seen) == len(data)
    assert b"".join(store.cat(cid)) == data
    (tmp_path / "f").write_bytes(data)
    assert store.put_path(tmp_path / "f", pin=False) == cid


def test_directories_round_trip(store: LocalStore, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    cid = store.put_path(src)
    store.get_path(cid, tmp_path / "out")
    assert (tmp_path / "out" / "README").read_text() == "a dataset\n"
    assert (tmp_path / "out" / "part" / "rows.bin").read_bytes() == (
        src / "part" / "rows.bin"
    ).read_bytes()


def test_a_block_altered_on_disk_is_rejected(store: LocalStore, tmp_path: Path) -> None:
    data = random.Random(5).randbytes(700_000)
    cid = store.put_bytes(data)
    victim = next(p for p in store.root.rglob("bafkrei*") if p.stat().st_size == 262_144)
    victim.write_bytes(b"\0" * 262_144)
    with pytest.raises(IntegrityError) as info:
        store.get_bytes(cid)
    assert str(info.value) == (
        f"block {victim.name} from the local store {store.root} does not match its CID"
    )
    with pytest.raises(IntegrityError):
        store.get_path(cid, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_content_is_named(store: LocalStore) -> None:
    absent = cid_for_digest(hashlib.sha256(b"absent").digest())
    assert not store.has(absent)
    with pytest.raises(StorageError) as info:
        store.get_bytes(absent)
    assert str(info.value) == f"block {absent} is not in the local store {store.root}"
    with pytest.raises(StorageError) as info:
        store.pin(absent)
    assert str(info.value) == (
        f"cannot pin {absent}: block {absent} is not in the local store {store.root}"
    )


def test_confidential_data_is_refused(store: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        store.put_bytes(b"patient records", confidential=True)
    assert str(info.value) == (
        f"refusing to put 15 bytes into the local store {store.root}: it is marked "
        "confidential, only its commitment may be published"
    )
    src = _tree(tmp_path / "src")
    with pytest.raises(PolicyError) as info:
        store.put_path(src, confidential=True)
    assert str(info.value).startswith(f"refusing to put {src} into the local store ")
    assert not any(store.root.rglob("bafk*"))


def test_unpinned_content_is_garbage_collected(store: LocalStore, tmp_path: Path) -> None:
    keep = store.put_bytes(b"keep")
    drop = store.put_path(_tree(tmp_path / "src"))
    store.unpin(drop)
    assert store.pins() == {keep}
    # two directories, README, rows.bin's root and its three leaves
    assert store.gc() == 7
    assert store.has(keep)
    assert not store.has(drop)
    with pytest.raises(StorageError) as info:
        store.unpin(drop)
    assert str(info.value) == f"{drop} is not pinned in the local store {store.root}"


def test_car_round_trip_between_stores(store: LocalStore, tmp_path: Path) -> None:
    cid = store.put_path(_tree(tmp_path / "src"))
    car = tmp_path / "data.car"
    store.export_car(cid, car)
    other = LocalStore(tmp_path / "other")
    assert other.import_car(car) == (cid,)
    assert other.pins() == {cid}
    other.get_path(cid, tmp_path / "copy")
    assert (tmp_path / "copy" / "README").read_text() == "a dataset\n"
    again = tmp_path / "again.car"
    other.export_car(cid, again)
    assert again.read_bytes() == car.read_bytes()


def test_importing_an_incomplete_car_pins_nothing(store: LocalStore, tmp_path: Path) -> None:
    cid = store.put_path(_tree(tmp_path / "src"))
    buffer = io.BytesIO()
    store.export_car(cid, buffer)
    other = LocalStore(tmp_path / "other")
    truncated = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    with pytest.raises(IntegrityError) as info:
        other.import_car(io.BytesIO(truncated))
    assert str(info.value) == "CAR from CAR stream is truncated"
    assert other.pins() == frozenset()
