"""ModelRegistry.bindImage / imageOf and their client against the real anvil: who may bind,
when, what is stored and what the events keep."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from web3 import Web3

from provenance.chain.client import connect
from provenance.chain.registry import Registry
from provenance.errors import ContractRevertError
from provenance.registration import Parent
from provenance.stack import Stack

from .chainutil import ALICE, BOB, MALLORY, as_user, deploy_registry, registration

pytestmark = pytest.mark.integration

ZERO = b"\x00" * 32


@pytest.fixture(scope="module")
def w3(stack: Stack) -> Web3:
    return connect(stack.config.chain.rpc_url)


@pytest.fixture
def registry(w3: Web3, tmp_path: Path) -> Registry:
    return deploy_registry(w3, tmp_path)


def h(b: bytes) -> str:
    return "0x" + b.hex()


def revert(exc: pytest.ExceptionInfo[ContractRevertError]) -> tuple[str, dict[str, object]]:
    return exc.value.error, exc.value.arguments


def test_the_registrant_binds_and_rebinds_an_image(registry: Registry, w3: Web3) -> None:
    alice = as_user(registry, ALICE)
    model = alice.register(registration()).id
    assert registry.image_binding(model) is None
    first, first_record = os.urandom(32), os.urandom(32)
    alice.bind_image(model, first, first_record)
    bound = registry.image_binding(model)
    assert bound is not None
    assert (bound.model_id, bound.image_id, bound.record_digest) == (model, first, first_record)
    assert bound.bound_at == w3.eth.get_block("latest")["timestamp"]
    assert bound.image_id_text == "sha256:" + first.hex()
    # a new image for the same model (say, the base patched): the latest binding is read, the
    # events keep every one
    second, second_record = os.urandom(32), os.urandom(32)
    alice.bind_image(model, second, second_record)
    latest = registry.image_binding(model)
    assert latest is not None and (latest.image_id, latest.record_digest) == (
        second,
        second_record,
    )
    history = registry.image_bindings(model)
    assert [(e.args["id"], e.args["imageId"], e.args["recordDigest"]) for e in history] == [
        (model, first, first_record),
        (model, second, second_record),
    ]
    # a binding is per model: another model of Alice's has none
    assert registry.image_binding(alice.register(registration()).id) is None


def test_only_the_registrant_may_bind(registry: Registry) -> None:
    model = as_user(registry, ALICE).register(registration()).id
    registry.grant_role("auditor", BOB.address)
    for who in (MALLORY, BOB):  # an attacker, and an auditor (who may revoke, not bind)
        with pytest.raises(ContractRevertError) as info:
            as_user(registry, who).bind_image(model, os.urandom(32), os.urandom(32))
        assert revert(info) == ("UnauthorizedBinder", {"id": h(model), "account": who.address})
    assert registry.image_binding(model) is None
    assert registry.image_bindings(model) == []


def test_an_attacker_cannot_rebind_a_bound_model(registry: Registry) -> None:
    alice = as_user(registry, ALICE)
    model = alice.register(registration()).id
    image, record = os.urandom(32), os.urandom(32)
    alice.bind_image(model, image, record)
    with pytest.raises(ContractRevertError) as info:
        as_user(registry, MALLORY).bind_image(model, os.urandom(32), os.urandom(32))
    assert revert(info) == ("UnauthorizedBinder", {"id": h(model), "account": MALLORY.address})
    bound = registry.image_binding(model)
    assert bound is not None and (bound.image_id, bound.record_digest) == (image, record)


def test_no_binding_to_a_revoked_or_unknown_model(registry: Registry) -> None:
    alice = as_user(registry, ALICE)
    model = alice.register(registration()).id
    alice.bind_image(model, os.urandom(32), os.urandom(32))
    alice.revoke(model, os.urandom(32))
    with pytest.raises(ContractRevertError) as info:
        alice.bind_image(model, os.urandom(32), os.urandom(32))
    assert revert(info) == ("ModelNotActive", {"id": h(model)})
    ghost = os.urandom(32)
    with pytest.raises(ContractRevertError) as info:
        alice.bind_image(ghost, os.urandom(32), os.urandom(32))
    assert revert(info) == ("ModelNotFound", {"id": h(ghost)})
    # a tainted model (its parent revoked) is active on chain: the contract does not walk the
    # family tree; verification and serving refuse tainted models whatever image they have
    parent = alice.register(registration()).id
    child = alice.register(registration(Parent(parent, "fine-tune"))).id
    alice.revoke(parent, os.urandom(32))
    alice.bind_image(child, os.urandom(32), os.urandom(32))
    assert registry.is_tainted(child)


def test_zero_digests_are_refused(registry: Registry) -> None:
    alice = as_user(registry, ALICE)
    model = alice.register(registration()).id
    for image, record in ((ZERO, os.urandom(32)), (os.urandom(32), ZERO)):
        with pytest.raises(ContractRevertError) as info:
            alice.bind_image(model, image, record)
        assert revert(info) == ("ZeroDigest", {})
    assert registry.image_binding(model) is None
