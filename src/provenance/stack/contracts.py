"""The contracts: deployed by ``up`` on the chain this stack runs, only checked elsewhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from provenance.chain.client import connect
from provenance.chain.deploy import Deployment, ensure_deployed, has_code
from provenance.chain.keys import dev_account
from provenance.config import Config
from provenance.errors import ProvenanceError, ServiceError
from provenance.stack.service import Notify, ServiceStatus

Deployer = Callable[[Web3], LocalAccount]


class Contracts:
    """ModelRegistry and OutputAttestor at the deployment file's or the configured addresses.

    Not a process: ``stop`` does nothing; ``chain_is_ours`` says whether this stack runs the
    chain (then ``up`` deploys what holds no code, with ``deployer``)."""

    name = "contracts"

    def __init__(
        self,
        config: Config,
        chain_is_ours: Callable[[], bool],
        deployer: Deployer = dev_account,
    ) -> None:
        self.config = config
        self.chain_is_ours = chain_is_ours
        self.deployer = deployer

    def is_running(self) -> bool:
        return False

    def stop(self) -> bool:
        return False

    def up(self, notify: Notify) -> None:
        chain = self.config.chain
        w3 = connect(chain.rpc_url)
        if not self.chain_is_ours():
            for name, address in chain.contracts.items():
                if not has_code(w3, address):
                    raise ServiceError(
                        f"configured {name} address {address} holds no code on {chain.rpc_url}"
                    )
            notify(
                "contracts: not deploying on a chain this stack does not run (see `provenance deploy`)"
            )
            return
        deployment, now = ensure_deployed(
            w3,
            self.deployer(w3),
            self.config.deployment_file,
            open_registration=chain.open_registration,
            configured=chain.contracts,
        )
        for name, record in deployment.contracts.items():
            verb = "deployed" if name in now else "found"
            notify(f"contracts: {name} {verb} at {record.address}")

    def status(self) -> ServiceStatus:
        chain = self.config.chain
        endpoint = str(self.config.deployment_file)
        facts: dict[str, Any] = {"deployment_file": endpoint}

        def failed(error: str) -> ServiceStatus:
            return ServiceStatus("contracts", False, endpoint, error=error, facts=facts)

        try:
            deployment = Deployment.read(self.config.deployment_file)
            addresses = (
                {k: v.address for k, v in deployment.contracts.items()} if deployment else {}
            )
            addresses.update(chain.contracts)
            if not addresses:
                return failed(
                    "no contracts deployed or configured (set [chain.contracts] or "
                    "PROVENANCE_REGISTRY, or run `provenance up` or `provenance deploy`)"
                )
            w3 = connect(chain.rpc_url, timeout=5)
            if deployment is not None and deployment.chain_id != w3.eth.chain_id:
                return failed(
                    f"deployment file is for chain {deployment.chain_id}, the RPC serves "
                    f"chain {w3.eth.chain_id}"
                )
            missing = []
            for name, address in sorted(addresses.items()):
                code = has_code(w3, address)
                facts[name] = {"address": address, "has_code": code}
                if not code:
                    missing.append(f"{name} at {address} holds no code")
        except ProvenanceError as exc:
            return failed(str(exc))
        if missing:
            return failed("; ".join(missing))
        detail = ", ".join(f"{name} {address}" for name, address in sorted(addresses.items()))
        return ServiceStatus("contracts", True, endpoint, detail=detail, facts=facts)
