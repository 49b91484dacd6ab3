"""Images as OCI image layouts in IPFS: one UnixFS file per blob, so layers deduplicate.

An image is stored as the UnixFS directory of an OCI image layout::

    oci-layout                 {"imageLayoutVersion":"1.0.0"}
    index.json                 one manifest descriptor
    blobs/sha256/<hex>         the manifest, the config (its digest is the image id) and every
                               layer as an uncompressed tar (its digest is the layer's diffID)

A layer is the same UnixFS file whichever image it belongs to, so a second model image on the
same base adds only its own layers (and three small directory nodes) to IPFS.

:func:`store_layout` turns a streamed ``docker save`` archive into that directory, in constant
memory: each layer goes into the storage as it streams by. :func:`read_layout` reads a layout
back and checks, before anything reaches an engine, index -> manifest -> config by their
digests, the config's digest against the expected image id, and the config's diffIDs against
the layers the manifest lists. :func:`load_archive` then streams a ``docker load`` archive whose
layers are each hashed on the way, leaving out the first ``skip`` layers (those the engine
already has: ``docker load`` opens a layer's file only when it lacks the layer's chain), with
``manifest.json`` last: a layer that does not hash to its diffID raises before the manifest is
sent, and an archive without a manifest loads nothing.

No engine here: :mod:`~provenance.images.transport` brings the engine.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from provenance.errors import ImageError, IntegrityError
from provenance.storage import cid as cids
from provenance.storage import unixfs
from provenance.storage.car import CarWriter
from provenance.storage.dagpb import UnixFSType, decode_node, decode_unixfs
from provenance.untrusted import UntrustedInputError, loads_json

from .archive import _END, CHUNK, ChunkReader, _file, _member, _padding

if TYPE_CHECKING:
    from provenance.storage.protocol import Progress, Storage

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
"""Layers are stored uncompressed: their digest is their diffID, the same in every image."""

_MAX_JSON = 8 << 20
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Blob:
    """One blob of a layout: its digest, its size and the CID of its UnixFS file."""

    digest: str
    size: int
    cid: str


@dataclass(frozen=True)
class ImageLayout:
    """An image layout, checked: the image id (the config's digest), the config bytes, the
    layers in order, and the layout's CID and total blob bytes."""

    cid: str
    image_id: str
    config: bytes
    layers: tuple[Blob, ...]
    size: int


# -- storing ------------------------------------------------------------------------------------


class _Hashing(io.RawIOBase):
    """A file over a tar member that hashes what it hands out."""

    def __init__(self, stream: Any, name: str) -> None:
        self._stream = stream
        self.name = name
        self.hasher = hashlib.sha256()
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._stream.read(size)
        self.hasher.update(data)
        self.count += len(data)
        return data

    def readinto(self, target: Any) -> int:  # pragma: no cover - the stores call read()
        data = self.read(len(target))
        memoryview(target).cast("B")[: len(data)] = data
        return len(data)


def _built(storage: Storage, cid: str, size: int) -> unixfs.Built:
    """The root of a stored file as a directory entry needs it (its Tsize), from its root."""
    binary = cids.parse(cid)
    if cids.codec(binary) == cids.RAW:
        return unixfs.Built(binary, size, size)
    block = storage.block(binary)
    node = decode_node(block, f"the root of {cid}")
    return unixfs.Built(binary, len(block) + sum(link.tsize for link in node.links), size)


def _json(data: bytes | None, what: str) -> Any:
    if data is None:
        raise IntegrityError(f"{what} is missing")
    try:
        return loads_json(data, what=what, max_bytes=_MAX_JSON)
    except UntrustedInputError as exc:
        raise IntegrityError(f"{what} is malformed: {exc}") from None


def _dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def store_layout(
    chunks: Iterable[bytes],
    image_id: str,
    storage: Storage,
    *,
    pin: bool = True,
    progress: Progress | None = None,
    what: str = "the image",
) -> ImageLayout:
    """Store the ``docker save`` archive streamed as ``chunks`` (of the one image
    ``image_id``) as an OCI image layout; every layer must hash to its diffID in the config."""
    layers: dict[str, Blob] = {}
    links: dict[str, str] = {}
    small: dict[str, bytes] = {}
    source = ChunkReader(chunks, name=what)
    try:
        with tarfile.open(fileobj=source, mode="r|", bufsize=CHUNK) as archive:
            for member in archive:
                name = posixpath.normpath(member.name.lstrip("/"))
                if name.endswith("/layer.tar") and member.issym():
                    links[name] = posixpath.normpath(
                        posixpath.join(posixpath.dirname(name), member.linkname)
                    )
                elif name.endswith("/layer.tar") and member.isreg():
                    stream = archive.extractfile(member)
                    reader = _Hashing(stream, f"layer {name} of {what}")
                    cid = storage.put_stream(reader, pin=False, progress=progress)  # type: ignore[arg-type]
                    digest = "sha256:" + reader.hasher.hexdigest()
                    layers[name] = Blob(digest, reader.count, cid)
                elif member.isreg() and "/" not in name and name.endswith(".json"):
                    if member.size > _MAX_JSON:
                        raise IntegrityError(f"{what} has an oversized {name}")
                    stream = archive.extractfile(member)
                    small[name] = stream.read() if stream is not None else b""
    except tarfile.TarError as exc:
        raise IntegrityError(f"{what} is not a valid image archive: {exc}") from exc
    entries = _json(small.get("manifest.json"), f"manifest.json of {what}")
    if not isinstance(entries, list) or len(entries) != 1 or not isinstance(entries[0], dict):
        raise IntegrityError(f"{what} is not an archive of one image")
    config_name, layer_names = entries[0].get("Config"), entries[0].get("Layers")
    config = small.get(str(config_name))
    if config is None or not isinstance(layer_names, list):
        raise IntegrityError(f"{what} has a malformed manifest.json")
    found_id = "sha256:" + hashlib.sha256(config).hexdigest()
    if found_id != image_id:
        raise IntegrityError(f"{what} holds image {found_id}, expected {image_id}")
    blobs: list[Blob] = []
    for layer in layer_names:
        name = posixpath.normpath(str(layer))
        blob = layers.get(links.get(name, name))
        if blob is None:
            raise IntegrityError(f"{what} lacks its layer {layer}")
        blobs.append(blob)
    _check_diff_ids(config, blobs, what)
    return _store_directory(storage, image_id, config, blobs, pin)


def _check_diff_ids(config: bytes, layers: Iterable[Blob], what: str) -> None:
    rootfs = _json(config, f"the config of {what}").get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    digests = [layer.digest for layer in layers]
    if diff_ids != digests:
        raise IntegrityError(
            f"the layers of {what} are not the ones its config names: {digests} against {diff_ids}"
        )


def _store_directory(
    storage: Storage, image_id: str, config: bytes, layers: list[Blob], pin: bool
) -> ImageLayout:
    def put(data: bytes) -> Blob:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return Blob(digest, len(data), storage.put_bytes(data, pin=False))

    config_blob = put(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": image_id, "size": len(config)},
        "layers": [
            {"mediaType": LAYER_TYPE, "digest": layer.digest, "size": layer.size}
            for layer in layers
        ],
    }
    manifest_blob = put(_dumps(manifest))
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [
            {
                "mediaType": MANIFEST_TYPE,
                "digest": manifest_blob.digest,
                "size": manifest_blob.size,
            }
        ],
    }
    index_blob = put(_dumps(index))
    layout_blob = put(OCI_LAYOUT)
    blobs = {b.digest: b for b in (manifest_blob, config_blob, *layers)}
    sha = [(d.removeprefix("sha256:"), _built(storage, b.cid, b.size)) for d, b in blobs.items()]
    sha_block, sha_dir = unixfs.directory_node(sha, "blobs/sha256")
    blobs_block, blobs_dir = unixfs.directory_node([("sha256", sha_dir)], "blobs")
    root_block, root = unixfs.directory_node(
        [
            ("blobs", blobs_dir),
            ("index.json", _built(storage, index_blob.cid, index_blob.size)),
            ("oci-layout", _built(storage, layout_blob.cid, layout_blob.size)),
        ],
        "the image layout",
    )
    car = io.BytesIO()
    writer = CarWriter(car, [root.cid])
    for block in (root_block, blobs_block, sha_block):
        writer.add(cids.block_cid(block, cids.DAG_PB), block)
    car.seek(0)
    (stored,) = storage.import_car(car, pin=pin)
    if cids.parse(stored) != root.cid:  # pragma: no cover - import_car returns the CAR's root
        raise IntegrityError(f"{storage.location} stored the image layout as {stored}")
    size = sum(b.size for b in blobs.values())
    return ImageLayout(cids.to_str(root.cid), image_id, config, tuple(layers), size)


