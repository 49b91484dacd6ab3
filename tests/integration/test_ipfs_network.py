"""Kubo daemons of the tests' own (own repos, offline, loopback): decentralised availability
across two connected nodes, and the error a stopped daemon gives."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provenance.errors import ServiceError
from provenance.stack import configure_kubo_repo, free_port
from provenance.storage import Kubo, cid_for_digest
from tests.integration.conftest import tools

pytestmark = pytest.mark.integration


@dataclass
class Daemon:
    api: str
    swarm: str  # /ip4/127.0.0.1/tcp/PORT/p2p/PEER
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_daemon(folder: Path) -> Daemon:
    repo = folder / "repo"
    repo.mkdir(parents=True)
    env = {**os.environ, "IPFS_PATH": str(repo)}
    binary = str(tools().find("ipfs"))
    subprocess.run([binary, "init", "--empty-repo"], env=env, check=True, capture_output=True)
    api_port, swarm_port = free_port(), free_port()
    configure_kubo_repo(
        repo,
        api=f"/ip4/127.0.0.1/tcp/{api_port}",
        gateway=f"/ip4/127.0.0.1/tcp/{free_port()}",
        swarm_port=swarm_port,
    )
    peer = json.loads((repo / "config").read_text())["Identity"]["PeerID"]
    log = open(folder / "daemon.log", "wb")  # noqa: SIM115 - the daemon writes to it
    process = subprocess.Popen(
        [binary, "daemon", "--migrate=false"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    daemon = Daemon(
        f"http://127.0.0.1:{api_port}", f"/ip4/127.0.0.1/tcp/{swarm_port}/p2p/{peer}", process
    )
    deadline = time.monotonic() + 60
    with Kubo(daemon.api, timeout=5, retries=0) as kubo:
        while True:
            try:
                kubo.version()
                return daemon
            except ServiceError:
                if process.poll() is not None or time.monotonic() > deadline:
                    daemon.stop()
                    raise RuntimeError(
                        "kubo did not start: " + (folder / "daemon.log").read_text()
                    ) from None
                time.sleep(0.2)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Daemon, Daemon]]:
    a = start_daemon(tmp_path / "a")
    try:
        b = start_daemon(tmp_path / "b")
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


def test_content_stays_available_through_another_node(
    pair: tuple[Daemon, Daemon], tmp_path: Path
) -> None:
    """The paper's claim: once a second node pins them, a certificate and a dataset outlive
    their first node's copy, and whoever fetches them can check them against their CIDs."""
    a, b = pair
    certificate = json.dumps({"model": "resnet-ft", "parents": ["0x01"]}, sort_keys=True).encode()
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "train.bin").write_bytes(random.Random(8).randbytes(2_000_000))
    (dataset / "labels.csv").write_text("id,label\n1,cat\n")

    with Kubo(a.api) as node_a, Kubo(b.api) as node_b:
        cert_cid = node_a.put_bytes(certificate)
        assert cert_cid == cid_for_digest(hashlib.sha256(certificate).digest())
        data_cid = node_a.put_path(dataset)
        assert not node_b.has(cert_cid)

        node_b.swarm_connect(a.swarm)
        assert node_b.get_bytes(cert_cid) == certificate  # fetched from A through B
        for cid in (cert_cid, data_cid):
            node_b.pin(cid)
        assert {cert_cid, data_cid} <= node_b.pins()

        for cid in (cert_cid, data_cid):
            node_a.unpin(cid)
        assert node_a.gc() > 0
        assert not node_a.has(cert_cid)
        assert not node_a.has(data_cid)

        assert node_b.has(cert_cid) and node_b.has(data_cid)
        assert node_b.get_bytes(cert_cid) == certificate
        node_b.get_path(data_cid, tmp_path / "fetched")
    assert (tmp_path / "fetched" / "train.bin").read_bytes() == (dataset / "train.bin").read_bytes()
    assert (tmp_path / "fetched" / "labels.csv").read_text() == "id,label\n1,cat\n"


def test_a_stopped_daemon_gives_a_clear_error(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path)
    with Kubo(daemon.api, retries=1, backoff=0.05) as kubo:
        cid = kubo.put_bytes(b"certificate")
        daemon.stop()
        refused = "[Errno 111] Connection refused"
        with pytest.raises(ServiceError) as info:
            kubo.put_bytes(b"another")
        assert str(info.value) == f"IPFS API {daemon.api} is unreachable (add): {refused}"
        with pytest.raises(ServiceError) as info:
            kubo.get_bytes(cid)
        assert str(info.value) == f"IPFS API {daemon.api} is unreachable (block/get): {refused}"
        with pytest.raises(ServiceError) as info:
            kubo.pin(cid)
        assert str(info.value) == f"IPFS API {daemon.api} is unreachable (pin/add): {refused}"
