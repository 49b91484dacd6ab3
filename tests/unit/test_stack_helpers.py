from __future__ import annotations

import json
import socket
from pathlib import Path

from provenance.stack import configure_kubo_repo, free_port, log_tail, port_is_free


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