# -- reading ------------------------------------------------------------------------------------


def kind_of(storage: Storage, cid: str) -> str:
    """``"layout"`` for a UnixFS directory, ``"archive"`` for a UnixFS file (a ``docker save``
    tar stored whole, as images were before layouts)."""
    binary = cids.parse(cid)
    if cids.codec(binary) == cids.RAW:
        return "archive"
    node = decode_node(storage.block(binary), f"the root of {cid}")
    kind = decode_unixfs(node.data, f"the root of {cid}").type
    if kind == UnixFSType.DIRECTORY:
        return "layout"
    if kind in (UnixFSType.FILE, UnixFSType.RAW):
        return "archive"
    raise ImageError(f"{cid} is neither an image layout nor an image archive")


def _entries(storage: Storage, cid: bytes, what: str) -> dict[str, bytes]:
    node = decode_node(storage.block(cid), what)
    if decode_unixfs(node.data, what).type != UnixFSType.DIRECTORY:
        raise IntegrityError(f"{what} is not a directory")
    return {link.name: link.cid for link in node.links}


def read_layout(storage: Storage, cid: str, expected_id: str | None) -> ImageLayout:
    """The image layout at ``cid``, checked (see the module): IntegrityError names what does
    not match; nothing but small JSON blobs is fetched."""
    what = f"the image layout {cid}"
    root = _entries(storage, cids.parse(cid), what)
    if "blobs" not in root:
        raise IntegrityError(f"{what} has no blobs/")
    sha = _entries(storage, root["blobs"], f"blobs/ of {what}")
    if "sha256" not in sha:
        raise IntegrityError(f"{what} has no blobs/sha256/")
    blobs = _entries(storage, sha["sha256"], f"blobs/sha256/ of {what}")

    def small(name: str, where: dict[str, bytes]) -> bytes:
        if name not in where:
            raise IntegrityError(f"{what} has no {name}")
        return storage.get_bytes(cids.to_str(where[name]), max_size=_MAX_JSON)

    def blob(descriptor: Any, kind: str) -> tuple[str, int, str]:
        if not isinstance(descriptor, dict):
            raise IntegrityError(f"{what} has a malformed {kind} descriptor")
        digest, size = descriptor.get("digest"), descriptor.get("size")
        match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
        if match is None or not isinstance(size, int) or size < 0:
            raise IntegrityError(f"{what} has a malformed {kind} descriptor")
        if match.group(1) not in blobs:
            raise IntegrityError(f"{what} lacks the {kind} blob {digest}")
        return str(digest), size, cids.to_str(blobs[match.group(1)])

    def checked(descriptor: Any, kind: str) -> bytes:
        digest, size, blob_cid = blob(descriptor, kind)
        if size > _MAX_JSON:
            raise IntegrityError(f"{what} has an oversized {kind}")
        data = storage.get_bytes(blob_cid, max_size=_MAX_JSON)
        found = "sha256:" + hashlib.sha256(data).hexdigest()
        if found != digest or len(data) != size:
            raise IntegrityError(f"the {kind} of {what} is {found}, its descriptor says {digest}")
        return data

    layout_version = _json(small("oci-layout", root), f"oci-layout of {what}")
    if not isinstance(layout_version, dict) or "imageLayoutVersion" not in layout_version:
        raise IntegrityError(f"{what} has a malformed oci-layout")
    index = _json(small("index.json", root), f"index.json of {what}")
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list):
        raise IntegrityError(f"{what} has a malformed index.json")
    if len(manifests) != 1:
        raise IntegrityError(f"{what} holds {len(manifests)} images; expected one")
    manifest = _json(checked(manifests[0], "manifest"), f"the manifest of {what}")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("layers"), list):
        raise IntegrityError(f"{what} has a malformed manifest")
    config_descriptor = manifest.get("config")
    image_id, _, _ = blob(config_descriptor, "config")
    if expected_id is not None and image_id != expected_id:
        raise IntegrityError(f"{what} holds image {image_id}, expected {expected_id}")
    config = checked(config_descriptor, "config")
    layers: list[Blob] = []
    for descriptor in manifest["layers"]:
        if isinstance(descriptor, dict) and descriptor.get("mediaType") != LAYER_TYPE:
            raise ImageError(
                f"{what} has a layer of type {descriptor.get('mediaType')}; only uncompressed "
                f"layers ({LAYER_TYPE}) are supported"
            )
        layers.append(Blob(*blob(descriptor, "layer")))
    _check_diff_ids(config, layers, what)
    size = len(config) + sum(layer.size for layer in layers)
    return ImageLayout(cid, image_id, config, tuple(layers), size)


