"""CID helpers: the certificate CID from a digest and back, parsing, block verification."""

from __future__ import annotations

import hashlib

import pytest
from multiformats import CID

from provenance.errors import IntegrityError, StorageError
from provenance.storage import cid as cids
from provenance.storage import cid_for_digest, digest_for_cid

# ipfs add --cid-version=1 of an empty file (kubo 0.43): one empty raw block
EMPTY_RAW = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def test_cid_for_digest_is_the_raw_cidv1_of_the_bytes() -> None:
    assert cid_for_digest(hashlib.sha256(b"").digest()) == EMPTY_RAW
    digest = hashlib.sha256(b'{"certificate": 1}').digest()
    cid = cid_for_digest(digest)
    decoded = CID.decode(cid)
    assert (decoded.version, decoded.codec.name, decoded.hashfun.name) == (1, "raw", "sha2-256")
    assert decoded.raw_digest == digest
    assert cid.startswith("bafkrei")


def test_digest_for_cid_inverts_cid_for_digest() -> None:
    digest = hashlib.sha256(b"x").digest()
    assert digest_for_cid(cid_for_digest(digest)) == digest
    # any multibase spelling of the same CID works
    base58 = CID.decode(cid_for_digest(digest)).encode("base58btc")
    assert digest_for_cid(base58) == digest


def test_digest_for_cid_refuses_a_dag_pb_cid() -> None:
    dir_cid = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
    with pytest.raises(StorageError) as info:
        digest_for_cid(dir_cid)
    assert str(info.value) == f"{dir_cid} is not a raw sha2-256 CID (one raw block)"


def test_cid_for_digest_wants_32_bytes() -> None:
    with pytest.raises(StorageError) as info:
        cid_for_digest(b"short")
    assert str(info.value) == "a SHA-256 digest has 32 bytes, got 5"


def test_parse_rejects_what_is_not_a_cid() -> None:
    with pytest.raises(StorageError) as info:
        cids.parse("not-a-cid")
    assert str(info.value).startswith("'not-a-cid' is not a CID: ")


def test_cidv0_normalizes_to_its_cidv1() -> None:
    v0 = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    v1 = cids.normalize(v0)
    assert v1 == "bafybeif7ztnhq65lumvvtr4ekcwd2ifwgm3awq4zfr3srh462rwyinlb4y"
    assert CID.decode(v1).raw_digest == CID.decode(v0).raw_digest
    assert cids.codec(cids.parse(v0)) == cids.DAG_PB


def test_verify_block_accepts_matching_and_names_the_source_on_mismatch() -> None:
    cid = cids.parse(EMPTY_RAW)
    cids.verify_block(cid, b"", "http://127.0.0.1:5001")
    with pytest.raises(IntegrityError) as info:
        cids.verify_block(cid, b"tampered", "http://127.0.0.1:5001")
    assert str(info.value) == f"block {EMPTY_RAW} from http://127.0.0.1:5001 does not match its CID"


def test_verify_block_handles_other_hash_functions_through_multiformats() -> None:
    data = b"some block"
    cid = bytes(CID("base32", 1, "raw", ("sha2-512", hashlib.sha512(data).digest())))
    cids.verify_block(cid, data, "here")
    with pytest.raises(IntegrityError) as info:
        cids.verify_block(cid, data + b"!", "here")
    assert str(info.value) == f"block {cids.to_str(cid)} from here does not match its CID"
    inline = bytes(CID("base32", 1, "raw", ("identity", data)))
    cids.verify_block(inline, data, "here")
