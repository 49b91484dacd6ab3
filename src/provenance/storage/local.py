"""An embedded content-addressed blockstore on disk, for air-gapped sites and as a cache.

It builds the same UnixFS DAGs as ``ipfs add --cid-version=1`` (see :mod:`.unixfs`), so a file
has the same CID here as in kubo, and it moves DAGs to and from kubo as CAR v1 files
(``ipfs dag export`` / ``ipfs dag import``).

Layout of the folder::

    <root>/<xy>/<cid>     one file per block, named by its CIDv1 (base32); <xy> are the
                          next-to-last two characters of the name (as kubo's flatfs shards)
    <root>/pins/<cid>     an empty file per recursively pinned root

Every block read is hashed and checked against its CID before it is used, so a block altered
on disk raises :class:`~provenance.errors.IntegrityError`. Blocks are written to a temporary
name and renamed, so a crash never leaves a partial block under a CID; writes run on a
background thread while the next chunk is hashed. ``gc`` assumes no concurrent writer.

>>> store = LocalStore(Path(tmp) / "blocks")                      # doctest: +SKIP
>>> cid = store.put_bytes(b"hello")                                # doctest: +SKIP
>>> b"".join(store.cat(cid))                                       # doctest: +SKIP
b'hello'
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from provenance.errors import IntegrityError, StorageError
from provenance.storage import cid as cids
from provenance.storage import unixfs
from provenance.storage.car import CarReader, CarWriter, reading, writing
from provenance.storage.protocol import Progress, refuse_confidential
from provenance.untrusted import DEFAULT_LIMITS, Limits


class LocalStore:
    """A folder of verified blocks with pins; implements :class:`~.protocol.Storage`."""

    def __init__(
        self,
        root: Path,
        *,
        layout: unixfs.Layout = unixfs.DEFAULT_LAYOUT,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.root = root
        self.layout = layout
        self.limits = limits
        self._shards: dict[str, str] = {}

    @property
    def location(self) -> str:
        return f"the local store {self.root}"

    def close(self) -> None:
        """Nothing to release (for symmetry with :class:`~.kubo.Kubo`)."""

    def with_timeout(self, seconds: float) -> LocalStore:
        """Itself: a read here never waits on the network, it finds a block or fails at once."""
        return self

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ blocks
    def _key(self, cid: bytes) -> str:
        return cids.to_str(cids.to_v1(cid))

    def _block_path(self, cid: bytes) -> Path:
        key = self._key(cid)
        return self.root / key[-3:-1] / key

    def _folder(self, shard: str) -> str:
        folder = self._shards.get(shard)
        if folder is None:
            folder = str(self.root / shard)
            os.makedirs(folder, exist_ok=True)
            self._shards[shard] = folder
        return folder

    def _write(self, cid: bytes, block: bytes) -> None:
        # the hot path of every put: plain string paths, one stat, one create, one rename
        key = self._key(cid)
        try:
            path = f"{self._folder(key[-3:-1])}/{key}"
            if os.path.exists(path):
                return
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                view = memoryview(block)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            raise StorageError(f"cannot write block {key} to {self.location}: {exc}") from exc

    def _present(self, cid: bytes) -> bool:
        return self._block_path(cid).is_file()

    def block(self, cid: bytes) -> bytes:
        """The verified bytes of one block (binary CID)."""
        path = self._block_path(cid)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StorageError(f"block {cids.to_str(cid)} is not in {self.location}") from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc}") from exc
        cids.verify_block(cid, data, self.location)
        return data

    def _missing(self, root: bytes) -> bytes | None:
        """The first block of the DAG under ``root`` that is not here, or None. Sizes are
        checked on the way: a file DAG whose nodes or leaves lie about their sizes raises
        IntegrityError."""
        seen: set[tuple[bytes, int | None]] = {(root, None)}
        stack: list[tuple[bytes, int | None]] = [(root, None)]
        while stack:
            cid, expected = stack.pop()
            if cids.codec(cid) == cids.RAW:
                if not self._present(cid):
                    return cid
                size = self._block_path(cid).stat().st_size
                if expected is not None and size != expected:
                    raise IntegrityError(
                        f"malformed UnixFS file: leaf {cids.to_str(cid)} has {size} bytes, its "
                        f"parent says {expected}"
                    )
                continue
            if not self._present(cid):
                return cid
            for child in unixfs.sized_links(cid, self.block(cid), expected):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return None

    # ------------------------------------------------------------ put
    def put_bytes(self, data: bytes, *, pin: bool = True, confidential: bool = False) -> str:
        refuse_confidential(confidential, f"{len(data)} bytes", self.location)
        with _Writer(self._write) as sink:
            root = unixfs.build_bytes(data, sink, self.layout).cid
        return self._added(root, pin)

    def put_stream(
        self,
        stream: BinaryIO,
        *,
        pin: bool = True,
        confidential: bool = False,
        progress: Progress | None = None,
    ) -> str:
        refuse_confidential(confidential, _name(stream), self.location)
        with _Writer(self._write) as sink:
            builder = unixfs.FileBuilder(sink, self.layout)
            while chunk := stream.read(self.layout.chunk_size):
                builder.write(chunk)
                if progress is not None:
                    progress(len(chunk))
            root = builder.finish().cid
        return self._added(root, pin)

    def put_path(
        self,
        path: Path,
        *,
        pin: bool = True,
        confidential: bool = False,
        progress: Progress | None = None,
    ) -> str:
        refuse_confidential(confidential, str(path), self.location)
        with _Writer(self._write) as sink:
            root = unixfs.build_path(path, sink, layout=self.layout, progress=progress).cid
        return self._added(root, pin)

    def _added(self, root: bytes, pin: bool) -> str:
        if pin:
            self._pin_file(root).touch()
        return cids.to_str(root)

    # ------------------------------------------------------------ get
    def cat(self, cid: str, *, progress: Progress | None = None) -> Iterator[bytes]:
        for chunk in unixfs.read_file(self.block, cids.parse(cid)):
            if progress is not None:
                progress(len(chunk))
            yield chunk

    def get_bytes(self, cid: str, *, max_size: int = 64 << 20) -> bytes:
        return unixfs.gather(self.cat(cid), cid, max_size)

    def get_path(self, cid: str, dest: Path, *, progress: Progress | None = None) -> None:
        unixfs.write_tree(self.block, cids.parse(cid), dest, progress, limits=self.limits)

    def has(self, cid: str) -> bool:
        return self._missing(cids.parse(cid)) is None

    # ------------------------------------------------------------ pins
    def _pins_dir(self) -> Path:
        path = self.root / "pins"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _pin_file(self, cid: bytes) -> Path:
        return self._pins_dir() / self._key(cid)

    def pin(self, cid: str) -> None:
        root = cids.parse(cid)
        missing = self._missing(root)
        if missing is not None:
            raise StorageError(
                f"cannot pin {cid}: block {cids.to_str(missing)} is not in {self.location}"
            )
        self._pin_file(root).touch()

    def unpin(self, cid: str) -> None:
        try:
            self._pin_file(cids.parse(cid)).unlink()
        except FileNotFoundError:
            raise StorageError(f"{cid} is not pinned in {self.location}") from None

    def pins(self) -> frozenset[str]:
        return frozenset(p.name for p in self._pins_dir().iterdir() if not p.name.startswith("."))

    def gc(self) -> int:
        """Delete every block not reachable from a pin; returns how many were deleted."""
        keep: set[str] = set()
        for pin in self.pins():
            for cid, _ in unixfs.walk_blocks(self._walkable, cids.parse(pin)):
                keep.add(self._key(cid))
        removed = 0
        for shard in self.root.iterdir():
            if len(shard.name) != 2 or not shard.is_dir():
                continue
            for path in shard.iterdir():
                if path.name not in keep and not path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    def _walkable(self, cid: bytes) -> bytes:
        # gc needs the links of dag-pb nodes only; raw leaves need not be read
        return b"" if cids.codec(cid) == cids.RAW else self.block(cid)

    # ------------------------------------------------------------ CAR
    def export_car(
        self, cid: str, out: BinaryIO | Path, *, progress: Progress | None = None
    ) -> None:
        root = cids.parse(cid)
        with writing(out) as f:
            writer = CarWriter(f, [root])
            for block_cid, block in unixfs.walk_blocks(self.block, root):
                n = writer.add(block_cid, block)
                if progress is not None:
                    progress(n)

    def import_car(
        self, car: BinaryIO | Path, *, pin: bool = True, progress: Progress | None = None
    ) -> tuple[str, ...]:
        with reading(car) as (stream, source):
            reader = CarReader(stream, source)
            with _Writer(self._write) as sink:
                position = reader.position
                for cid, block in reader:
                    sink(cid, block)
                    if progress is not None:
                        progress(reader.position - position)
                    position = reader.position
        if pin:
            for root in reader.roots:
                missing = self._missing(root)
                if missing is not None:
                    raise StorageError(
                        f"CAR from {source} lacks block {cids.to_str(missing)} of its root "
                        f"{cids.to_str(root)}; imported its blocks, pinned nothing"
                    )
            for root in reader.roots:
                self._pin_file(root).touch()
        return tuple(cids.to_str(cids.to_v1(root)) for root in reader.roots)


class _Writer:
    """A block sink that writes on one background thread, at most a few blocks behind."""

    def __init__(self, write: unixfs.BlockSink, depth: int = 8) -> None:
        self._write = write
        self._depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blocks")
        self._pending: deque[Future[None]] = deque()

    def __enter__(self) -> _Writer:
        return self

    def __call__(self, cid: bytes, block: bytes) -> None:
        self._pending.append(self._pool.submit(self._write, cid, block))
        if len(self._pending) > self._depth:
            self._pending.popleft().result()

    def __exit__(self, *exc: object) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True)


def _name(stream: BinaryIO) -> str:
    return str(getattr(stream, "name", "a stream"))
