"""dag-pb nodes (``PBNode``, ``PBLink``) and UnixFS ``Data`` messages, encoded by hand.

No protobuf library: between them the messages have a handful of fields, and dag-pb requires
one canonical byte form (links before data, each message's fields in number order, no unknown
fields) that generic protobuf encoders do not promise. Only what UnixFS files and basic
directories need is written here: file nodes (type, filesize, blocksizes), directory nodes
(type only) and their links. HAMT-sharded directories, symlinks, and mode/mtime metadata are
not produced; when decoding, the metadata fields are skipped and the node types are reported
so callers can refuse what they do not handle.

The byte layout matches go-codec-dagpb and boxo's UnixFS (what kubo writes), e.g. a link
always carries its ``Name`` (empty for file chunks) and its ``Tsize``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from provenance.errors import IntegrityError


@dataclass(frozen=True)
class PBLink:
    """A link of a dag-pb node: the child's binary CID, its name, its cumulative DAG size."""

    cid: bytes
    name: str
    tsize: int


@dataclass(frozen=True)
class PBNode:
    links: tuple[PBLink, ...]
    data: bytes | None


class UnixFSType(IntEnum):
    RAW = 0
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


@dataclass(frozen=True)
class UnixFSData:
    type: UnixFSType
    data: bytes = b""
    filesize: int | None = None
    blocksizes: tuple[int, ...] = ()


DIRECTORY_DATA = b"\x08\x01"


# ---------------------------------------------------------------- encoding
def varint(value: int) -> bytes:
    """Unsigned LEB128, as protobuf, multiformats and CAR framing use it."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _bytes_field(number: int, value: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(value)) + value


def _int_field(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def encode_link(link: PBLink) -> bytes:
    return (
        _bytes_field(1, link.cid)
        + _bytes_field(2, link.name.encode("utf-8"))
        + _int_field(3, link.tsize)
    )


def encode_node(links: tuple[PBLink, ...] | list[PBLink], data: bytes | None) -> bytes:
    """A dag-pb node in canonical form: links (field 2) first, then data (field 1)."""
    parts = [_bytes_field(2, encode_link(link)) for link in links]
    if data is not None:
        parts.append(_bytes_field(1, data))
    return b"".join(parts)


def encode_file_data(filesize: int, blocksizes: list[int]) -> bytes:
    """UnixFS ``Data`` of a file node whose content lives in its children (raw leaves)."""
    return (
        _int_field(1, UnixFSType.FILE)
        + _int_field(3, filesize)
        + b"".join(_int_field(4, size) for size in blocksizes)
    )


# ---------------------------------------------------------------- decoding
def _read_varint(buf: bytes, pos: int, what: str) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise IntegrityError(f"malformed {what}: truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise IntegrityError(f"malformed {what}: varint too long")


def _fields(buf: bytes, what: str) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for every field of a protobuf message."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos, what)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _read_varint(buf, pos, what)
        elif wire == 2:
            length, pos = _read_varint(buf, pos, what)
            if pos + length > len(buf):
                raise IntegrityError(f"malformed {what}: field {number} overruns the block")
            value, pos = buf[pos : pos + length], pos + length
        else:
            raise IntegrityError(f"malformed {what}: field {number} has wire type {wire}")
        out.append((number, wire, value))
    return out


def decode_node(block: bytes, what: str = "dag-pb node") -> PBNode:
    """Parse a dag-pb node; raises IntegrityError when it is not one."""
    links: list[PBLink] = []
    data: bytes | None = None
    for number, wire, value in _fields(block, what):
        if number == 2 and wire == 2 and isinstance(value, bytes):
            if data is not None:
                raise IntegrityError(f"malformed {what}: links after data")
            links.append(_decode_link(value, what))
        elif number == 1 and wire == 2 and isinstance(value, bytes) and data is None:
            data = value
        else:
            raise IntegrityError(f"malformed {what}: unexpected field {number}")
    return PBNode(tuple(links), data)


def _decode_link(buf: bytes, what: str) -> PBLink:
    cid: bytes | None = None
    name = ""
    tsize = 0
    for number, wire, value in _fields(buf, what):
        if number == 1 and wire == 2 and isinstance(value, bytes):
            cid = value
        elif number == 2 and wire == 2 and isinstance(value, bytes):
            try:
                name = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise IntegrityError(f"malformed {what}: link name is not UTF-8") from exc
        elif number == 3 and wire == 0 and isinstance(value, int):
            tsize = value
        else:
            raise IntegrityError(f"malformed {what}: unexpected link field {number}")
    if cid is None:
        raise IntegrityError(f"malformed {what}: a link has no hash")
    return PBLink(cid, name, tsize)


def decode_unixfs(data: bytes | None, what: str = "UnixFS node") -> UnixFSData:
    """Parse the UnixFS ``Data`` of a dag-pb node (hash type, fanout, mode, mtime skipped)."""
    if data is None:
        raise IntegrityError(f"malformed {what}: no UnixFS data")
    kind: int | None = None
    payload = b""
    filesize: int | None = None
    blocksizes: list[int] = []
    for number, _, value in _fields(data, what):
        if number == 1 and isinstance(value, int):
            kind = value
        elif number == 2 and isinstance(value, bytes):
            payload = value
        elif number == 3 and isinstance(value, int):
            filesize = value
        elif number == 4 and isinstance(value, int):
            blocksizes.append(value)
        elif number == 4 and isinstance(value, bytes):  # packed, as some encoders write it
            pos = 0
            while pos < len(value):
                size, pos = _read_varint(value, pos, what)
                blocksizes.append(size)
    if kind is None or kind not in UnixFSType._value2member_map_:
        raise IntegrityError(f"malformed {what}: unknown UnixFS type {kind}")
    return UnixFSData(UnixFSType(kind), payload, filesize, tuple(blocksizes))
