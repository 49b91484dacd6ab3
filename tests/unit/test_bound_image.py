"""The image bound to a model on chain, as verification reads it: the record fetched by the
digest on chain and checked before anything else is believed (no Docker, no chain: the
registry's reads over memory, a local block store). The whole path against anvil, kubo and
dockerd is tests/integration/test_image_binding.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from provenance.bound_image import fetch_bound_record, record_digest, store_record
from provenance.certificate import raw_block_cid
from provenance.chain.types import ImageBinding
from provenance.errors import ImageError, IntegrityError
from provenance.images import ImageRecord
from provenance.storage import LocalStore
from provenance.verify import report_for_model

from .test_verify import FakeRegistry, certify, publish

IMAGE = "sha256:" + "ab" * 32
OTHER_IMAGE = "sha256:" + "cd" * 32
LAYOUT = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "blocks")


def bind(registry: FakeRegistry, model_id: bytes, image: str, digest: bytes) -> ImageBinding:
    binding = ImageBinding(model_id, bytes.fromhex(image[7:]), digest, 1_700_000_000)
    registry.images[model_id] = binding
    return binding


def image_check(registry: FakeRegistry, store: LocalStore, model_id: bytes) -> tuple[str, str]:
    report = report_for_model(model_id, registry=registry, storage=store)
    check = report.check("image")
    assert check is not None
    assert check.failed == (check.status == "fail")  # a failure makes the report fail
    return str(check.status), check.detail


def test_the_record_is_stored_as_one_raw_block_named_by_its_digest(store: LocalStore) -> None:
    record = ImageRecord(image_id=IMAGE, archive=LAYOUT, size=10, model_digest=IMAGE)
    cid = store_record(store, record)
    assert cid == raw_block_cid(hashlib.sha256(record.to_bytes()).digest())
    assert record_digest(record) == hashlib.sha256(record.to_bytes()).digest()
    assert store.get_bytes(cid) == record.to_bytes()


def test_a_record_naming_another_image_than_the_binding(tmp_path: Path, store: LocalStore) -> None:
    registry = FakeRegistry()
    cert, _, _ = certify(tmp_path, "alpha")
    model_id = publish(registry, store, cert)
    record = ImageRecord(
        image_id=OTHER_IMAGE, archive=LAYOUT, size=10, model_digest=cert.model.digest
    )
    cid = store_record(store, record)
    bind(registry, model_id, IMAGE, record_digest(record))
    assert image_check(registry, store, model_id) == (
        "fail",
        f"the image bound on chain: the image record {cid} names image {OTHER_IMAGE}, the "
        f"binding on chain of model 0x{model_id.hex()} names {IMAGE}",
    )


def test_a_record_of_another_model(tmp_path: Path, store: LocalStore) -> None:
    registry = FakeRegistry()
    cert, _, _ = certify(tmp_path, "alpha")
    model_id = publish(registry, store, cert)
    other = "sha256:" + "01" * 32
    record = ImageRecord(image_id=IMAGE, archive=LAYOUT, size=10, model_digest=other)
    cid = store_record(store, record)
    bind(registry, model_id, IMAGE, record_digest(record))
    assert image_check(registry, store, model_id) == (
        "fail",
        f"the image bound on chain: the image record {cid} names model digest {other}, model "
        f"0x{model_id.hex()} has {cert.model.digest}",
    )


def test_a_record_that_is_not_one(tmp_path: Path, store: LocalStore) -> None:
    registry = FakeRegistry()
    cert, _, _ = certify(tmp_path, "alpha")
    model_id = publish(registry, store, cert)
    data = b'{"image_id": "not a digest"}'
    cid = store.put_bytes(data)
    binding = bind(registry, model_id, IMAGE, hashlib.sha256(data).digest())
    assert image_check(registry, store, model_id) == (
        "fail",
        f"the image bound on chain: the image record {cid} bound to model 0x{model_id.hex()} "
        "is malformed: image_id: String should match pattern '^sha256:[0-9a-f]{64}$'",
    )
    with pytest.raises(ImageError):
        fetch_bound_record(binding, store, cert.model.digest)


def test_a_record_the_storage_does_not_hold(tmp_path: Path, store: LocalStore) -> None:
    registry = FakeRegistry()
    cert, _, _ = certify(tmp_path, "alpha")
    model_id = publish(registry, store, cert)
    digest = hashlib.sha256(b"never stored").digest()
    bind(registry, model_id, IMAGE, digest)
    assert image_check(registry, store, model_id) == (
        "fail",
        f"the image bound on chain: block {raw_block_cid(digest)} is not in the local store "
        f"{tmp_path / 'blocks'}",
    )


def test_bytes_that_do_not_hash_to_the_digest_are_refused(tmp_path: Path) -> None:
    class Lying:
        """A store answering other bytes than asked for (a hostile gateway)."""

        def get_bytes(self, cid: str, *, max_size: int) -> bytes:
            return ImageRecord(image_id=IMAGE, archive=LAYOUT, size=1).to_bytes()

    digest = hashlib.sha256(b"the real record").digest()
    binding = ImageBinding(b"\x01" * 32, bytes.fromhex(IMAGE[7:]), digest, 0)
    with pytest.raises(IntegrityError) as info:
        fetch_bound_record(binding, Lying(), IMAGE)  # type: ignore[arg-type]
    assert str(info.value) == (
        f"the image record {raw_block_cid(digest)} bound to model 0x{'01' * 32} does not hash "
        "to the digest on chain"
    )
