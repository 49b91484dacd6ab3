"""CAR (content-addressed archive) files: a streaming v1 writer, a streaming v1/v2 reader that
verifies every block, and a block source that serves a DAG walk from a CAR stream.

A CAR v1 is a varint-framed DAG-CBOR header ``{roots: [CID], version: 1}`` followed by
varint-framed sections, each a binary CID and the block's bytes. The header is encoded and
decoded with ``libipld``'s DAG-CBOR codec and section CIDs are validated with ``libipld``; the
framing is read here because ``libipld.decode_car`` needs the whole file in memory and decodes
every block as DAG-CBOR, while UnixFS blocks are dag-pb and raw and files are large. A CAR v2
is a fixed header that points at an inner CAR v1, which is what is read.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import libipld

from provenance.errors import IntegrityError, StorageError
from provenance.storage import cid as cids
from provenance.storage.dagpb import varint
from provenance.untrusted import UntrustedInputError, cbor_depth_check

MAX_HEADER = 1 << 20
MAX_SECTION = 8 << 20  # kubo's blocks are at most 2 MiB (bitswap), a CID is a few dozen bytes
_V2_PRAGMA = bytes.fromhex("0aa16776657273696f6e02")


def encode_header(roots: Sequence[bytes]) -> bytes:
    """The framed CAR v1 header for these root CIDs (binary)."""
    header = libipld.encode_dag_cbor({"roots": list(roots), "version": 1})
    return varint(len(header)) + header


class CarWriter:
    """Writes a CAR v1 to a binary stream: the header at once, then one section per block."""

    def __init__(self, out: BinaryIO, roots: Sequence[bytes]) -> None:
        self._out = out
        self.written = 0
        self._write(encode_header(roots))

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self.written += len(data)

    def add(self, cid: bytes, block: bytes) -> int:
        """Append a block; returns the bytes written for it."""
        before = self.written
        self._write(varint(len(cid) + len(block)) + cid)
        self._write(block)
        return self.written - before


@contextlib.contextmanager
def writing(out: BinaryIO | Path) -> Iterator[BinaryIO]:
    """``out`` itself, or a new file at that path that appears only when writing succeeds."""
    if not isinstance(out, Path):
        yield out
        return
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            yield f
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {out}: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def reading(car: BinaryIO | Path) -> Iterator[tuple[BinaryIO, str]]:
    """``car`` itself (named after its ``name``), or the file at that path, opened."""
    if not isinstance(car, Path):
        yield car, str(getattr(car, "name", "CAR stream"))
        return
    try:
        f = open(car, "rb")  # noqa: SIM115 - closed below, errors wrapped
    except OSError as exc:
        raise StorageError(f"cannot read {car}: {exc}") from exc
    with f:
        yield f, str(car)


def car_chunks(roots: Sequence[bytes], blocks: Iterable[tuple[bytes, bytes]]) -> Iterator[bytes]:
    """A CAR v1 as an iterator of byte strings (for streaming uploads)."""
    yield encode_header(roots)
    for cid, block in blocks:
        yield varint(len(cid) + len(block)) + cid
        yield block


class CarReader:
    """Reads a CAR v1 or v2 from a binary stream; iterating yields (binary CID, block) pairs,
    each verified against its CID. ``source`` names the stream in error messages."""

    def __init__(self, stream: BinaryIO, source: str) -> None:
        self._stream = stream
        self.source = source
        self._remaining: int | None = None  # bytes left in a CAR v2's inner CAR v1
        self.position = 0  # bytes read so far
        self.roots = self._header()

    def _read(self, n: int) -> bytes:
        if self._remaining is not None:
            n = min(n, self._remaining)
        parts: list[bytes] = []
        got = 0
        while got < n:
            part = self._stream.read(n - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if self._remaining is not None:
            self._remaining -= len(data)
        self.position += len(data)
        return data

    def _exact(self, n: int) -> bytes:
        data = self._read(n)
        if len(data) != n:
            raise IntegrityError(f"CAR from {self.source} is truncated")
        return data

    def _varint(self) -> int | None:
        """The next varint, or None at a clean end of the stream."""
        result = shift = 0
        while True:
            byte = self._read(1)
            if not byte:
                if shift:
                    raise IntegrityError(f"CAR from {self.source} is truncated")
                return None
            result |= (byte[0] & 0x7F) << shift
            if not byte[0] & 0x80:
                return result
            shift += 7
            if shift > 63:
                raise IntegrityError(f"CAR from {self.source} has a malformed varint")

    def _header(self) -> tuple[bytes, ...]:
        length = self._varint()
        if length is None:
            raise IntegrityError(f"CAR from {self.source} is empty")
        if length > MAX_HEADER:
            raise IntegrityError(f"CAR from {self.source} has an oversized header")
        raw = self._exact(length)
        if varint(length) + raw == _V2_PRAGMA:
            # CAR v2: 16 bytes of characteristics, then data offset, data size, index offset
            _, offset, size, _ = struct.unpack("<16sQQQ", self._exact(40))
            skip = offset - len(_V2_PRAGMA) - 40
            if skip < 0:
                raise IntegrityError(f"CAR v2 from {self.source} has a bad data offset")
            while skip:
                skip -= len(self._exact(min(skip, 1 << 20)))
            self._remaining = size
            length = self._varint()
            if length is None or length > MAX_HEADER:
                raise IntegrityError(f"CAR v2 from {self.source} has no valid inner CAR v1")
            raw = self._exact(length)
        try:
            cbor_depth_check(raw, 8, "DAG-CBOR")
            header = libipld.decode_dag_cbor(raw)
        except (UntrustedInputError, ValueError) as exc:
            raise IntegrityError(f"CAR from {self.source} has a malformed header: {exc}") from exc
        if not isinstance(header, dict) or header.get("version") != 1:
            raise IntegrityError(f"CAR from {self.source} is not a CAR v1 or v2")
        roots = header.get("roots")
        if not isinstance(roots, list) or not all(isinstance(r, bytes) for r in roots):
            raise IntegrityError(f"CAR from {self.source} has malformed roots")
        return tuple(roots)

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        while True:
            length = self._varint()
            if length is None:
                return
            if length == 0 or length > MAX_SECTION:
                raise IntegrityError(f"CAR from {self.source} has a section of {length} bytes")
            section = self._exact(length)
            n = _cid_length(section, self.source)
            cid, block = section[:n], section[n:]
            cids.verify_block(cid, block, self.source)
            yield cid, block


def _cid_length(section: bytes, source: str) -> int:
    """Length of the binary CID at the start of a CAR section."""
    if section[:2] == b"\x12\x20":  # CIDv0: a bare sha2-256 multihash
        n = 34
    else:
        pos = 0
        values = []
        for _ in range(4):  # version, codec, hash function, digest length
            value = shift = 0
            while True:
                if pos >= len(section):
                    raise IntegrityError(f"CAR from {source} has a malformed CID")
                byte = section[pos]
                pos += 1
                value |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
            values.append(value)
        if values[0] != 1:
            raise IntegrityError(f"CAR from {source} has a CID of version {values[0]}")
        n = pos + values[3]
    if n > len(section):
        raise IntegrityError(f"CAR from {source} has a malformed CID")
    try:
        libipld.decode_cid(section[:n])
    except ValueError as exc:
        raise IntegrityError(f"CAR from {source} has a malformed CID: {exc}") from exc
    return n


class ChunkStream(io.RawIOBase):
    """A readable binary stream over an iterator of byte strings (an HTTP response body)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def chunk_reader(chunks: Iterator[bytes], buffer_size: int = 1 << 20) -> BinaryIO:
    return io.BufferedReader(ChunkStream(chunks), buffer_size)


