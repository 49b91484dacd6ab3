"""Model images through IPFS, as OCI image layouts (one IPFS file per blob).

:func:`push_to_ipfs` streams ``docker save`` of the image (saved by id, so no tags) into the
storage in constant memory as an OCI image layout (:mod:`~provenance.images.oci`): every layer
is its own UnixFS file, so identical layers (the base, the packages) share CIDs across model
images and a second model on the same base adds only its own layers. The
:class:`~provenance.images.build.ImageRecord` names the image id (the SHA-256 of its config,
which names every layer by digest) and the layout's CID.

:func:`pull_from_ipfs` reads the layout and checks index -> manifest -> config by digest, the
config's digest against the expected image id and its diffIDs against the layers, before it
hands anything to the engine. Layers the engine already has (by chain, as ``docker load``
looks them up) are not fetched: the archive streamed to ``docker load`` leaves them out, and an
image the engine already has is only tagged. Every layer sent is hashed on the way and the
manifest goes last, so a layer that is not its diffID loads nothing. Only after the checks is
the image tagged (``provenance/ipfs:<cid>`` unless told otherwise).

Records made before layouts name a ``docker save`` tar stored as one file; they still pull,
through :func:`~provenance.images.archive.verified_archive` (fetched whole, id-checked).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from provenance.errors import ImageError, IntegrityError

from .archive import CHUNK, ArchiveCheck, verified_archive
from .build import ImageRecord
from .engine import DockerEngine, LocalImage, _load
from .labels import LABEL_CERTIFICATE, LABEL_MODEL_DIGEST
from .oci import kind_of, load_archive, read_layout, store_layout

if TYPE_CHECKING:
    from provenance.storage.protocol import Progress, Storage

PULLED_REPOSITORY = "provenance/ipfs"
"""Images pulled from IPFS are tagged ``provenance/ipfs:<layout CID>`` unless told otherwise."""


def push_to_ipfs(
    engine: DockerEngine,
    image: str,
    storage: Storage,
    *,
    pin: bool = True,
    progress: Progress | None = None,
) -> ImageRecord:
    """Stream ``docker save`` of ``image`` (a tag or id; any image) into ``storage`` as an OCI
    image layout; the record names the image id and the layout's CID (its size: the blobs')."""
    found = engine.image(image)
    with engine.calls(f"saving {image}"):
        chunks = engine.api.get_image(found.id, chunk_size=CHUNK)
        layout = store_layout(
            chunks, found.id, storage, pin=pin, progress=progress, what=f"image {found.id}"
        )
    return ImageRecord(
        image_id=found.id,
        archive=layout.cid,
        size=layout.size,
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
    """Fetch the image at ``cid`` (a layout, or an archive of older records; each block checked
    against its CID), ``docker load`` what the engine lacks and tag it (``provenance/ipfs:<cid>``
    by default) once it proved to be ``expected_image_id`` (any single image, when None). A
    wrong image raises IntegrityError and is not loaded."""
    if expected_image_id is not None and not re.fullmatch(
        r"sha256:[0-9a-f]{64}", expected_image_id
    ):
        raise ImageError(f"{expected_image_id!r} is not an image id (sha256:<64 hex digits>)")
    if kind_of(storage, cid) == "archive":
        image_id = _pull_archive(engine, storage, cid, expected_image_id, progress)
    else:
        layout = read_layout(storage, cid, expected_image_id)
        image_id = layout.image_id
        if not engine.has(image_id):
            skip = present_layers(engine, [layer.digest for layer in layout.layers])
            body = load_archive(storage, layout, skip, progress=progress)
            _load(engine, body, f"the image layout {cid}")
    image = engine.image(image_id)
    tag = tag or f"{PULLED_REPOSITORY}:{cid}"
    with engine.calls(f"tagging {image_id}"):
        engine.client.images.get(image_id).tag(tag)
    return LocalImage(id=image.id, tags=(tag,), labels=image.labels)


def _pull_archive(
    engine: DockerEngine,
    storage: Storage,
    cid: str,
    expected_image_id: str | None,
    progress: Progress | None,
) -> str:
    what = f"the archive {cid}"
    found = ArchiveCheck()
    chunks = storage.cat(cid, progress=progress)
    _load(engine, verified_archive(chunks, expected_image_id, found, what=what), what)
    if found.image_id is None:  # pragma: no cover - verified_archive sets it or raises
        raise IntegrityError(f"{what} was not checked")
    return found.image_id


def present_layers(engine: DockerEngine, diff_ids: list[str]) -> int:
    """How many of the first layers ``diff_ids`` the engine has as a chain (what ``docker
    load`` looks up before it opens a layer's file): the longest prefix some image of the
    engine starts with. An engine whose images live in containerd (which needs every blob of
    an archive) has none, as far as loading goes."""
    with engine.calls("listing the engine's images"):
        info = engine.client.info()
        if "containerd" in str(info.get("DriverStatus") or "") + str(info.get("Driver") or ""):
            return 0
        best = 0
        for summary in engine.api.images(all=True):
            layers = engine.api.inspect_image(summary["Id"]).get("RootFS", {}).get("Layers") or []
            n = 0
            while n < min(len(layers), len(diff_ids)) and layers[n] == diff_ids[n]:
                n += 1
            best = max(best, n)
            if best == len(diff_ids):
                break
    return best
