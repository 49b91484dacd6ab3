"""CIDs as provenance uses them: binary CIDs inside, CIDv1 base32 strings at the edges.

A certificate (at most 256 KiB of canonical JSON) is stored as one raw block, so its CID is
derived from the SHA-256 of its bytes alone, and back:

>>> cid_for_digest(bytes(32))
'bafkreiaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'
>>> digest_for_cid('bafkreiaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa') == bytes(32)
True

Strings are parsed by ``multiformats`` (any multibase, CIDv0 and v1); hot paths (one call per
block) use ``libipld``'s CID decoder and encoder, which are a few hundred times faster.
Digests are checked with ``hashlib`` for sha2-256 and with ``multiformats``' multihash
implementations for any other hash function.
"""

from __future__ import annotations

import hashlib
from typing import Any

import libipld
from multiformats import CID, multihash

from provenance.errors import IntegrityError, StorageError

RAW = 0x55
DAG_PB = 0x70
SHA2_256 = 0x12
IDENTITY = 0x00

_RAW_SHA256_PREFIX = bytes([0x01, RAW, SHA2_256, 0x20])
_DAG_PB_SHA256_PREFIX = bytes([0x01, DAG_PB, SHA2_256, 0x20])


def raw_cid(digest: bytes) -> bytes:
    """The binary CIDv1 (raw codec, sha2-256) of a block with this SHA-256 digest."""
    return _RAW_SHA256_PREFIX + digest


def dag_pb_cid(digest: bytes) -> bytes:
    """The binary CIDv1 (dag-pb codec, sha2-256) of a block with this SHA-256 digest."""
    return _DAG_PB_SHA256_PREFIX + digest


def cid_for_digest(sha256: bytes) -> str:
    """The CIDv1 (base32, raw codec, sha2-256) of a single raw block with this digest.

    It is what ``ipfs add --cid-version=1`` prints for a file of at most 256 KiB with these
    bytes, and what :meth:`Storage.put_bytes` returns for them.
    """
    if len(sha256) != 32:
        raise StorageError(f"a SHA-256 digest has 32 bytes, got {len(sha256)}")
    return to_str(raw_cid(sha256))


def digest_for_cid(cid: str) -> bytes:
    """The SHA-256 digest inside a raw-codec sha2-256 CID: the inverse of :func:`cid_for_digest`."""
    binary = parse(cid)
    if not binary.startswith(_RAW_SHA256_PREFIX) or len(binary) != 36:
        raise StorageError(f"{cid} is not a raw sha2-256 CID (one raw block)")
    return binary[4:]


def parse(text: str) -> bytes:
    """The binary form of a CID string (CIDv0 or v1, any multibase).

    Raises StorageError when ``text`` is not a CID.
    """
    try:
        return bytes(CID.decode(text.strip()))
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"{text!r} is not a CID: {exc}") from exc


def to_str(cid: bytes) -> str:
    """The string form of a binary CID: base32 for v1, base58btc for v0."""
    return libipld.encode_cid(cid)


def to_v1(cid: bytes) -> bytes:
    """The CIDv1 of a CID: a CIDv0 (always dag-pb, sha2-256) becomes its v1 equivalent."""
    if len(cid) == 34 and cid[0] == SHA2_256 and cid[1] == 0x20:
        return dag_pb_cid(cid[2:])
    return cid


def normalize(text: str) -> str:
    """A CID string as this package prints it: CIDv1, base32."""
    return to_str(to_v1(parse(text)))


def codec(cid: bytes) -> int:
    """The multicodec of a binary CID (dag-pb for a CIDv0)."""
    if len(cid) == 34 and cid[0] == SHA2_256:
        return DAG_PB
    if len(cid) > 2 and cid[0] == 1 and cid[1] < 0x80:
        return cid[1]
    return int(_decode(cid)["codec"])


def _decode(cid: bytes) -> dict[str, Any]:
    try:
        return libipld.decode_cid(cid)
    except ValueError as exc:
        raise IntegrityError(f"malformed CID {cid.hex()}: {exc}") from exc


def verify_block(cid: bytes, data: bytes, source: str) -> None:
    """Raise IntegrityError unless ``data`` hashes to the multihash inside ``cid``.

    ``source`` names where the bytes came from (an endpoint URL, a store folder, a CAR file)
    and goes into the message.
    """
    if cid.startswith((_RAW_SHA256_PREFIX, _DAG_PB_SHA256_PREFIX)) and len(cid) == 36:
        ok = hashlib.sha256(data).digest() == cid[4:]
    elif len(cid) == 34 and cid[:2] == b"\x12\x20":  # CIDv0
        ok = hashlib.sha256(data).digest() == cid[2:]
    else:
        mh = _decode(cid)["hash"]
        code, digest = int(mh["code"]), bytes(mh["digest"])
        if code == SHA2_256:
            ok = hashlib.sha256(data).digest() == digest
        elif code == IDENTITY:
            ok = data == digest
        else:
            try:
                computed = multihash.get(code=code).digest(data, size=len(digest))
            except (KeyError, ValueError, ImportError) as exc:  # ImportError: an optional
                raise IntegrityError(  # hash implementation (keccak, murmur3) is not installed
                    f"block {to_str(cid)} from {source} uses hash function 0x{code:x}, "
                    "which cannot be verified here"
                ) from exc
            ok = bytes(multihash.unwrap(computed)) == digest
    if not ok:
        raise IntegrityError(f"block {to_str(cid)} from {source} does not match its CID")


def block_cid(data: bytes, codec: int = RAW) -> bytes:
    """The binary CIDv1 (sha2-256) of a block with this codec."""
    digest = hashlib.sha256(data).digest()
    return dag_pb_cid(digest) if codec == DAG_PB else raw_cid(digest)
