"""Deploying the contracts and keeping the deployment file.

One implementation, two entry points: ``provenance deploy`` / ``provenance up`` and ape's
``ape run deploy`` (scripts/deploy.py) both call :func:`ensure_deployed`.

The deployment file is JSON: the chain id, and for each contract its address, the deploying
transaction, block and account, and the sha-256 of the runtime bytecode it expects.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3

from provenance.chain.artifacts import load_artifact
from provenance.chain.tx import send
from provenance.errors import ChainError, ConfigError

CONTRACTS = ("ModelRegistry", "OutputAttestor")  # in deployment order


@dataclass(frozen=True)
class Deployed:
    address: str
    transaction: str
    block: int
    deployer: str
    runtime_sha256: str


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    contracts: dict[str, Deployed] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, path: Path) -> Deployment | None:
        """The deployment recorded in ``path``, or None when the file does not exist."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                chain_id=int(data["chain_id"]),
                contracts={k: Deployed(**v) for k, v in data["contracts"].items()},
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"deployment file {path} is unreadable: {exc}") from exc

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)


def has_code(w3: Web3, address: str) -> bool:
    return len(w3.eth.get_code(Web3.to_checksum_address(address))) > 0


def constructor_args(
    name: str, admin: str, open_registration: bool, addresses: dict[str, str]
) -> list[Any]:
    if name == "ModelRegistry":
        return [admin, open_registration]
    if name == "OutputAttestor":
        return [addresses["ModelRegistry"]]
    raise ChainError(f"no constructor arguments known for {name}")


def grant_registrant(w3: Web3, admin: LocalAccount, registry: str, account: str) -> None:
    """Let ``account`` register on an allowlist registry (``admin`` holds its admin role)."""
    artifact = load_artifact("ModelRegistry")
    contract = w3.eth.contract(address=Web3.to_checksum_address(registry), abi=artifact.abi)
    role = keccak(text="REGISTRANT_ROLE")
    tx = contract.functions.grantRole(role, Web3.to_checksum_address(account)).build_transaction(
        {"from": admin.address}
    )
    send(w3, admin, dict(tx), what="granting the deployer the registrant role")


def ensure_deployed(
    w3: Web3,
    deployer: LocalAccount,
    deployment_file: Path,
    *,
    open_registration: bool = True,
    admin: str | None = None,
    configured: dict[str, str] | None = None,
    force: bool = False,
) -> tuple[Deployment, list[str]]:
    """Deploy each contract whose recorded address holds no code; return the deployment and
    the names deployed now (empty when everything was there already).

    A registry deployed now with ``open_registration=False`` (an allowlist) grants its
    deployer, when that is also its admin, the registrant role: the deployer can register at
    once and grant others with ``provenance role grant``.

    ``configured`` addresses (from the config file or environment) are never redeployed: one
    that holds no code is an error. A deployment file for another chain is an error.
    """
    chain_id = w3.eth.chain_id
    for name, address in (configured or {}).items():
        if not has_code(w3, address):
            raise ConfigError(
                f"configured {name} address {address} holds no code on chain {chain_id}"
            )
    existing = Deployment.read(deployment_file)
    if existing is not None and existing.chain_id != chain_id:
        raise ConfigError(
            f"deployment file {deployment_file} is for chain {existing.chain_id}, but the RPC "
            f"serves chain {chain_id}; use another state dir or --deployment file"
        )
    contracts = dict(existing.contracts) if existing else {}
    deployed_now: list[str] = []
    for name in CONTRACTS:
        if configured and name in configured:
            continue
        current = contracts.get(name)
        # an attestor is redeployed when the registry it points at was
        registry_moved = name == "OutputAttestor" and "ModelRegistry" in deployed_now
        if (
            current is not None
            and not force
            and not registry_moved
            and has_code(w3, current.address)
        ):
            continue
        artifact = load_artifact(name)
        factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        addresses = {k: v.address for k, v in contracts.items()} | (configured or {})
        args = constructor_args(name, admin or deployer.address, open_registration, addresses)
        tx = factory.constructor(*args).build_transaction({"from": deployer.address})
        receipt = send(w3, deployer, dict(tx), what=f"deploying {name}")
        created = receipt["contractAddress"]
        if created is None:
            raise ChainError(f"deploying {name}: the receipt carries no contract address")
        contracts[name] = Deployed(
            address=Web3.to_checksum_address(created),
            transaction="0x" + receipt["transactionHash"].hex().removeprefix("0x"),
            block=receipt["blockNumber"],
            deployer=deployer.address,
            runtime_sha256=hashlib.sha256(
                bytes.fromhex(artifact.deployed_bytecode.removeprefix("0x"))
            ).hexdigest(),
        )
        deployed_now.append(name)
        if name == "ModelRegistry" and not open_registration and admin in (None, deployer.address):
            grant_registrant(w3, deployer, created, deployer.address)
    deployment = Deployment(chain_id=chain_id, contracts=contracts)
    if deployed_now or existing is None:
        deployment.write(deployment_file)
    return deployment, deployed_now
