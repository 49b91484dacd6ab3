"""IPFS: a kubo daemon of this stack's own, pinned to loopback, or a remote API that is only
probed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from provenance.config import Config, is_loopback_url, url_port
from provenance.errors import ProvenanceError, ServiceError
from provenance.stack.process import (
    Processes,
    Tools,
    bind_host,
    ensure_free,
    private_dir,
    run_checked,
    write_private,
)
from provenance.stack.service import Notify, ServiceStatus
from provenance.storage import cid as cids
from provenance.storage.gateway import Gateway
from provenance.storage.kubo import Kubo

EMPTY_IDENTITY_CID = "bafkqaaa"
"""Zero bytes as a CIDv1 with the identity hash: any gateway serves it without the network."""


class KuboDaemon:
    """``[ipfs] api``: a kubo of this stack's own (repo ``<state>/ipfs``) when it is loopback."""

    name = "ipfs"

    def __init__(self, config: Config, tools: Tools, processes: Processes) -> None:
        self.config = config
        self.tools = tools
        self.processes = processes

    @property
    def repo(self) -> Path:
        return self.config.state_dir / "ipfs"

    def is_running(self) -> bool:
        return self.processes.running(self.name)

    def stop(self) -> bool:
        return self.processes.stop(self.name)

    def client(self) -> Kubo:
        return Kubo(self.config.ipfs.api, auth=self.config.ipfs.auth, timeout=10, retries=0)

    def up(self, notify: Notify) -> None:
        ipfs = self.config.ipfs
        if not is_loopback_url(ipfs.api):
            with self.client() as kubo:
                version = kubo.version()
            notify(f"ipfs: remote API {ipfs.api} answers, kubo {version} (not managed here)")
            return
        if self.is_running():
            notify(f"ipfs: kubo already running, API {ipfs.api}")
            return
        binary = self.tools.find("ipfs")
        api_host, api_port = bind_host(ipfs.api), url_port(ipfs.api)
        gw_host, gw_port = bind_host(ipfs.gateway), url_port(ipfs.gateway)
        ensure_free(api_host, api_port, "the IPFS API (kubo)", "PROVENANCE_IPFS_API")
        ensure_free(gw_host, gw_port, "the IPFS gateway (kubo)", "PROVENANCE_IPFS_GATEWAY")
        if ipfs.swarm_port:
            ensure_free("127.0.0.1", ipfs.swarm_port, "the IPFS swarm (kubo)", "[ipfs] swarm_port")
        env = {**os.environ, "IPFS_PATH": str(self.repo)}
        if not (self.repo / "config").exists():
            private_dir(self.repo)
            run_checked([str(binary), "init", "--empty-repo"], env, "ipfs init")
        configure_kubo_repo(
            self.repo,
            api=f"/ip4/{api_host}/tcp/{api_port}",
            gateway=f"/ip4/{gw_host}/tcp/{gw_port}",
            swarm_port=ipfs.swarm_port,
        )
        argv = [str(binary), "daemon", "--migrate=false"]
        self.processes.spawn(self.name, argv, ready=self._ready, env=env)
        with self.client() as kubo:
            version = kubo.version()
        notify(f"ipfs: kubo {version} started, API {ipfs.api}, gateway {ipfs.gateway}")

    def _ready(self) -> bool:
        try:
            with self.client() as kubo:
                kubo.version()
        except ServiceError:
            return False
        return True

    def required(self, managed: bool) -> bool:
        """Whether content storage goes to this kubo: ``[ipfs] backend = "kubo"``, an
        explicit ``[ipfs] api``, or (backend ``auto``) the kubo ``provenance up`` runs. Else
        the embedded store or a gateway serves, and no kubo is needed."""
        ipfs = self.config.ipfs
        if ipfs.backend != "auto":
            return ipfs.backend == "kubo"
        return "api" in ipfs.model_fields_set or managed

    def backend(self, managed: bool) -> str:
        """``kubo``, ``gateway`` or ``local``: where content goes, as the session decides
        (:func:`provenance.storage.storage_kind`, the one rule)."""
        from provenance.storage import storage_kind

        return storage_kind(self.config, managed)

    def status(self) -> ServiceStatus:
        ipfs = self.config.ipfs
        managed = self.is_running()
        backend = self.backend(managed)
        facts: dict[str, Any] = {"api": ipfs.api, "gateway": ipfs.gateway, "backend": backend}
        if backend == "gateway":
            return self._gateway_status(facts)
        required = backend == "kubo"
        note = None
        if not required:
            note = f"not required: content is stored in the local store {self.config.ipfs_store}"
        try:
            with self.client() as kubo:
                version, peer = kubo.version(), kubo.id()
        except ServiceError as exc:
            return ServiceStatus(
                "ipfs", False, ipfs.api, required, managed, error=str(exc), note=note, facts=facts
            )
        return ServiceStatus(
            "ipfs",
            True,
            ipfs.api,
            required,
            managed,
            version=version,
            detail=f"kubo {version}, peer {peer[:16]}",
            facts={**facts, "peer_id": peer},
        )

    def _gateway_status(self, facts: dict[str, Any]) -> ServiceStatus:
        """An auditor's read path: the gateway must serve a block (the empty identity CID,
        which needs no network), checked against its CID like every block it serves."""
        ipfs = self.config.ipfs
        try:
            with Gateway(ipfs.gateway, auth=ipfs.auth, timeout=5, retries=0) as gateway:
                gateway.block(cids.parse(EMPTY_IDENTITY_CID))
        except ProvenanceError as exc:
            return ServiceStatus("ipfs", False, ipfs.gateway, error=str(exc), facts=facts)
        detail = "read-only gateway; every block is checked against its CID"
        return ServiceStatus("ipfs", True, ipfs.gateway, detail=detail, facts=facts)


def configure_kubo_repo(repo: Path, *, api: str, gateway: str, swarm_port: int) -> None:
    """Pin a kubo repo to loopback: API, gateway and swarm on 127.0.0.1, no bootstrap peers,
    no DHT or delegated routing, no mDNS, no NAT port mapping, no relays, nothing announced.

    Edits the repo's JSON config directly (allowed while the daemon is stopped); this is what
    a dozen ``ipfs config`` calls would do, without a process each.
    """
    path = repo / "config"
    cfg: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    swarm = [f"/ip4/127.0.0.1/tcp/{swarm_port}"] if swarm_port else []
    cfg["Addresses"].update(API=api, Gateway=gateway, Swarm=swarm, Announce=[], AppendAnnounce=[])
    cfg["Addresses"]["NoAnnounce"] = ["/ip4/0.0.0.0/ipcidr/0", "/ip6/::/ipcidr/0"]
    cfg["Bootstrap"] = []
    cfg.setdefault("AutoConf", {})["Enabled"] = False
    cfg.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    routing = cfg.setdefault("Routing", {})
    routing["Type"] = "none"
    routing["DelegatedRouters"] = []
    cfg.setdefault("Ipns", {})["DelegatedPublishers"] = []
    cfg.setdefault("DNS", {})["Resolvers"] = {}
    swarm_cfg = cfg.setdefault("Swarm", {})
    swarm_cfg["DisableNatPortMap"] = True
    swarm_cfg.setdefault("RelayClient", {})["Enabled"] = False
    swarm_cfg.setdefault("RelayService", {})["Enabled"] = False
    cfg.setdefault("AutoNAT", {})["ServiceMode"] = "disabled"
    write_private(path, json.dumps(cfg, indent=2).encode())
