"""Model images through IPFS.

:func:`push_to_ipfs` streams ``docker save`` of the image (saved by id, so the archive carries
no tags and one image has one archive) into the storage in constant memory and returns an
:class:`~provenance.images.build.ImageRecord`: the image id (the SHA-256 of its config, which
names every layer by digest) and the archive's CID. :func:`pull_from_ipfs` streams the archive
back (every block checked against the CID by the storage) into ``docker load`` through
:func:`~provenance.images.archive.verified_archive`, which refuses an archive whose image is not
the expected one before the engine has loaded anything. Only after the check is the image
tagged (``provenance/ipfs:<cid>`` unless told otherwise).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from provenance.errors import ImageError, IntegrityError

from .archive import CHUNK, ArchiveCheck, ChunkReader, verified_archive
from .build import ImageRecord
from .engine import DockerEngine, LocalImage, _load
from .labels import LABEL_CERTIFICATE, LABEL_MODEL_DIGEST

if TYPE_CHECKING:
    from provenance.storage.protocol import Progress, Storage

PULLED_REPOSITORY = "provenance/ipfs"
"""Images pulled from IPFS are tagged ``provenance/ipfs:<archive CID>`` unless told otherwise."""


def push_to_ipfs(
    engine: DockerEngine,
    image: str,
    storage: Storage,
    *,
    pin: bool = True,
    progress: Progress | None = None,
) -> ImageRecord:
    """Stream ``docker save`` of ``image`` (a tag or id; any image) into ``storage``; the
    record names the image id and the archive CID."""
    found = engine.image(image)
    with engine.calls(f"saving {image}"):
        chunks = engine.api.get_image(found.id, chunk_size=CHUNK)
        reader = ChunkReader(chunks, name=f"image {found.id}")
        cid = storage.put_stream(reader, pin=pin, progress=progress)  # type: ignore[arg-type]
    return ImageRecord(
        image_id=found.id,
        archive=cid,
        size=reader.count,
        model_digest=found.labels.get(LABEL_MODEL_DIGEST),
        certificate=found.labels.get(LABEL_CERTIFICATE),
    )


def pull_from_ipfs(
    engine: DockerEngine,
    storage: Storage,
    cid: str,
    expected_image_id: str | None = None,
    *,
    tag: str | None = None,
    progress: Progress | None = None,
) -> LocalImage:
    """Fetch the archive at ``cid`` (each block checked against it), ``docker load`` it and
    tag it (``provenance/ipfs:<cid>`` by default) once it proved to be ``expected_image_id``
    (any single image, when None). A wrong image raises IntegrityError and is not loaded."""
    if expected_image_id is not None and not re.fullmatch(
        r"sha256:[0-9a-f]{64}", expected_image_id
    ):
        raise ImageError(f"{expected_image_id!r} is not an image id (sha256:<64 hex digits>)")
    what = f"the archive {cid}"
    found = ArchiveCheck()
    chunks = storage.cat(cid, progress=progress)
    _load(engine, verified_archive(chunks, expected_image_id, found, what=what), what)
    if found.image_id is None:  # pragma: no cover - verified_archive sets it or raises
        raise IntegrityError(f"{what} was not checked")
    image = engine.image(found.image_id)
    tag = tag or f"{PULLED_REPOSITORY}:{cid}"
    with engine.calls(f"tagging {found.image_id}"):
        engine.client.images.get(found.image_id).tag(tag)
    return LocalImage(id=image.id, tags=(tag,), labels=image.labels)
