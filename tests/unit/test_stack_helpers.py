from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

from provenance.config import Config, load_config
from provenance.stack import (
    SYSTEM_DOCKER,
    Dockerd,
    KuboDaemon,
    Processes,
    ServiceStatus,
    StackStatus,
    Tools,
    configure_kubo_repo,
    free_port,
    log_tail,
    port_is_free,
)


def test_port_is_free_sees_a_listener() -> None:
    port = free_port()
    assert port_is_free("127.0.0.1", port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert not port_is_free("127.0.0.1", port)


def test_log_tail_folds_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("a\nb\n\nc\nd\ne\nf\n")
    assert log_tail(log, 3) == f"log {log} ends: d | e | f"
    assert log_tail(tmp_path / "missing.log") == "no log"


def test_configure_kubo_repo_pins_loopback_and_silences_discovery(tmp_path: Path) -> None:
    (tmp_path / "config").write_text(
        json.dumps(
            {
                "Addresses": {"API": "/ip4/127.0.0.1/tcp/5001", "Swarm": ["/ip4/0.0.0.0/tcp/4001"]},
                "Bootstrap": ["/dnsaddr/bootstrap.example/p2p/Qm"],
                "Discovery": {"MDNS": {"Enabled": True}},
                "Routing": {"Type": "auto"},
                "Identity": {"PeerID": "keep-me"},
            }
        )
    )
    configure_kubo_repo(
        tmp_path, api="/ip4/127.0.0.1/tcp/1", gateway="/ip4/127.0.0.1/tcp/2", swarm_port=3
    )
    cfg = json.loads((tmp_path / "config").read_text())
    assert cfg["Addresses"]["API"] == "/ip4/127.0.0.1/tcp/1"
    assert cfg["Addresses"]["Gateway"] == "/ip4/127.0.0.1/tcp/2"
    assert cfg["Addresses"]["Swarm"] == ["/ip4/127.0.0.1/tcp/3"]
    assert cfg["Addresses"]["Announce"] == []
    assert cfg["Bootstrap"] == []
    assert cfg["Discovery"]["MDNS"]["Enabled"] is False
    assert cfg["Routing"]["Type"] == "none"
    assert cfg["AutoConf"]["Enabled"] is False
    assert cfg["Identity"] == {"PeerID": "keep-me"}


def _config(tmp_path: Path, **env: str) -> Config:
    """The defaults (an empty config file, so no user config is read), with ``env``."""
    path = tmp_path / "provenance.toml"
    path.touch()
    return load_config(env, cwd=tmp_path, explicit=path)


def test_a_part_that_is_not_required_does_not_make_the_stack_unhealthy() -> None:
    chain = ServiceStatus("chain", True, "http://127.0.0.1:8545", facts={"chain_id": 1})
    docker = ServiceStatus(
        "docker", False, SYSTEM_DOCKER, required=False, error="refused", note="not required"
    )
    status = StackStatus(None, "/state", (chain, docker))
    assert status.ok is True
    assert status.problems() == []
    assert status.problems(("docker",)) == ["docker: refused"]  # a caller that needs it
    assert status["docker"] is docker
    assert status.to_json() == {
        "config": None,
        "state_dir": "/state",
        "ok": True,
        "chain": {
            "chain_id": 1,
            "endpoint": "http://127.0.0.1:8545",
            "managed": False,
            "ok": True,
            "required": True,
        },
        "docker": {
            "endpoint": SYSTEM_DOCKER,
            "error": "refused",
            "managed": False,
            "note": "not required",
            "ok": False,
            "required": False,
        },
    }
    failing = StackStatus(None, "/state", (dataclasses.replace(chain, ok=False, error="down"),))
    assert failing.ok is False
    assert failing.problems() == ["chain: down"]


def test_docker_is_required_by_a_local_stack_or_a_named_engine(tmp_path: Path) -> None:
    plain = _config(tmp_path)
    processes = Processes(tmp_path / "state")
    assert Dockerd(plain, Tools(), processes).required() is False
    assert Dockerd(plain, Tools(), processes, local_stack=lambda: True).required() is True
    named = _config(tmp_path, DOCKER_HOST="ssh://builder")
    assert Dockerd(named, Tools(), processes).required() is True


def test_kubo_is_required_when_storage_goes_to_it(tmp_path: Path) -> None:
    processes = Processes(tmp_path / "state")

    def required(managed: bool, **env: str) -> bool:
        return KuboDaemon(_config(tmp_path, **env), Tools(), processes).required(managed)

    assert required(False) is False  # the default: the local store
    assert required(True) is True  # the kubo `provenance up` runs
    assert required(False, PROVENANCE_IPFS_API="http://127.0.0.1:5001") is True
    assert required(False, PROVENANCE_IPFS_GATEWAY="http://127.0.0.1:8080") is False
    assert required(False, PROVENANCE_IPFS_BACKEND="kubo") is True
    assert required(True, PROVENANCE_IPFS_BACKEND="local") is False


def test_the_ipfs_part_follows_the_storage_backend_in_force(tmp_path: Path) -> None:
    processes = Processes(tmp_path / "state")

    def backend(managed: bool, **env: str) -> str:
        return KuboDaemon(_config(tmp_path, **env), Tools(), processes).backend(managed)

    assert backend(False) == "local"
    assert backend(True) == "kubo"
    assert backend(False, PROVENANCE_IPFS_GATEWAY="http://gw.test") == "gateway"
    assert backend(True, PROVENANCE_IPFS_GATEWAY="http://gw.test") == "kubo"
    assert (
        backend(False, PROVENANCE_IPFS_GATEWAY="http://gw.test", PROVENANCE_IPFS_BACKEND="local")
        == "local"
    )
