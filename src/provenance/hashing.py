"""Digests of bytes, files and directories; Merkle trees and inclusion proofs.

Pure: the standard library only (and, for BLAKE3 alone, the optional ``blake3`` package). A
digest is 32 raw bytes inside and ``sha256:<hex>`` at the edges (:func:`format_digest`,
:func:`parse_digest`).

**Files.** A file is read in chunks into one reused buffer (never whole in memory); hashlib's
SHA-256 releases the GIL on large buffers, so threads hash several files, and several shards of
one large file, in parallel. The digest of a file depends only on its bytes and the shard size:

- a file of at most ``shard_size`` bytes (default 64 MiB): its plain SHA-256, the same as
  ``openssl dgst -sha256`` or ``sha256sum``;
- a larger file: the SHA-256 of the concatenated SHA-256 digests of its ``shard_size`` shards
  (the last one shorter), and the manifest records ``shard_size``. With shell tools::

      split -b 64M --numeric-suffixes model.bin s.
      for s in s.*; do openssl dgst -sha256 -binary "$s"; done | openssl dgst -sha256

**BLAKE3** (``algorithm="blake3"``, optional: the ``blake3`` package, the ``blake3`` extra) hashes
each file whole, never sharded: BLAKE3 is a tree hash itself, so its digest (``b3sum``'s) is the
same for any number of threads. It is named in the digest text, ``blake3:<hex>``, so a verifier
knows which function to run; OpenSSF model_signing supports it too. Threads hash several files
at once, or one file with BLAKE3's own threads. Files are read, not memory-mapped (model_signing
maps them, which saves the copy, about 0.08 CPU s/GB): a mapped file that is truncated meanwhile
kills the process with SIGBUS, where a read raises IntegrityError.

**Merkle trees** (one definition for the whole project, RFC 6962 / RFC 9162 Merkle Tree Hash):
``leaf = SHA-256(0x00 || data)``, ``node = SHA-256(0x01 || left || right)``; level by level,
an odd last node is promoted unchanged (this is exactly RFC 6962's split at the largest power
of two); the root of no leaves is ``SHA-256("")``. Position matters: reordering leaves changes
the root, and a proof proves a leaf *at an index* of a tree *of a size*. The domain prefixes
keep a leaf from passing for a node (second-preimage). OpenZeppelin's sorted-pair keccak tree
is deliberately not used here: sorting pairs throws the order away, and training rows are
proven off chain (only the root is anchored); a keccak variant for on-chain output batches
belongs to the attestation contract.

>>> format_digest(merkle_root([b"a", b"b", b"c"]))[:23]
'sha256:36642e73c2540ab1'
>>> proof = merkle_proof([b"a", b"b", b"c"], 2)
>>> verify_merkle_proof(b"c", proof, merkle_root([b"a", b"b", b"c"]))
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from provenance.errors import CertificateError, IntegrityError

Progress = Callable[[int], None]
"""Called with the number of bytes just hashed (from worker threads); for progress bars."""

DIGEST_PREFIX = "sha256:"
CHUNK_SIZE = 1 << 20
BLAKE3_CHUNK = 4 << 20
"""BLAKE3's read size: the blake3 package holds the GIL on updates of up to 1 MiB."""
BLAKE3_ALONE_CHUNK = 8 << 20
"""Read size when one file is BLAKE3-hashed with all threads: large enough to split."""
DEFAULT_SHARD_SIZE = 64 << 20
EMPTY_ROOT = hashlib.sha256(b"").digest()

HashAlgorithm = Literal["sha256", "blake3"]
ALGORITHMS: tuple[HashAlgorithm, ...] = ("sha256", "blake3")

_LEAF = b"\x00"
_NODE = b"\x01"


def format_digest(digest: bytes) -> str:
    """``sha256:<64 hex digits>``."""
    if len(digest) != 32:
        raise CertificateError(f"a SHA-256 digest has 32 bytes, got {len(digest)}")
    return DIGEST_PREFIX + digest.hex()


def parse_digest(text: str, what: str = "digest") -> bytes:
    """The 32 bytes of a ``sha256:<hex>`` string (lower or upper case hex)."""
    if not text.startswith(DIGEST_PREFIX):
        raise CertificateError(f"{what} {text!r} is not of the form sha256:<64 hex digits>")
    try:
        raw = bytes.fromhex(text[len(DIGEST_PREFIX) :])
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise CertificateError(f"{what} {text!r} is not of the form sha256:<64 hex digits>")
    return raw


