"""ModelRegistry and its Python client against the real anvil: every function, every error."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak
from web3 import Web3

from provenance.chain.client import connect
from provenance.chain.index import LineageIndex
from provenance.chain.registry import Registry
from provenance.chain.tx import Transactor, send
from provenance.chain.types import Status
from provenance.errors import ChainError, ContractRevertError, ProvenanceError
from provenance.registration import Parent, Registration, Relation
from provenance.stack import Stack

from .chainutil import (
    ADMIN,
    ALICE,
    BOB,
    MALLORY,
    as_user,
    compile_test_contract,
    deploy_registry,
    registration,
)

pytestmark = pytest.mark.integration

REASON = keccak(text="incident report")


@pytest.fixture(scope="module")
def w3(stack: Stack) -> Web3:
    return connect(stack.config.chain.rpc_url)


@pytest.fixture
def registry(w3: Web3, tmp_path: Path) -> Registry:
    return deploy_registry(w3, tmp_path)


@pytest.fixture
def allowlisted(w3: Web3, tmp_path: Path) -> Registry:
    return deploy_registry(w3, tmp_path, open_registration=False)


def h(b: bytes) -> str:
    return "0x" + b.hex()


def revert(exc: pytest.ExceptionInfo[ContractRevertError]) -> tuple[str, dict[str, object]]:
    return exc.value.error, exc.value.arguments


# ---------------------------------------------------------------- ids & digests
def test_model_id_parity_with_the_contract(registry: Registry) -> None:
    root = registration()
    child = registration(Parent(os.urandom(32), "merge"), Parent(os.urandom(32), "distillation"))
    for reg in (root, child):
        for who in (ALICE.address, BOB.address.lower()):
            assert registry.computed_id(reg, who) == reg.model_id_for(who)
        # the registrant is part of the id: the same content gets one id per registrant
        assert reg.model_id_for(ALICE.address) != reg.model_id_for(BOB.address)


def test_the_registered_id_is_the_one_computed_for_the_registrant(registry: Registry) -> None:
    reg = registration()
    done = as_user(registry, ALICE).register(reg)
    assert done.id == registry.computed_id(reg, ALICE.address) == reg.model_id_for(ALICE.address)
    event = registry.registration_event(done.id)
    assert event is not None and event.args["registrant"] == ALICE.address


def test_eip712_digest_parity_with_the_contract(registry: Registry, w3: Web3) -> None:
    reg = registration(
        Parent(os.urandom(32), Relation.QUANTIZATION), Parent(os.urandom(32), "other")
    )
    deadline = 2**40
    typed = registry.typed_data(reg, ALICE.address, 7, deadline)
    signable = encode_typed_data(full_message=typed)
    python_digest = keccak(b"\x19" + signable.version + signable.header + signable.body)
    assert registry.delegated_digest(reg, ALICE.address, 7, deadline) == python_digest
    assert typed["domain"]["chainId"] == w3.eth.chain_id


def test_parents_are_canonicalised_and_duplicates_refused() -> None:
    a, b = os.urandom(32), os.urandom(32)
    one = Registration(b"\x01" * 32, b"\x02" * 32, parents=(Parent(a), Parent(b)))
    two = Registration(b"\x01" * 32, b"\x02" * 32, parents=(Parent(b), Parent(a)))
    assert one.model_id_for(ALICE.address) == two.model_id_for(ALICE.address)
    assert one.parents_hash == two.parents_hash
    with pytest.raises(ProvenanceError, match=r"^a parent appears twice$"):
        Registration(b"\x01" * 32, b"\x02" * 32, parents=(Parent(a), Parent(a, "merge")))


# ------------------------------------------------------------------ register
def test_register_a_root_and_a_child(registry: Registry, w3: Web3) -> None:
    alice = as_user(registry, ALICE)
    root = alice.register(registration())
    assert root.registrant == ALICE.address and root.already is False
    record = registry.record(root.id)
    assert record.status is Status.ACTIVE
    assert record.registrant == ALICE.address
    assert record.registered_at == w3.eth.get_block(root.block)["timestamp"]
    assert record.revoked_parent_acknowledged is False

    child = as_user(registry, BOB).register(registration(Parent(root.id, "fine-tune")))
    assert registry.parents(child.id) == [Parent(root.id, Relation.FINE_TUNE)]
    assert registry.children(root.id) == [(child.id, Relation.FINE_TUNE)]
    assert registry.models_of(ALICE.address) == [root.id]
    assert registry.models_of(BOB.address) == [child.id]
    event = registry.registration_event(child.id)
    assert event is not None and event.args["registrant"] == BOB.address


def test_registering_the_same_content_twice(registry: Registry) -> None:
    reg = registration()
    alice = as_user(registry, ALICE)
    first = alice.register(reg)
    again = alice.register(reg)
    assert again.already is True and again.id == first.id and again.transaction is None
    # the contract itself refuses the same content from the same registrant
    with pytest.raises(ContractRevertError) as info:
        alice._send(alice.contract.functions.register(reg.as_abi()), "register")
    assert revert(info) == ("ModelAlreadyRegistered", {"id": h(first.id)})
    assert str(info.value) == f"ModelRegistry reverted: ModelAlreadyRegistered(id={h(first.id)})"
    # someone else registering the same content gets an id of its own (the id binds him)
    bobs = as_user(registry, BOB).register(reg)
    assert bobs.id == reg.model_id_for(BOB.address) != first.id and bobs.already is False
    assert registry.record(first.id).registrant == ALICE.address


def test_unknown_parent(registry: Registry) -> None:
    ghost = os.urandom(32)
    with pytest.raises(ContractRevertError) as info:
        registry.register(registration(Parent(ghost, "transfer")))
    assert revert(info) == ("ParentNotFound", {"parentId": h(ghost)})


def test_revoked_parent_needs_acknowledgement(registry: Registry) -> None:
    parent = registry.register(registration())
    registry.revoke(parent.id, REASON)
    with pytest.raises(ContractRevertError) as info:
        registry.register(registration(Parent(parent.id, "checkpoint")))
    assert revert(info) == ("ParentRevoked", {"parentId": h(parent.id)})
    child = registry.register(registration(Parent(parent.id, "checkpoint"), ack=True))
    assert registry.record(child.id).revoked_parent_acknowledged is True
    acks = [e for e in registry.events() if e.name == "RevokedParentAcknowledged"]
    assert [(e.args["id"], e.args["parent"]) for e in acks] == [(child.id, parent.id)]
    assert registry.is_tainted(child.id) is True


def test_parents_out_of_order_are_refused_by_the_contract(registry: Registry) -> None:
    a = registry.register(registration()).id
    b = registry.register(registration()).id
    low, high = sorted((a, b))
    raw = (os.urandom(32), os.urandom(32), os.urandom(32), [(high, 0), (low, 0)], False)
    with pytest.raises(ContractRevertError) as info:
        registry._send(registry.contract.functions.register(raw), "register")
    assert revert(info) == ("ParentsNotCanonical", {"index": 1})
    dup = (os.urandom(32), os.urandom(32), os.urandom(32), [(low, 0), (low, 4)], False)
    with pytest.raises(ContractRevertError) as info:
        registry._send(registry.contract.functions.register(dup), "register")
    assert revert(info) == ("ParentsNotCanonical", {"index": 1})


def test_zero_digests_are_refused(registry: Registry) -> None:
    with pytest.raises(ContractRevertError) as info:
        registry.register(Registration(b"\x00" * 32, os.urandom(32)))
    assert revert(info) == ("ZeroDigest", {})
    with pytest.raises(ContractRevertError) as info:
        registry.register(Registration(os.urandom(32), b"\x00" * 32))
    assert revert(info) == ("ZeroDigest", {})


def test_three_parents_and_every_relation_in_the_events(registry: Registry) -> None:
    parents = [registry.register(registration()).id for _ in range(3)]
    relations = ["merge", "distillation", "online-update"]
    child = registry.register(
        registration(*(Parent(p, r) for p, r in zip(parents, relations, strict=True)))
    )
    expected = sorted(Parent(p, r) for p, r in zip(parents, relations, strict=True))
    assert registry.parents(child.id) == expected
    for p in parents:
        assert [c for c, _ in registry.children(p)] == [child.id]


# ----------------------------------------------------------------- allowlist
def test_allowlist_mode(allowlisted: Registry) -> None:
    assert allowlisted.is_open() is False
    alice = as_user(allowlisted, ALICE)
    with pytest.raises(ContractRevertError) as info:
        alice.register(registration())
    assert revert(info) == ("UnauthorizedRegistrant", {"account": ALICE.address})
    allowlisted.grant_role("registrant", ALICE.address)
    assert allowlisted.has_role("registrant", ALICE.address)
    assert alice.register(registration()).already is False
    allowlisted.revoke_role("registrant", ALICE.address)
    with pytest.raises(ContractRevertError) as info:
        alice.register(registration())
    assert revert(info) == ("UnauthorizedRegistrant", {"account": ALICE.address})


def test_only_the_admin_manages_roles(allowlisted: Registry) -> None:
    with pytest.raises(ContractRevertError) as info:
        as_user(allowlisted, MALLORY).grant_role("registrant", MALLORY.address)
    assert revert(info) == (
        "AccessControlUnauthorizedAccount",
        {"account": MALLORY.address, "neededRole": "0x" + "00" * 32},
    )
    with pytest.raises(
        ChainError, match=r"^unknown role 'owner'; use registrant, auditor or admin$"
    ):
        allowlisted.grant_role("owner", MALLORY.address)


def test_open_registry_accepts_anyone(registry: Registry) -> None:
    assert registry.is_open() is True
    assert as_user(registry, MALLORY).register(registration()).registrant == MALLORY.address


# ------------------------------------------------------------------ revoke
def test_revocation_rules(registry: Registry) -> None:
    model = as_user(registry, ALICE).register(registration()).id
    with pytest.raises(ContractRevertError) as info:
        as_user(registry, MALLORY).revoke(model, REASON)
    assert revert(info) == ("UnauthorizedRevoker", {"id": h(model), "account": MALLORY.address})
    as_user(registry, ALICE).revoke(model, REASON)
    assert registry.status(model) is Status.REVOKED
    with pytest.raises(ContractRevertError) as info:
        as_user(registry, ALICE).revoke(model, REASON)
    assert revert(info) == ("AlreadyRevoked", {"id": h(model)})
    ghost = os.urandom(32)
    with pytest.raises(ContractRevertError) as info:
        registry.revoke(ghost, REASON)
    assert revert(info) == ("ModelNotFound", {"id": h(ghost)})
    revoked = [e for e in registry.events() if e.name == "ModelRevoked"]
    assert [(e.args["id"], e.args["revokedBy"], e.args["reasonDigest"]) for e in revoked] == [
        (model, ALICE.address, REASON)
    ]


def test_an_auditor_may_revoke_any_model(registry: Registry) -> None:
    model = as_user(registry, ALICE).register(registration()).id
    registry.grant_role("auditor", BOB.address)
    as_user(registry, BOB).revoke(model, REASON)
    assert registry.status(model) is Status.REVOKED


# ----------------------------------------------------------------- delegated
def test_delegated_registration_by_a_relayer(registry: Registry) -> None:
    reg = registration()
    deadline = int(time.time()) + 3600
    signature = registry.sign_registration(ALICE, reg, deadline=deadline)
    relayer = as_user(registry, BOB)
    done = relayer.register_for(reg, ALICE.address, deadline, signature)
    assert done.registrant == ALICE.address and done.id == reg.model_id_for(ALICE.address)
    assert registry.record(done.id).registrant == ALICE.address
    assert registry.nonce(ALICE.address) == 1
    # the same signature again: the nonce moved on, so it no longer verifies
    other = registration()
    with pytest.raises(ContractRevertError) as info:
        relayer.register_for(reg, ALICE.address, deadline, signature)
    assert revert(info) == ("InvalidSignature", {"registrant": ALICE.address})
    # a signature over other content, a signature by someone else
    with pytest.raises(ContractRevertError) as info:
        relayer.register_for(other, ALICE.address, deadline, signature)
    assert revert(info) == ("InvalidSignature", {"registrant": ALICE.address})
    forged = registry.sign_registration(MALLORY, other, deadline=deadline, nonce=1)
    with pytest.raises(ContractRevertError) as info:
        relayer.register_for(other, ALICE.address, deadline, forged)
    assert revert(info) == ("InvalidSignature", {"registrant": ALICE.address})


def test_delegated_signature_expires(registry: Registry, w3: Web3) -> None:
    reg = registration()
    deadline = int(w3.eth.get_block("latest")["timestamp"]) - 1
    signature = registry.sign_registration(ALICE, reg, deadline=deadline)
    with pytest.raises(ContractRevertError) as info:
        registry.register_for(reg, ALICE.address, deadline, signature)
    assert revert(info) == ("SignatureExpired", {"deadline": deadline})


def test_delegated_signature_does_not_replay_on_another_contract_or_chain(
    registry: Registry, w3: Web3, tmp_path: Path
) -> None:
    reg = registration()
    deadline = int(time.time()) + 3600
    other = deploy_registry(w3, tmp_path)
    signature = other.sign_registration(ALICE, reg, deadline=deadline)  # for the other contract
    with pytest.raises(ContractRevertError) as info:
        registry.register_for(reg, ALICE.address, deadline, signature)
    assert revert(info) == ("InvalidSignature", {"registrant": ALICE.address})
    typed = registry.typed_data(reg, ALICE.address, 0, deadline)
    typed["domain"]["chainId"] = 1
    mainnet_sig = bytes(ALICE.sign_message(encode_typed_data(full_message=typed)).signature)
    with pytest.raises(ContractRevertError) as info:
        registry.register_for(reg, ALICE.address, deadline, mainnet_sig)
    assert revert(info) == ("InvalidSignature", {"registrant": ALICE.address})


def test_delegated_registration_needs_the_role_in_allowlist_mode(allowlisted: Registry) -> None:
    reg = registration()
    deadline = int(time.time()) + 3600
    signature = allowlisted.sign_registration(ALICE, reg, deadline=deadline)
    with pytest.raises(ContractRevertError) as info:
        allowlisted.register_for(reg, ALICE.address, deadline, signature)
    assert revert(info) == ("UnauthorizedRegistrant", {"account": ALICE.address})


def test_a_smart_contract_wallet_signs_through_erc1271(registry: Registry, w3: Web3) -> None:
    artifact = compile_test_contract("ERC1271Wallet")
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    built = factory.constructor(ALICE.address).build_transaction({"from": ADMIN.address})
    wallet = send(w3, ADMIN, dict(built))["contractAddress"]
    assert wallet is not None
    reg = registration()
    deadline = int(time.time()) + 3600
    typed = registry.typed_data(reg, wallet, 0, deadline)
    signature = bytes(ALICE.sign_message(encode_typed_data(full_message=typed)).signature)
    done = registry.register_for(reg, wallet, deadline, signature)
    assert registry.record(done.id).registrant == Web3.to_checksum_address(wallet)
    wrong = bytes(BOB.sign_message(encode_typed_data(full_message=registry.typed_data(
        registration(), wallet, 1, deadline))).signature)  # fmt: skip
    with pytest.raises(ContractRevertError) as info:
        registry.register_for(registration(), wallet, deadline, wrong)
    assert revert(info) == ("InvalidSignature", {"registrant": Web3.to_checksum_address(wallet)})


# --------------------------------------------------------------------- batch
def test_batch_registration_with_parents_inside_the_batch(registry: Registry) -> None:
    me = ADMIN.address
    root = registration()
    child = registration(Parent(root.model_id_for(me), "transfer"))
    grandchild = registration(Parent(child.model_id_for(me), "quantization"))
    done = registry.register_batch([root, child, grandchild])
    ids = [r.model_id_for(me) for r in (root, child, grandchild)]
    assert [d.id for d in done] == ids
    assert len({d.transaction for d in done}) == 1
    assert registry.ancestors(ids[2]) == [ids[1], ids[0]]
    assert registry.descendants(ids[0]) == [ids[1], ids[2]]
    with pytest.raises(ContractRevertError) as info:
        registry.register_batch([])
    assert revert(info) == ("EmptyBatch", {})


def test_a_failing_entry_reverts_the_whole_batch(registry: Registry) -> None:
    good = registration()
    ghost = os.urandom(32)
    with pytest.raises(ContractRevertError) as info:
        registry.register_batch([good, registration(Parent(ghost))])
    assert revert(info) == ("ParentNotFound", {"parentId": h(ghost)})
    assert registry.status(good.model_id_for(ADMIN.address)) is Status.NONE


# ------------------------------------------------------------- concurrency
def test_threads_sharing_one_account_lose_nothing(registry: Registry, w3: Web3) -> None:
    shared = Registry(
        w3, registry.address, Transactor(w3, Account.create()), from_block=registry.from_block
    )
    send(w3, ADMIN, {"to": shared.transactor.address, "value": 10**18})  # type: ignore[union-attr]
    regs = [registration() for _ in range(40)]
    errors: list[BaseException] = []

    def worker(chunk: list[Registration]) -> None:
        try:
            for reg in chunk:
                shared.register(reg)
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(regs[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    sender = shared.transactor.address  # type: ignore[union-attr]
    assert all(registry.status(r.model_id_for(sender)) is Status.ACTIVE for r in regs)
    assert w3.eth.get_transaction_count(shared.transactor.address) == 40  # type: ignore[union-attr]


# ---------------------------------------------------------------- the index
def test_index_answers_tree_queries_like_the_chain(registry: Registry, tmp_path: Path) -> None:
    a = registry.register(registration()).id
    b = registry.register(registration(Parent(a, "fine-tune"))).id
    c = registry.register(registration(Parent(a, "distillation"))).id
    d = registry.register(registration(Parent(b, "merge"), Parent(c, "merge"))).id
    registry.revoke(a, REASON)
    with LineageIndex(tmp_path / "index.sqlite") as index:
        result = index.sync(registry)
        assert result.reset is False and result.events >= 5
        for model in (a, b, c, d):
            assert index.parents(model) == registry.parents(model)
            assert sorted(index.children(model)) == sorted(registry.children(model))
            assert sorted(index.ancestors(model)) == sorted(registry.ancestors(model))
            assert sorted(index.descendants(model)) == sorted(registry.descendants(model))
            assert index.is_tainted(model) == registry.is_tainted(model)
        assert set(index.ancestors(d)) == {a, b, c}
        assert index.is_tainted(d) and not index.is_tainted(a)
        assert index.require(a).status is Status.REVOKED
        assert index.require(a).revoke_reason == REASON
        assert index.by_certificate(index.require(b).certificate_digest) == [b]
        assert index.by_model_digest(index.require(c).model_digest) == [c]


def test_index_resumes_after_restart_and_resyncs_after_a_reorg(
    registry: Registry, w3: Web3, tmp_path: Path
) -> None:
    path = tmp_path / "index.sqlite"
    first = registry.register(registration()).id
    with LineageIndex(path) as index:
        index.sync(registry)
        last = index.last_block
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    second = registry.register(registration(Parent(first))).id
    with LineageIndex(path) as index:  # a restart: resumes after the last block
        result = index.sync(registry)
        assert result.reset is False and result.from_block == (last or 0) + 1 and result.events == 1
        assert index.ancestors(second) == [first]
    # the chain forgets `second` and mines something else at the same height
    assert w3.provider.make_request("evm_revert", [snapshot])["result"] is True  # type: ignore[arg-type]
    registry.transactor._next_nonce = None  # type: ignore[union-attr]
    third = registry.register(registration()).id
    with LineageIndex(path) as index:
        result = index.sync(registry)
        assert result.reset is True
        assert index.get(second) is None
        assert set(index.all_ids()) == {first, third}


# ------------------------------------------------------- inherited surfaces
def test_eip712_domain_and_interfaces(registry: Registry, w3: Web3) -> None:
    _fields, name, version, chain_id, contract, _salt, _extensions = (
        registry.contract.functions.eip712Domain().call()
    )
    assert (name, version, chain_id, contract) == (
        "provenance ModelRegistry",
        "1",
        w3.eth.chain_id,
        registry.address,
    )
    functions = registry.contract.functions
    assert functions.supportsInterface(bytes.fromhex("7965db0b")).call() is True  # IAccessControl
    assert functions.supportsInterface(bytes.fromhex("01ffc9a7")).call() is True  # ERC-165
    assert functions.supportsInterface(bytes.fromhex("ffffffff")).call() is False
    assert functions.REGISTRANT_ROLE().call() == keccak(text="REGISTRANT_ROLE")
    assert functions.AUDITOR_ROLE().call() == keccak(text="AUDITOR_ROLE")


def test_renouncing_a_role_only_for_oneself(allowlisted: Registry) -> None:
    role = keccak(text="REGISTRANT_ROLE")
    allowlisted.grant_role("registrant", ALICE.address)
    bob = as_user(allowlisted, BOB)
    with pytest.raises(ContractRevertError) as info:
        bob._send(bob.contract.functions.renounceRole(role, ALICE.address), "renounce")
    assert revert(info) == ("AccessControlBadConfirmation", {})
    alice = as_user(allowlisted, ALICE)
    alice._send(alice.contract.functions.renounceRole(role, ALICE.address), "renounce")
    assert allowlisted.has_role("registrant", ALICE.address) is False


def test_a_read_only_client_refuses_to_write(registry: Registry) -> None:
    reader = Registry(registry.w3, registry.address)
    with pytest.raises(
        ChainError, match=r"^this Registry was built without a Transactor; it can only read$"
    ):
        reader.register(registration())


def test_from_deployment_checks_the_chain(registry: Registry, w3: Web3, tmp_path: Path) -> None:
    from provenance.chain.deploy import Deployment

    path = tmp_path / "d.json"
    Deployment(chain_id=5).write(path)
    with pytest.raises(ChainError, match=rf"^no ModelRegistry in deployment file {path}$"):
        Registry.from_deployment(w3, path)
