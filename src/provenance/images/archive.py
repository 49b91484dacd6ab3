"""``docker save`` archives as streams, in constant memory, without a Docker engine.

:func:`verified_archive` re-emits an archive on its way to ``docker load`` through a filter that
hashes the archive's files and reads its manifest, and, before the end of the archive reaches the
engine, refuses (:class:`~provenance.errors.IntegrityError`) an archive whose image is not the
expected one; the engine then has loaded nothing. Tags in the archive are dropped, so no archive
can move an existing tag. :class:`ChunkReader` turns an iterator of chunks into a file.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from provenance.errors import IntegrityError
from provenance.untrusted import UntrustedInputError, loads_json

CHUNK = 1 << 20
_BLOCK = tarfile.BLOCKSIZE
_MAX_MANIFEST = 1 << 20


class ChunkReader(io.RawIOBase):
    """A read-only binary file over an iterator of byte chunks (counts what it hands out)."""

    def __init__(self, chunks: Iterable[bytes], name: str = "a stream") -> None:
        self._chunks = iter(chunks)
        self._buffer = memoryview(b"")
        self.name = name
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        view = memoryview(target).cast("B")
        while not self._buffer:
            try:
                self._buffer = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(view), len(self._buffer))
        view[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        self.count += n
        return n


def _padding(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)


def _member(name: str, size: int, *, mtime: int = 0, mode: int = 0o644) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, mode
    return info.tobuf(tarfile.PAX_FORMAT)


def _file(name: str, data: bytes, *, mtime: int = 0) -> bytes:
    return _member(name, len(data), mtime=mtime) + data + _padding(len(data))


_END = b"\0" * (2 * _BLOCK)


@dataclass
class ArchiveCheck:
    """What :func:`verified_archive` found: the id of the archive's one image."""

    image_id: str | None = None


def verified_archive(
    chunks: Iterable[bytes],
    expected_id: str | None,
    found: ArchiveCheck,
    *,
    what: str = "the archive",
) -> Iterator[bytes]:
    """Re-emit a ``docker save`` archive for ``docker load`` in constant memory, checking it.

    Members pass through as they come, except ``manifest.json`` (held back) and ``repositories``
    (dropped: tags are not taken from archives). Every regular file is hashed. At the end the manifest must list exactly one image whose config was seen and whose
    SHA-256 (the image id) is ``expected_id`` (any, when None); only then is the manifest,
    without its ``RepoTags``, emitted with the end of the archive. Otherwise IntegrityError is
    raised before that: an archive without a manifest loads nothing.
    """
    source = ChunkReader(chunks, name=what)
    digests: dict[str, str] = {}
    manifest: bytes | None = None
    try:
        with tarfile.open(fileobj=source, mode="r|", bufsize=CHUNK) as archive:
            for member in archive:
                name = posixpath.normpath(member.name.lstrip("/"))
                if name.startswith("../") or name == "..":
                    raise IntegrityError(f"{what} has a member outside the archive: {member.name}")
                if name in ("manifest.json", "repositories"):
                    data = _read_small(archive, member, what)
                    if name == "manifest.json":
                        manifest = data
                    continue
                digests.pop(name, None)
                yield member.tobuf(tarfile.PAX_FORMAT)
                if not member.isreg():
                    continue
                hasher = hashlib.sha256()
                stream = archive.extractfile(member)
                if stream is None:  # pragma: no cover - regular members always have data
                    continue
                while block := stream.read(CHUNK):
                    hasher.update(block)
                    yield block
                yield _padding(member.size)
                digests[name] = "sha256:" + hasher.hexdigest()
    except tarfile.TarError as exc:
        raise IntegrityError(f"{what} is not a valid image archive: {exc}") from exc
    image_id = _check_manifest(manifest, digests, expected_id, what)
    found.image_id = image_id
    yield _file("manifest.json", _untagged(manifest))
    yield _END


def _read_small(archive: tarfile.TarFile, member: tarfile.TarInfo, what: str) -> bytes:
    if not member.isreg() or member.size > _MAX_MANIFEST:
        raise IntegrityError(f"{what} has an unexpected {member.name}")
    stream = archive.extractfile(member)
    return stream.read() if stream is not None else b""


def _parse_manifest(manifest: bytes | None, what: str) -> list[dict[str, Any]]:
    if manifest is None:
        raise IntegrityError(f"{what} has no manifest.json: it is not a docker save archive")
    try:
        entries = loads_json(manifest, what="manifest.json", max_bytes=_MAX_MANIFEST)
    except UntrustedInputError as exc:
        raise IntegrityError(f"{what} has a malformed manifest.json: {exc}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise IntegrityError(f"{what} has a malformed manifest.json")
    return entries


def _check_manifest(
    manifest: bytes | None, digests: Mapping[str, str], expected_id: str | None, what: str
) -> str:
    entries = _parse_manifest(manifest, what)
    if len(entries) != 1:
        raise IntegrityError(f"{what} holds {len(entries)} images; expected one")
    config = entries[0].get("Config")
    if not isinstance(config, str):
        raise IntegrityError(f"{what} has a malformed manifest.json")
    image_id = digests.get(posixpath.normpath(config))
    if image_id is None:
        raise IntegrityError(f"{what} does not contain the image config {config}")
    if expected_id is not None and image_id != expected_id:
        raise IntegrityError(f"{what} holds image {image_id}, expected {expected_id}")
    return image_id


def _untagged(manifest: bytes | None) -> bytes:
    entries = _parse_manifest(manifest or b"[]", "the archive")
    for entry in entries:
        entry["RepoTags"] = None
    return json.dumps(entries, separators=(",", ":")).encode()