def sha256(data: bytes | bytearray | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


def hash_stream(stream: BinaryIO, *, progress: Progress | None = None) -> bytes:
    """SHA-256 of what ``stream`` yields until EOF, in constant memory."""
    h = hashlib.sha256()
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    while n := stream.readinto(view):  # type: ignore[attr-defined]
        h.update(view[:n])
        if progress is not None:
            progress(n)
    return h.digest()


# -- files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileDigest:
    """The digest of one file: plain SHA-256 when ``shard_size`` is None, else the digest of the
    concatenated shard digests (``shards``, in order); or its BLAKE3 (``algorithm``)."""

    size: int
    digest: bytes
    shard_size: int | None = None
    shards: tuple[bytes, ...] = ()
    algorithm: HashAlgorithm = "sha256"

    @property
    def text(self) -> str:
        """``<algorithm>:<hex>``, as a manifest records it (``sha256:<hex>`` by default)."""
        return f"{self.algorithm}:{self.digest.hex()}"

    def __str__(self) -> str:
        return self.text


def check_algorithm(algorithm: str) -> HashAlgorithm:
    """``algorithm`` if it is one of :data:`ALGORITHMS`; CertificateError otherwise."""
    for known in ALGORITHMS:
        if algorithm == known:
            return known
    raise CertificateError(
        f"unknown file hash algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})"
    )


def _blake3_module() -> Any:
    try:
        import blake3
    except ImportError as exc:
        raise CertificateError(
            "BLAKE3 needs the blake3 package: pip install 'provenance[blake3]'"
        ) from exc
    return blake3


def shard_digest_root(shards: Sequence[bytes]) -> bytes:
    """A large file's digest from its shard digests: SHA-256 of their concatenation."""
    return hashlib.sha256(b"".join(shards)).digest()


_buffers = threading.local()


def _buffer(size: int = CHUNK_SIZE) -> memoryview:
    """This thread's read buffer of ``size`` bytes, reused from file to file (it stays in the
    core's cache, and nothing is allocated per chunk)."""
    view: memoryview | None = getattr(_buffers, "view", None)
    if view is None or len(view) != size:
        view = memoryview(bytearray(size))
        _buffers.view = view
    return view


def _hash_range(
    path: Path,
    offset: int,
    length: int,
    progress: Progress | None,
    hasher: Any = None,
    chunk: int = CHUNK_SIZE,
) -> bytes:
    """SHA-256 (or ``hasher``'s digest) of ``length`` bytes of ``path`` from ``offset``,
    through a per-thread buffer of ``chunk`` bytes."""
    h = hashlib.sha256() if hasher is None else hasher
    view = _buffer(chunk)
    try:
        with open(path, "rb", buffering=0) as f:
            if offset:
                f.seek(offset)
            remaining = length
            while remaining:
                n = f.readinto(view[: min(chunk, remaining)])
                if not n:
                    raise IntegrityError(
                        f"{path} shrank while it was hashed (expected {offset + length} bytes)"
                    )
                h.update(view[:n])
                remaining -= n
                if progress is not None:
                    progress(n)
    except OSError as exc:
        raise IntegrityError(f"cannot read {path}: {exc.strerror or exc}") from exc
    digest: bytes = h.digest()
    return digest


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise IntegrityError(f"cannot read {path}: {exc.strerror or exc}") from exc


def hash_files(
    paths: Iterable[Path],
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int | None = None,
    progress: Progress | None = None,
    algorithm: HashAlgorithm = "sha256",
) -> dict[Path, FileDigest]:
    """Digests of many files, hashed in parallel across files and across shards of large files
    (BLAKE3: across files, or inside one file by BLAKE3's own threads).

    ``workers`` threads (default: the number of CPUs); 1 hashes everything in this thread.
    The size is taken first; a file that shrinks while being hashed raises IntegrityError.
    """
    if shard_size <= 0:
        raise CertificateError(f"shard size must be positive, got {shard_size}")
    check_algorithm(algorithm)
    sizes = {p: _file_size(p) for p in dict.fromkeys(paths)}
    threads = workers if workers is not None else (os.cpu_count() or 1)
    if algorithm == "blake3":
        return _blake3_files(sizes, threads, progress)
    units: list[tuple[Path, int, int]] = []
    for path, size in sizes.items():
        if size <= shard_size:
            units.append((path, 0, size))
        else:
            units.extend(
                (path, off, min(shard_size, size - off)) for off in range(0, size, shard_size)
            )
    done = _run(units, threads, lambda p, o, n: _hash_range(p, o, n, progress))
    result: dict[Path, FileDigest] = {}
    cursor = 0
    for path, size in sizes.items():
        if size <= shard_size:
            result[path] = FileDigest(size, done[cursor])
            cursor += 1
        else:
            count = -(-size // shard_size)
            shards = tuple(done[cursor : cursor + count])
            cursor += count
            result[path] = FileDigest(size, shard_digest_root(shards), shard_size, shards)
    return result


def _run(
    units: Sequence[tuple[Path, int, int]],
    threads: int,
    work: Callable[[Path, int, int], bytes],
) -> list[bytes]:
    """``work`` over ``(path, offset, length)`` units on ``threads`` threads, results in order."""
    if threads <= 1 or len(units) <= 1:
        return [work(*u) for u in units]
    # biggest units first, so the last ones to finish are small
    order = sorted(range(len(units)), key=lambda i: -units[i][2])
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hash") as pool:
        futures: dict[int, Future[bytes]] = {i: pool.submit(work, *units[i]) for i in order}
        return [futures[i].result() for i in range(len(units))]


def _blake3_files(
    sizes: Mapping[Path, int], threads: int, progress: Progress | None
) -> dict[Path, FileDigest]:
    """BLAKE3 of whole files: one thread each when there are enough files to keep ``threads``
    busy; else one after another, each with BLAKE3's own ``threads`` threads."""
    blake3 = _blake3_module()
    units = [(p, 0, n) for p, n in sizes.items()]
    big = sum(1 for n in sizes.values() if n > BLAKE3_ALONE_CHUNK)
    if threads > 1 and big < threads:
        done = [
            _blake3_alone(p, n, blake3.blake3(max_threads=threads), progress) for p, _, n in units
        ]
    else:
        done = _run(
            units,
            threads,
            lambda p, o, n: _hash_range(p, o, n, progress, blake3.blake3(), BLAKE3_CHUNK),
        )
    return {
        p: FileDigest(n, d, algorithm="blake3") for (p, _, n), d in zip(units, done, strict=True)
    }


def _blake3_alone(path: Path, size: int, hasher: Any, progress: Progress | None) -> bytes:
    """BLAKE3 of one file with its own threads, the next chunk read while this one is hashed
    (two buffers, one reader thread: both release the GIL)."""
    buffers = (memoryview(bytearray(BLAKE3_ALONE_CHUNK)), memoryview(bytearray(BLAKE3_ALONE_CHUNK)))
    try:
        with (
            open(path, "rb", buffering=0) as f,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="read") as reader,
        ):
            remaining, turn = size, 0
            pending = reader.submit(f.readinto, buffers[0][: min(BLAKE3_ALONE_CHUNK, size)])
            while remaining:
                n = pending.result()
                if not n:
                    raise IntegrityError(
                        f"{path} shrank while it was hashed (expected {size} bytes)"
                    )
                remaining -= n
                if remaining:
                    ahead = buffers[1 - turn][: min(BLAKE3_ALONE_CHUNK, remaining)]
                    pending = reader.submit(f.readinto, ahead)
                hasher.update(buffers[turn][:n])
                if progress is not None:
                    progress(n)
                turn = 1 - turn
    except OSError as exc:
        raise IntegrityError(f"cannot read {path}: {exc.strerror or exc}") from exc
    digest: bytes = hasher.digest()
    return digest


def hash_file(
    path: Path,
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int | None = None,
    progress: Progress | None = None,
    algorithm: HashAlgorithm = "sha256",
) -> FileDigest:
    """The digest of one file (see the module docstring for large files)."""
    return hash_files(
        [path], shard_size=shard_size, workers=workers, progress=progress, algorithm=algorithm
    )[path]


def list_files(root: Path) -> dict[str, Path]:
    """The regular files under directory ``root`` by POSIX relative path, sorted by the UTF-8
    bytes of the path. Symbolic links to files are followed (their target's bytes are hashed
    under the link's path); links to directories are not descended; a dangling link, a FIFO or
    a socket raises IntegrityError."""
    found: dict[str, Path] = {}
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        base = Path(folder)
        for name in filenames:
            path = base / name
            if not path.is_file():
                raise IntegrityError(f"{path} is not a regular file (dangling link, FIFO, socket)")
            rel = path.relative_to(root).as_posix()
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                raise IntegrityError(f"{path!r}: file names must be UTF-8") from None
            found[rel] = path
    return dict(sorted(found.items(), key=lambda kv: kv[0].encode()))


def total_size(paths: Mapping[str, Path] | Iterable[Path]) -> int:
    """The summed size of files (for deciding whether to show a progress bar)."""
    values = paths.values() if isinstance(paths, Mapping) else paths
    return sum(_file_size(p) for p in values)


# -- Merkle trees -----------------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``."""
    return hashlib.sha256(_LEAF + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(_NODE + left + right).digest()


class MerkleBuilder:
    """The root of a stream of leaves in O(log n) memory.

    >>> b = MerkleBuilder()
    >>> for row in (b"a", b"b", b"c"):
    ...     b.add(row)
    >>> b.root() == merkle_root([b"a", b"b", b"c"])
    True
    """

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (height, hash), heights strictly decreasing
        self.size = 0

    def add(self, data: bytes) -> None:
        self.add_hash(leaf_hash(data))

    def add_hash(self, leaf: bytes) -> None:
        """Add a leaf by its leaf hash (``leaf_hash(data)``)."""
        height, value = 0, leaf
        while self._stack and self._stack[-1][0] == height:
            _, left = self._stack.pop()
            value = node_hash(left, value)
            height += 1
        self._stack.append((height, value))
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        value = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            value = node_hash(left, value)
        return value


def merkle_root_of_hashes(leaves: Iterable[bytes]) -> bytes:
    """The root over leaf hashes."""
    builder = MerkleBuilder()
    for leaf in leaves:
        builder.add_hash(leaf)
    return builder.root()


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    """The root over leaf data."""
    return merkle_root_of_hashes(leaf_hash(d) for d in leaves)


@dataclass(frozen=True)
class MerkleProof:
    """An inclusion proof: the leaf at ``index`` of a tree of ``size`` leaves; ``path`` lists the
    sibling hashes from the leaf up (a promoted node has no sibling at its level)."""

    index: int
    size: int
    path: tuple[bytes, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "index": self.index,
            "size": self.size,
            "path": [format_digest(p) for p in self.path],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> MerkleProof:
        try:
            index, size, path = data["index"], data["size"], data["path"]
        except KeyError as exc:
            raise CertificateError(f"Merkle proof lacks {exc.args[0]!r}") from None
        if not isinstance(index, int) or not isinstance(size, int) or not isinstance(path, list):
            raise CertificateError("Merkle proof needs an integer index and size and a path list")
        return cls(index, size, tuple(parse_digest(str(p), "proof hash") for p in path))


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
        if len(below) % 2:
            above.append(below[-1])
        levels.append(above)
    return levels


def merkle_proof_of_hashes(leaves: Sequence[bytes], index: int) -> MerkleProof:
    """The inclusion proof of leaf ``index`` in the tree over these leaf hashes."""
    if not 0 <= index < len(leaves):
        raise CertificateError(f"leaf index {index} is outside a tree of {len(leaves)} leaves")
    path: list[bytes] = []
    i = index
    for level in _levels(leaves)[:-1]:
        sibling = i ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        i //= 2
    return MerkleProof(index, len(leaves), tuple(path))


def merkle_proof(leaves: Sequence[bytes], index: int) -> MerkleProof:
    """The inclusion proof of ``leaves[index]`` (leaf data) in ``merkle_root(leaves)``."""
    return merkle_proof_of_hashes([leaf_hash(d) for d in leaves], index)


def root_from_proof(leaf: bytes, proof: MerkleProof) -> bytes:
    """The root a proof leads to from a leaf hash; raises CertificateError for a proof whose
    path length does not fit its index and size."""
    if not 0 <= proof.index < proof.size:
        raise CertificateError(
            f"proof index {proof.index} is outside a tree of {proof.size} leaves"
        )
    value, i, n = leaf, proof.index, proof.size
    path = iter(proof.path)
    used = 0
    while n > 1:
        if i % 2 == 1 or i + 1 < n:
            sibling = next(path, None)
            if sibling is None:
                raise CertificateError(
                    f"proof path too short for leaf {proof.index} of {proof.size}"
                )
            used += 1
            value = node_hash(sibling, value) if i % 2 == 1 else node_hash(value, sibling)
        i //= 2
        n = (n + 1) // 2
    if used != len(proof.path):
        raise CertificateError(f"proof path too long for leaf {proof.index} of {proof.size}")
    return value


def verify_merkle_proof(
    leaf: bytes, proof: MerkleProof, root: bytes, *, hashed: bool = False
) -> None:
    """Check that ``leaf`` (data, or its leaf hash with ``hashed=True``) is leaf ``proof.index``
    of the tree of ``proof.size`` leaves with this root; raises IntegrityError if not."""
    found = root_from_proof(leaf if hashed else leaf_hash(leaf), proof)
    if found != root:
        raise IntegrityError(
            f"Merkle proof of leaf {proof.index} of {proof.size} leads to {format_digest(found)}, "
            f"not to the root {format_digest(root)}"
        )
