"""Helpers for tests on the real anvil: accounts, fresh registries, test contracts."""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from provenance.chain.deploy import ensure_deployed
from provenance.chain.keys import anvil_dev_key
from provenance.chain.registry import Registry
from provenance.chain.tx import Transactor
from provenance.registration import Parent, Registration

ROOT = Path(__file__).resolve().parents[2]

ADMIN, ALICE, BOB, MALLORY = (Account.from_key(anvil_dev_key(i)) for i in range(4))

_transactors: dict[tuple[int, str], Transactor] = {}


def transactor(w3: Web3, account: LocalAccount) -> Transactor:
    """One Transactor per (node, account) for the whole session, so nonces stay in step."""
    key = (id(w3.provider), account.address)
    if key not in _transactors:
        _transactors[key] = Transactor(w3, account)
    return _transactors[key]


def deploy_registry(w3: Web3, folder: Path, *, open_registration: bool = True) -> Registry:
    """A fresh ModelRegistry (admin: ADMIN), through the same deploy code as `provenance up`."""
    deployment, _ = ensure_deployed(
        w3,
        ADMIN,
        folder / f"deployment-{os.urandom(4).hex()}.json",
        open_registration=open_registration,
    )
    record = deployment.contracts["ModelRegistry"]
    return Registry(w3, record.address, transactor(w3, ADMIN), from_block=record.block)


def as_user(registry: Registry, account: LocalAccount) -> Registry:
    """The same registry, sending from ``account``."""
    return Registry(
        registry.w3,
        registry.address,
        transactor(registry.w3, account),
        from_block=registry.from_block,
    )


def registration(*parents: Parent, ack: bool = False) -> Registration:
    """A registration with random digests (distinct content, distinct id)."""
    return Registration(
        certificate_digest=os.urandom(32),
        model_digest=os.urandom(32),
        data_commitment=os.urandom(32),
        parents=parents,
        acknowledge_revoked_parents=ack,
    )


@cache
def compile_test_contract(name: str) -> dict[str, Any]:
    """Compile tests/contracts with the pinned compiler (scripts/compile.py)."""
    spec = importlib.util.spec_from_file_location(
        "provenance_compile", ROOT / "scripts" / "compile.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    artifacts: dict[str, dict[str, Any]] = module.compile_contracts(
        contracts=ROOT / "tests" / "contracts"
    )
    return artifacts[name]


def deploy_contracts(
    w3: Web3, folder: Path, *, open_registration: bool = True
) -> tuple[Registry, Any]:
    """A fresh ModelRegistry and the OutputAttestor pointing at it (sending as ADMIN)."""
    from provenance.chain.attestor import AttestorContract

    deployment, _ = ensure_deployed(
        w3,
        ADMIN,
        folder / f"deployment-{os.urandom(4).hex()}.json",
        open_registration=open_registration,
    )
    record = deployment.contracts["ModelRegistry"]
    registry = Registry(w3, record.address, transactor(w3, ADMIN), from_block=record.block)
    attestor = AttestorContract(
        w3, deployment.contracts["OutputAttestor"].address, transactor(w3, ADMIN)
    )
    return registry, attestor