def load_archive(
    storage: Storage,
    layout: ImageLayout,
    skip: int = 0,
    *,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """A ``docker load`` archive of ``layout`` (checked by :func:`read_layout`) without its
    first ``skip`` layers; each layer sent is hashed and must be its diffID before
    ``manifest.json``, the last member, is sent."""
    what = f"the image layout {layout.cid}"
    names = []
    sent: set[str] = set()
    for i, layer in enumerate(layout.layers):
        hex_digest = layer.digest.removeprefix("sha256:")
        name = f"{hex_digest}/layer.tar"
        names.append(name)
        if i < skip or name in sent:
            continue
        sent.add(name)
        yield _member(name, layer.size)
        hasher, count = hashlib.sha256(), 0
        for chunk in storage.cat(layer.cid, progress=progress):
            count += len(chunk)
            if count > layer.size:
                break
            hasher.update(chunk)
            yield chunk
        found = "sha256:" + hasher.hexdigest()
        if count != layer.size or found != layer.digest:
            raise IntegrityError(f"layer {i} of {what} is not {layer.digest}")
        yield _padding(layer.size)
    config_name = layout.image_id.removeprefix("sha256:") + ".json"
    yield _file(config_name, layout.config)
    manifest = [{"Config": config_name, "RepoTags": None, "Layers": names}]
    yield _file("manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
    yield _END
