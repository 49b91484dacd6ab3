"""Roles and node authorisations as operators manage them, on a real anvil of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from provenance.chain.attestor import AttestorContract
from provenance.chain.authorizations import authorized_nodes
from provenance.chain.client import connect
from provenance.chain.deploy import ensure_deployed
from provenance.chain.registry import Registry
from provenance.errors import ContractRevertError
from provenance.session import default_tools
from provenance.stack import ephemeral_anvil

from .chainutil import ADMIN, ALICE, BOB, MALLORY, as_user, registration, transactor

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def w3() -> Iterator[Web3]:
    with ephemeral_anvil(default_tools()) as url:
        yield connect(url)


def deploy(w3: Web3, folder: Path, *, open_registration: bool) -> tuple[Registry, str]:
    deployment, _ = ensure_deployed(
        w3, ADMIN, folder / f"d-{os.urandom(4).hex()}.json", open_registration=open_registration
    )
    record = deployment.contracts["ModelRegistry"]
    registry = Registry(w3, record.address, transactor(w3, ADMIN), from_block=record.block)
    return registry, deployment.contracts["OutputAttestor"].address


def test_the_deployer_of_an_allowlist_registry_may_register(w3: Web3, tmp_path: Path) -> None:
    registry, _ = deploy(w3, tmp_path, open_registration=False)
    assert registry.is_open() is False
    assert registry.has_role("registrant", ADMIN.address)
    assert registry.register(registration()).registrant == ADMIN.address
    with pytest.raises(ContractRevertError) as info:
        as_user(registry, MALLORY).register(registration())
    assert (info.value.error, info.value.arguments) == (
        "UnauthorizedRegistrant",
        {"account": MALLORY.address},
    )
    # an open registry grants nothing: the role would mean nothing there
    open_registry, _ = deploy(w3, tmp_path, open_registration=True)
    assert not open_registry.has_role("registrant", ADMIN.address)


def test_role_holders_replay_grants_and_revocations(w3: Web3, tmp_path: Path) -> None:
    registry, _ = deploy(w3, tmp_path, open_registration=False)
    registry.grant_role("registrant", ALICE.address)
    registry.grant_role("auditor", BOB.address)
    registry.grant_role("registrant", BOB.address)
    registry.revoke_role("registrant", ALICE.address)
    registry.grant_role("registrant", ALICE.address)  # back, now after BOB
    holders = [(h.role, h.account) for h in registry.role_holders()]
    assert holders == [
        ("admin", ADMIN.address),
        ("registrant", ADMIN.address),
        ("registrant", BOB.address),
        ("registrant", ALICE.address),
        ("auditor", BOB.address),
    ]
    assert [h.account for h in registry.role_holders("auditor")] == [BOB.address]
    assert all(h.granted_by == ADMIN.address for h in registry.role_holders())


def test_authorized_nodes_of_every_model(w3: Web3, tmp_path: Path) -> None:
    registry, attestor_address = deploy(w3, tmp_path, open_registration=True)
    alice = as_user(registry, ALICE)
    first, second = registration(), registration()
    one, two = alice.register(first).id, alice.register(second).id
    attestor = AttestorContract(w3, attestor_address, transactor(w3, ALICE))
    image = b"\x07" * 32
    attestor.authorize_node(two, BOB.address, second, image)
    attestor.authorize_node(one, BOB.address, first, image)
    attestor.authorize_node(one, MALLORY.address, first, image)
    attestor.deauthorize_node(one, BOB.address)
    everyone = authorized_nodes(attestor, None)
    assert [(a.model_id, a.node) for a in everyone] == [(two, BOB.address), (one, MALLORY.address)]
    assert [a.node for a in authorized_nodes(attestor, [one])] == [MALLORY.address]
    assert authorized_nodes(attestor, []) == []
