"""Bounded reads against the real kubo of the session stack: a view made by
``Kubo.with_timeout`` passes kubo's global ``timeout`` option on every request, kubo gives up
at the deadline (500 "context deadline exceeded", or a stream cut short), and the read raises
StorageError naming the CID. Integrity and connection failures keep their own errors.

No test asserts a duration: the view's HTTP client keeps the default 60 s read timeout, so were
kubo to ignore the deadline the read would end in a ServiceError ("timed out"), not in the
StorageError asserted here."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from provenance.errors import IntegrityError, ServiceError, StorageError
from provenance.stack import Stack, free_port
from provenance.storage import Gateway, Kubo, cid_for_digest
from provenance.storage import cid as cids
from tests.integration.test_ipfs_storage import CHUNK, flatfs_block, ipfs, unixfs_links

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kubo(stack: Stack) -> Iterator[Kubo]:
    with Kubo(stack.config.ipfs.api) as client:
        yield client


def nobodys_cid(seed: int) -> str:
    """The CID of bytes never added anywhere: no node can provide it."""
    return cid_for_digest(hashlib.sha256(random.Random(seed).randbytes(64)).digest())


def test_content_nobody_provides_fails_at_kubos_deadline(
    stack: Stack, kubo: Kubo, tmp_path: Path
) -> None:
    cid = nobodys_cid(1)
    expected = f"{cid} was not found in IPFS within 1 s (IPFS API {kubo.api_url})"
    bounded = kubo.with_timeout(1)
    with pytest.raises(StorageError) as info:
        bounded.get_bytes(cid)
    assert str(info.value) == expected
    with pytest.raises(StorageError) as info:
        b"".join(bounded.cat(cid))
    assert str(info.value) == expected
    with pytest.raises(StorageError) as info:
        bounded.get_path(cid, tmp_path / "out")
    assert str(info.value) == expected
    assert not (tmp_path / "out").exists()
    with pytest.raises(StorageError) as info:
        bounded.export_car(cid, tmp_path / "out.car")
    assert str(info.value) == expected
    assert not (tmp_path / "out.car").exists()
    with pytest.raises(StorageError) as info:
        bounded.block(cids.parse(cid))
    assert str(info.value) == expected
    bounded.close()
    assert not kubo.has(cid)


def test_a_file_missing_a_leaf_fails_at_the_deadline_naming_its_root(
    stack: Stack, kubo: Kubo, tmp_path: Path
) -> None:
    """kubo answers 200, streams the leaves it holds, then cuts the stream at its deadline."""
    data = random.Random(2).randbytes(6 * CHUNK)
    cid = kubo.put_bytes(data, pin=False)
    leaf = unixfs_links(kubo, cid)[3]
    ipfs(stack, "block", "rm", cids.to_str(leaf))
    expected = f"{cid} was not found in IPFS within 1 s (IPFS API {kubo.api_url})"
    with kubo.with_timeout(1) as bounded:
        with pytest.raises(StorageError) as info:
            bounded.get_bytes(cid)
        assert str(info.value) == expected
        with pytest.raises(StorageError) as info:
            bounded.get_path(cid, tmp_path / "out")
        assert str(info.value) == expected
        assert not (tmp_path / "out").exists()
        with pytest.raises(StorageError) as info:
            bounded.export_car(cid, tmp_path / "out.car")
        assert str(info.value) == expected
    kubo.put_bytes(data)  # the leaf is back: the same reads succeed
    with kubo.with_timeout(5) as bounded:
        assert bounded.get_bytes(cid) == data
        bounded.get_path(cid, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data


def test_present_content_reads_with_and_without_a_deadline(
    stack: Stack, kubo: Kubo, tmp_path: Path
) -> None:
    data = random.Random(3).randbytes(3 * CHUNK + 17)
    cid = kubo.put_bytes(data)
    small = kubo.put_bytes(b"a certificate")
    assert kubo.get_bytes(cid) == data
    bounded = kubo.with_timeout(10)
    assert bounded.get_bytes(cid) == data
    assert bounded.get_bytes(small) == b"a certificate"
    bounded.get_path(cid, tmp_path / "file")
    assert (tmp_path / "file").read_bytes() == data
    bounded.export_car(cid, tmp_path / "file.car")
    assert (tmp_path / "file.car").read_bytes() == ipfs(stack, "dag", "export", cid)
    bounded.close()  # shares the client's connections: closing the view leaves them open
    assert kubo.get_bytes(small) == b"a certificate"
    with kubo.with_timeout(120) as long:  # beyond the client's 60 s read timeout: own client
        assert long.get_bytes(small) == b"a certificate"
    assert kubo.get_bytes(small) == b"a certificate"


def test_an_altered_block_is_still_an_integrity_error(
    stack: Stack, kubo: Kubo, tmp_path: Path
) -> None:
    data = random.Random(4).randbytes(3 * CHUNK)
    cid = kubo.put_bytes(data)
    leaf = unixfs_links(kubo, cid)[1]
    block_file = flatfs_block(stack, leaf)
    original = block_file.read_bytes()
    block_file.write_bytes(b"\xff" + original[1:])
    try:
        with kubo.with_timeout(5) as bounded, pytest.raises(IntegrityError) as info:
            bounded.get_bytes(cid)
        assert str(info.value) == (
            f"block {cids.to_str(leaf)} from {kubo.api_url} does not match its CID"
        )
    finally:
        block_file.write_bytes(original)


def test_an_unreachable_node_is_still_a_connection_failure() -> None:
    api = f"http://127.0.0.1:{free_port()}"
    with Kubo(api, retries=0).with_timeout(1) as bounded, pytest.raises(ServiceError) as info:
        bounded.get_bytes(nobodys_cid(5))
    assert not isinstance(info.value, StorageError)
    assert str(info.value).startswith(f"IPFS API {api} is unreachable (block/get): ")


def test_a_gateway_view_gives_up_at_its_timeout(stack: Stack, kubo: Kubo) -> None:
    cid = nobodys_cid(6)
    present = kubo.put_bytes(b"through the gateway")
    with Gateway(stack.config.ipfs.gateway).with_timeout(1) as gateway:
        assert gateway.get_bytes(present) == b"through the gateway"
        with pytest.raises(StorageError) as info:
            gateway.get_bytes(cid)
    assert str(info.value) == (
        f"{cid} was not found in IPFS within 1 s (IPFS gateway {gateway.url})"
    )


def test_a_timeout_must_be_positive(kubo: Kubo) -> None:
    with pytest.raises(ValueError, match=r"^a timeout must be positive, not 0$"):
        kubo.with_timeout(0)
