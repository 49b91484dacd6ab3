"""File manifests: per-file digests (:mod:`provenance.hashing`: plain SHA-256, or a shard-list
digest for files over the shard size) of a file or a directory tree, sorted by path, and a
Merkle root whose leaves are the RFC 8785 canonical JSON of each entry
``{"digest", "path", "shard_size", "size"}``. The root is the model digest anchored on chain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from provenance import hashing
from provenance.errors import IntegrityError
from provenance.hashing import DEFAULT_SHARD_SIZE, Progress, format_digest, merkle_root
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


class FileEntry(Frozen):
    """One file: POSIX path relative to the manifest's root, size, digest (plain SHA-256, or the
    shard-list digest when ``shard_size`` is set)."""

    path: Annotated[str, Field(min_length=1)]
    size: Annotated[int, Field(ge=0)]
    digest: Digest
    shard_size: Annotated[int, Field(gt=0)] | None = None

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
) -> FileManifest:
    """The manifest of named files (name: POSIX path as recorded)."""
    digests = hashing.hash_files(
        files.values(), shard_size=shard_size, workers=workers, progress=progress
    )
    return FileManifest.of(
        [
            FileEntry(
                path=name,
                size=digests[p].size,
                digest=format_digest(digests[p].digest),
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
) -> FileManifest:
    """The manifest of a file or of a directory tree (see :func:`hashing.list_files`)."""
    return manifest_of_files(
        files_at(path), shard_size=shard_size, workers=workers, progress=progress
    )


def verify_manifest(manifest: FileManifest, path: Path, *, workers: int | None = None) -> None:
    """Check that ``path`` holds exactly the manifest's files with the same digests; raises
    IntegrityError naming the first difference."""
    files = files_at(path)
    expected = {f.path: f for f in manifest.files}
    if missing := sorted(set(expected) - set(files)):
        raise IntegrityError(f"{path}: {missing[0]} is in the manifest but missing")
    if extra := sorted(set(files) - set(expected)):
        raise IntegrityError(f"{path}: {extra[0]} is not in the manifest")
    found = {}
    by_shard: dict[int, list[str]] = {}
    plain = max([e.size for e in expected.values() if e.shard_size is None] + [1])
    for name, entry in expected.items():
        # plain entries are hashed with a shard size that keeps them plain
        by_shard.setdefault(entry.shard_size or plain, []).append(name)
    for shard_size, names in by_shard.items():
        digests = hashing.hash_files(
            [files[n] for n in names], shard_size=shard_size, workers=workers
        )
        found.update({n: digests[files[n]] for n in names})
    for name, entry in expected.items():
        got = found[name]
        if got.size != entry.size or format_digest(got.digest) != entry.digest:
            raise IntegrityError(
                f"{path}: {name} has {got.size} bytes and digest {format_digest(got.digest)}, "
                f"the manifest says {entry.size} bytes and {entry.digest}"
            )
