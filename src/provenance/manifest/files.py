"""File manifests: per-file digests (:mod:`provenance.hashing`: plain SHA-256, or a shard-list
digest for files over the shard size) of a file or a directory tree, sorted by path, and a
Merkle root whose leaves are the RFC 8785 canonical JSON of each entry
``{"digest", "path", "shard_size", "size"}``. The root is the model digest anchored on chain.

A manifest may instead hash its files with BLAKE3 (``algorithm="blake3"``): each entry's digest
then reads ``blake3:<hex>`` (never sharded), which names the function for verifiers and is part
of the leaf, so the root commits to it. The Merkle tree over the entries is SHA-256 either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from provenance import hashing
from provenance.errors import IntegrityError
from provenance.hashing import (
    DEFAULT_SHARD_SIZE,
    HashAlgorithm,
    Progress,
    format_digest,
    merkle_root,
)
from provenance.schema import Digest, Frozen, canonical_json
from provenance.untrusted import unsafe_path_reason


def _safe_path(value: str, what: str) -> str:
    """A relative POSIX path that stays inside its folder: no absolute path, ``..``/``.`` or
    empty segment, backslash, NUL or other control character."""
    reason = unsafe_path_reason(value)
    if reason is not None:
        raise ValueError(f"{what} has the unsafe path {value!r}: {reason}")
    return value


def check_extractable(manifest: FileManifest, what: str) -> None:
    """Refuse a manifest whose files could not be written inside one folder (a model's or a
    dataset's files are; the files a training run read or wrote are only recorded)."""
    for entry in manifest.files:
        _safe_path(entry.path, what)


FileDigestText = Annotated[str, StringConstraints(pattern=r"^(sha256|blake3):[0-9a-f]{64}$")]
"""A file's digest: ``sha256:<hex>`` (plain or shard-list) or ``blake3:<hex>``."""


class FileEntry(Frozen):
    """One file: POSIX path relative to the manifest's root, size, digest (plain SHA-256, or the
    shard-list digest when ``shard_size`` is set; or BLAKE3, never sharded)."""

    path: Annotated[str, Field(min_length=1)]
    size: Annotated[int, Field(ge=0)]
    digest: FileDigestText
    shard_size: Annotated[int, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _unsharded_blake3(self) -> FileEntry:
        if self.shard_size is not None and self.algorithm != "sha256":
            raise ValueError(f"{self.path}: a {self.algorithm} digest has no shard size")
        return self

    @property
    def algorithm(self) -> HashAlgorithm:
        """The hash function of ``digest``, named by its prefix."""
        return "blake3" if self.digest.startswith("blake3:") else "sha256"

    def leaf(self) -> bytes:
        return canonical_json(self)


class FileManifest(Frozen):
    """Files (sorted by path, unique) and the Merkle root over their entries."""

    kind: Literal["files"] = "files"
    root: Digest
    files: tuple[FileEntry, ...]

    @model_validator(mode="after")
    def _consistent(self) -> FileManifest:
        paths = [f.path.encode() for f in self.files]
        if paths != sorted(set(paths)):
            raise ValueError("files must be sorted by path, each path once")
        if self.root != _files_root(self.files):
            raise ValueError(f"root {self.root} is not the Merkle root of the files")
        return self

    @property
    def digest(self) -> str:
        """What identifies the files: the root."""
        return self.root

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @classmethod
    def of(cls, entries: Sequence[FileEntry]) -> FileManifest:
        ordered = tuple(sorted(entries, key=lambda e: e.path.encode()))
        return cls(root=_files_root(ordered), files=ordered)


def _files_root(files: Sequence[FileEntry]) -> str:
    return format_digest(merkle_root(f.leaf() for f in files))


def manifest_of_files(
    files: Mapping[str, Path],
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int | None = None,
    progress: Progress | None = None,
    algorithm: HashAlgorithm = "sha256",
) -> FileManifest:
    """The manifest of named files (name: POSIX path as recorded); ``algorithm`` hashes the
    files (the default SHA-256, or BLAKE3)."""
    digests = hashing.hash_files(
        files.values(),
        shard_size=shard_size,
        workers=workers,
        progress=progress,
        algorithm=algorithm,
    )
    return FileManifest.of(
        [
            FileEntry(
                path=name,
                size=digests[p].size,
                digest=digests[p].text,
                shard_size=digests[p].shard_size,
            )
            for name, p in files.items()
        ]
    )


def files_at(path: Path) -> dict[str, Path]:
    """The files a manifest of ``path`` covers: the file itself (by its name), or every
    regular file under the directory."""
    if path.is_dir():
        return hashing.list_files(path)
    if path.is_file():
        return {path.name: path}
    raise IntegrityError(f"{path} does not exist or is not a file or directory")


def manifest_of(
    path: Path,
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int | None = None,
    progress: Progress | None = None,
    algorithm: HashAlgorithm = "sha256",
) -> FileManifest:
    """The manifest of a file or of a directory tree (see :func:`hashing.list_files`)."""
    return manifest_of_files(
        files_at(path),
        shard_size=shard_size,
        workers=workers,
        progress=progress,
        algorithm=algorithm,
    )


def verify_manifest(
    manifest: FileManifest,
    path: Path,
    *,
    workers: int | None = None,
    hashed: FileManifest | None = None,
) -> None:
    """Check that ``path`` holds exactly the manifest's files with the same digests; raises
    IntegrityError naming the first difference. ``hashed``: the manifest of ``path`` the caller
    has just computed; a file it hashed the same way (algorithm, shard size) is not read again."""
    files = files_at(path)
    expected = {f.path: f for f in manifest.files}
    if missing := sorted(set(expected) - set(files)):
        raise IntegrityError(f"{path}: {missing[0]} is in the manifest but missing")
    if extra := sorted(set(files) - set(expected)):
        raise IntegrityError(f"{path}: {extra[0]} is not in the manifest")
    found: dict[str, tuple[int, str]] = {}
    known = {f.path: f for f in hashed.files} if hashed is not None else {}
    by_kind: dict[tuple[HashAlgorithm, int], list[str]] = {}
    plain = max([e.size for e in expected.values() if e.shard_size is None] + [1])
    for name, entry in expected.items():
        done = known.get(name)
        if (
            done is not None
            and done.algorithm == entry.algorithm
            and done.shard_size == entry.shard_size
        ):
            found[name] = (done.size, done.digest)
            continue
        # plain entries are hashed with a shard size that keeps them plain
        by_kind.setdefault((entry.algorithm, entry.shard_size or plain), []).append(name)
    for (algorithm, shard_size), names in by_kind.items():
        digests = hashing.hash_files(
            [files[n] for n in names], shard_size=shard_size, workers=workers, algorithm=algorithm
        )
        found.update({n: (digests[files[n]].size, digests[files[n]].text) for n in names})
    for name, entry in expected.items():
        size, digest = found[name]
        if size != entry.size or digest != entry.digest:
            raise IntegrityError(
                f"{path}: {name} has {size} bytes and digest {digest}, "
                f"the manifest says {entry.size} bytes and {entry.digest}"
            )