class CarBlockSource:
    """Serves a depth-first DAG walk from a CAR stream, falling back to single-block fetches.

    The stream is expected in the walk's order (what ``ipfs dag export`` and trustless gateways
    send): each requested block is the next section. A block the stream does not bring in
    order (a duplicate it sent once already, or anything after the stream ended early) is
    fetched with ``fallback`` and verified here. Every block handed out is verified; a few MiB
    of recently seen blocks are kept so repeated blocks (e.g. runs of zeros) cost nothing.
    """

    def __init__(
        self,
        reader: CarReader,
        fallback: Callable[[bytes], bytes],
        source: str,
        *,
        cache_bytes: int = 16 << 20,
        ahead_bytes: int = 64 << 20,
    ) -> None:
        self._sections = iter(reader)
        self._fallback = fallback
        self._source = source
        self._seen: set[bytes] = set()
        self._ended = False
        self._recent: OrderedDict[bytes, bytes] = OrderedDict()
        self._recent_bytes = 0
        self._cache_bytes = cache_bytes
        self._ahead: dict[bytes, bytes] = {}
        self._ahead_bytes = 0
        self._ahead_limit = ahead_bytes

    def __call__(self, cid: bytes) -> bytes:
        if cid in self._ahead:
            block = self._ahead.pop(cid)
            self._ahead_bytes -= len(block)
            return self._remember(cid, block)
        if cid in self._recent:
            self._recent.move_to_end(cid)
            return self._recent[cid]
        if cid not in self._seen and not self._ended:
            for got, block in self._sections:
                if got == cid:
                    self._seen.add(got)
                    return self._remember(cid, block)
                if got in self._seen:  # a repeat of a block handed out before: not needed
                    continue
                self._seen.add(got)
                self._ahead[got] = block
                self._ahead_bytes += len(block)
                if self._ahead_bytes > self._ahead_limit:
                    raise StorageError(
                        f"{self._source} sent blocks out of depth-first order "
                        f"(waiting for {cids.to_str(cid)})"
                    )
            self._ended = True
        block = self._fallback(cid)
        cids.verify_block(cid, block, self._source)
        return self._remember(cid, block)

    def _remember(self, cid: bytes, block: bytes) -> bytes:
        if len(block) <= self._cache_bytes:
            self._recent[cid] = block
            self._recent_bytes += len(block)
            while self._recent_bytes > self._cache_bytes:
                _, old = self._recent.popitem(last=False)
                self._recent_bytes -= len(old)
        return block
