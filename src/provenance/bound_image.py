"""The Docker image a model's registrant bound to it on chain, after registration.

An image built after its certificate can only name the certificate in its labels, and anyone
can build an image with any labels: labels are no authority. The registrant binds the image
instead (``ModelRegistry.bindImage``, :meth:`provenance.chain.registry.Registry.bind_image`):
the chain keeps the image id and the sha-256 of its :class:`~provenance.images.ImageRecord`
(image id, OCI layout CID, model digest), whose canonical JSON is stored in IPFS as one raw
block, so its CID follows from the digest on chain (as a revocation reason's does).

    cid = store_record(storage, record)                      # before binding
    registry.bind_image(model_id, image_id_bytes(record), record_digest(record))
    binding = registry.image_binding(model_id)
    record = fetch_bound_record(binding, storage, model_digest)  # checked against the chain
    check_record_layout(storage, record)                     # the layout holds that image id

Verification (:mod:`provenance.verify.image`), ``provenance serve`` and ``provenance image
bind`` use it. The contract lets only the registrant bind, and only while the model is active.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Protocol

from provenance.certificate import raw_block_cid
from provenance.errors import ImageError, IntegrityError, StorageError
from provenance.hashing import parse_digest

if TYPE_CHECKING:
    from provenance.chain.types import ImageBinding
    from provenance.images import ImageRecord
    from provenance.storage.protocol import Storage

MAX_RECORD_BYTES = 64 * 1024
"""The largest image record read from IPFS (one is a few hundred bytes)."""


class ImageBindings(Protocol):
    """What reading a binding needs of the registry (:class:`~provenance.chain.registry.Registry`)."""

    def image_binding(self, model_id: bytes) -> ImageBinding | None: ...


def record_digest(record: ImageRecord) -> bytes:
    """The sha-256 of the record's canonical JSON: what the chain binds."""
    return hashlib.sha256(record.to_bytes()).digest()


def image_id_bytes(record: ImageRecord) -> bytes:
    """The record's image id as the contract stores it (32 bytes)."""
    return parse_digest(record.image_id, "image id")


def store_record(storage: Storage, record: ImageRecord) -> str:
    """Put the record's canonical JSON in ``storage`` as one raw block (pinned); its CID, which
    is the one :func:`raw_block_cid` derives from :func:`record_digest`."""
    expected = raw_block_cid(record_digest(record))
    cid = storage.put_bytes(record.to_bytes())
    if cid != expected:  # one raw block up to 256 KiB: the CID is the digest's
        raise StorageError(f"IPFS stored the image record as {cid}, not {expected}")
    return cid


def fetch_bound_record(binding: ImageBinding, storage: Storage, model_digest: str) -> ImageRecord:
    """The record the binding names, from ``storage`` by its digest, checked: its bytes hash to
    the digest on chain, it names the bound image id and the model's digest ``model_digest``
    (``sha256:<hex>``). IntegrityError names what does not match."""
    from pydantic import ValidationError

    from provenance.images import ImageRecord

    model = f"model 0x{binding.model_id.hex()}"
    cid = raw_block_cid(binding.record_digest)
    data = storage.get_bytes(cid, max_size=MAX_RECORD_BYTES)
    if hashlib.sha256(data).digest() != binding.record_digest:  # storage checks blocks too
        raise IntegrityError(
            f"the image record {cid} bound to {model} does not hash to the digest on chain"
        )
    try:
        record = ImageRecord.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        reason = ".".join(str(part) for part in first["loc"]) + ": " + first["msg"]
        raise ImageError(
            f"the image record {cid} bound to {model} is malformed: {reason}"
        ) from None
    if record.image_id != binding.image_id_text:
        raise IntegrityError(
            f"the image record {cid} names image {record.image_id}, the binding on chain of "
            f"{model} names {binding.image_id_text}"
        )
    if record.model_digest != model_digest:
        raise IntegrityError(
            f"the image record {cid} names model digest {record.model_digest}, {model} has "
            f"{model_digest}"
        )
    return record


def check_record_layout(storage: Storage, record: ImageRecord) -> None:
    """The image at the record's archive CID is the record's image id: for an OCI layout, its
    index, manifest and config (whose digest is the image id) are read and checked, nothing
    large is fetched; an archive of older records is streamed through and checked whole.
    IntegrityError otherwise."""
    from provenance.images import ArchiveCheck, read_layout, verified_archive
    from provenance.images.oci import kind_of

    if kind_of(storage, record.archive) == "layout":
        read_layout(storage, record.archive, record.image_id)
        return
    what = f"the archive {record.archive}"
    for _ in verified_archive(
        storage.cat(record.archive), record.image_id, ArchiveCheck(), what=what
    ):
        pass


__all__ = [
    "MAX_RECORD_BYTES",
    "ImageBindings",
    "check_record_layout",
    "fetch_bound_record",
    "image_id_bytes",
    "record_digest",
    "store_record",
]
