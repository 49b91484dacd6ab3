"""OutputAttestor on the real anvil: authorisation, single and batched attestations, every error."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak
from web3 import Web3

from provenance.attest import Batch, OutputRecord, OutputTree, verify_output_proof
from provenance.chain.attestor import AttestorContract
from provenance.chain.client import connect
from provenance.errors import ContractRevertError, IntegrityError
from provenance.registration import Parent, Registration
from provenance.stack import Stack

from .chainutil import ALICE, BOB, MALLORY, as_user, deploy_contracts, registration, transactor

pytestmark = pytest.mark.integration

IMAGE = keccak(text="sha256:image-config")


@pytest.fixture(scope="module")
def w3(stack: Stack) -> Web3:
    return connect(stack.config.chain.rpc_url)


class Setup:
    def __init__(self, w3: Web3, folder: Path) -> None:
        self.registry, self.attestor = deploy_contracts(w3, folder)
        self.reg = registration()
        self.model_id = as_user(self.registry, ALICE).register(self.reg).id
        assert self.model_id == self.reg.model_id_for(ALICE.address)
        self.node = Account.create()
        self.owner = AttestorContract(w3, self.attestor.address, transactor(w3, ALICE))
        self.owner.authorize_node(self.model_id, self.node.address, self.reg, IMAGE)

    def record(self, seq: int, output: bytes = b"setosa") -> OutputRecord:
        return OutputRecord(
            self.model_id,
            self.reg.model_digest,
            hashlib.sha256(f"input {seq}".encode()).digest(),
            hashlib.sha256(output + str(seq).encode()).digest(),
            seq,
            int(time.time()),
        )


@pytest.fixture
def setup(w3: Web3, tmp_path: Path) -> Setup:
    return Setup(w3, tmp_path)


def err(info: pytest.ExceptionInfo[ContractRevertError]) -> tuple[str, dict[str, object]]:
    return info.value.error, info.value.arguments


def h(b: bytes) -> str:
    return "0x" + b.hex()


def test_an_authorised_node_attests_one_output(setup: Setup, w3: Web3) -> None:
    assert setup.attestor.authorization(setup.model_id, setup.node.address) == (
        setup.reg.model_digest,
        IMAGE,
    )
    record = setup.record(0)
    assert setup.attestor.leaf_of(record) == record.leaf
    batch = Batch.of_one(record)
    signable = encode_typed_data(full_message=setup.attestor.typed_data(batch))
    assert setup.attestor.batch_digest(batch) == keccak(
        b"\x19" + signable.version + signable.header + signable.body
    )
    receipt = setup.attestor.attest(record, setup.attestor.sign(setup.node, batch))
    (event,) = setup.attestor.contract.events.OutputsAttested().process_receipt(receipt)
    assert event["args"]["root"] == record.leaf
    assert event["args"]["node"] == setup.node.address
    assert (event["args"]["firstSequence"], event["args"]["count"]) == (0, 1)
    assert setup.attestor.next_sequence(setup.node.address) == 1


def test_a_batch_of_a_thousand_and_its_proofs(setup: Setup) -> None:
    records = [setup.record(i) for i in range(1000)]
    tree = OutputTree([r.leaf for r in records])
    batch = Batch(
        setup.model_id, setup.reg.model_digest, tree.root, 0, len(records), int(time.time())
    )
    setup.attestor.attest_batch(batch, setup.attestor.sign(setup.node, batch))
    assert setup.attestor.next_sequence(setup.node.address) == 1000
    for index in (0, 1, 500, 998, 999):
        proof = tree.proof(index)
        verify_output_proof(tree.root, proof, records[index])
        assert setup.attestor.verify_record(tree.root, proof, records[index]) is True
    tampered = setup.record(500, output=b"virginica")
    with pytest.raises(IntegrityError) as info:
        verify_output_proof(tree.root, tree.proof(500), tampered)
    assert str(info.value) == (
        f"output record 500 of model {h(setup.model_id)} is not in the batch with root {h(tree.root)}"
    )
    assert setup.attestor.verify_record(tree.root, tree.proof(500), tampered) is False
    with pytest.raises(IntegrityError):
        verify_output_proof(tree.root, tree.proof(501), records[500])  # another leaf's proof


def test_refusals(setup: Setup, w3: Web3) -> None:
    record = setup.record(0)
    stranger = Account.create()
    with pytest.raises(ContractRevertError) as info:
        setup.attestor.attest(record, setup.attestor.sign(stranger, Batch.of_one(record)))
    assert err(info) == (
        "NodeNotAuthorized",
        {"modelId": h(setup.model_id), "node": stranger.address},
    )
    wrong_digest = OutputRecord(
        setup.model_id,
        os.urandom(32),
        record.input_digest,
        record.output_digest,
        0,
        record.timestamp,
    )
    with pytest.raises(ContractRevertError) as info:
        setup.attestor.attest(
            wrong_digest, setup.attestor.sign(setup.node, Batch.of_one(wrong_digest))
        )
    assert err(info) == (
        "NodeNotAuthorized",
        {"modelId": h(setup.model_id), "node": setup.node.address},
    )
    signature = setup.attestor.sign(setup.node, Batch.of_one(record))
    setup.attestor.attest(record, signature)
    with pytest.raises(ContractRevertError) as info:  # the same signature again
        setup.attestor.attest(record, signature)
    assert err(info) == (
        "UnexpectedSequence",
        {"node": setup.node.address, "expected": 1, "got": 0},
    )
    skipped = setup.record(5)
    with pytest.raises(ContractRevertError) as info:
        setup.attestor.attest(skipped, setup.attestor.sign(setup.node, Batch.of_one(skipped)))
    assert err(info) == (
        "UnexpectedSequence",
        {"node": setup.node.address, "expected": 1, "got": 5},
    )
    empty = Batch(setup.model_id, setup.reg.model_digest, os.urandom(32), 1, 0, 0)
    with pytest.raises(ContractRevertError) as info:
        setup.attestor.attest_batch(empty, setup.attestor.sign(setup.node, empty))
    assert err(info) == ("EmptyBatch", {})


def test_a_revoked_model_and_a_withdrawn_node_attest_nothing(setup: Setup) -> None:
    setup.owner.deauthorize_node(setup.model_id, setup.node.address)
    record = setup.record(0)
    with pytest.raises(ContractRevertError) as info:
        setup.attestor.attest(record, setup.attestor.sign(setup.node, Batch.of_one(record)))
    assert err(info) == (
        "NodeNotAuthorized",
        {"modelId": h(setup.model_id), "node": setup.node.address},
    )
    setup.owner.authorize_node(setup.model_id, setup.node.address, setup.reg, IMAGE)
    as_user(setup.registry, ALICE).revoke(setup.model_id, keccak(text="poisoned"))
    with pytest.raises(ContractRevertError) as info:
        setup.attestor.attest(record, setup.attestor.sign(setup.node, Batch.of_one(record)))
    assert err(info) == ("ModelNotActive", {"modelId": h(setup.model_id)})


def test_only_the_registrant_authorises_and_only_for_the_registered_digest(
    setup: Setup, w3: Web3
) -> None:
    bob = AttestorContract(w3, setup.attestor.address, transactor(w3, BOB))
    node = Account.create().address
    with pytest.raises(ContractRevertError) as info:
        bob.authorize_node(setup.model_id, node, setup.reg, IMAGE)
    assert err(info) == (
        "NotModelRegistrant",
        {"modelId": h(setup.model_id), "account": BOB.address},
    )
    with pytest.raises(ContractRevertError) as info:
        bob.deauthorize_node(setup.model_id, setup.node.address)
    assert err(info) == (
        "NotModelRegistrant",
        {"modelId": h(setup.model_id), "account": BOB.address},
    )
    forged = Registration(setup.reg.certificate_digest, os.urandom(32), setup.reg.data_commitment)
    with pytest.raises(ContractRevertError) as info:
        setup.owner.authorize_node(setup.model_id, node, forged, IMAGE)
    assert err(info) == (
        "ModelDigestMismatch",
        {"modelId": h(setup.model_id), "modelDigest": h(forged.model_digest)},
    )
    ghost = os.urandom(32)
    with pytest.raises(ContractRevertError) as info:
        setup.owner.authorize_node(ghost, node, setup.reg, IMAGE)
    assert err(info) == ("ModelNotActive", {"modelId": h(ghost)})
    with pytest.raises(ContractRevertError) as info:
        setup.owner.authorize_node(setup.model_id, "0x" + "00" * 20, setup.reg, IMAGE)
    assert err(info) == ("ZeroValue", {})


def test_authorize_node_proves_the_digest_with_the_registrant_of_the_record(
    setup: Setup, w3: Web3
) -> None:
    """The pre-image's registrant comes from the registry's record, never from the caller."""
    bobs = as_user(setup.registry, BOB).register(setup.reg)  # the same content, Bob's own id
    assert bobs.id == setup.reg.model_id_for(BOB.address) != setup.model_id
    bob = AttestorContract(w3, setup.attestor.address, transactor(w3, BOB))
    node = Account.create().address
    bob.authorize_node(bobs.id, node, setup.reg, IMAGE)
    assert setup.attestor.authorization(bobs.id, node) == (setup.reg.model_digest, IMAGE)
    assert setup.attestor.authorization(setup.model_id, node) == (b"\x00" * 32, b"\x00" * 32)
    with pytest.raises(ContractRevertError) as info:
        setup.owner.authorize_node(bobs.id, node, setup.reg, IMAGE)
    assert err(info) == ("NotModelRegistrant", {"modelId": h(bobs.id), "account": ALICE.address})
    # a wrong pre-image (other parents, so another parents hash) proves nothing
    reparented = Registration(
        setup.reg.certificate_digest,
        setup.reg.model_digest,
        setup.reg.data_commitment,
        parents=(Parent(bobs.id),),
    )
    with pytest.raises(ContractRevertError) as info:
        setup.owner.authorize_node(setup.model_id, node, reparented, IMAGE)
    assert err(info) == (
        "ModelDigestMismatch",
        {"modelId": h(setup.model_id), "modelDigest": h(setup.reg.model_digest)},
    )
    functions = setup.owner.contract.functions
    # a wrong data commitment in the raw pre-image
    with pytest.raises(ContractRevertError) as info:
        setup.owner._send(
            functions.authorizeNode(
                setup.model_id,
                node,
                setup.reg.certificate_digest,
                setup.reg.model_digest,
                os.urandom(32),
                setup.reg.parents_hash,
                IMAGE,
            ),
            "authorize node",
        )
    assert err(info) == (
        "ModelDigestMismatch",
        {"modelId": h(setup.model_id), "modelDigest": h(setup.reg.model_digest)},
    )


def test_an_operator_the_registrant_approved_authorises_nodes(setup: Setup, w3: Web3) -> None:
    bob = AttestorContract(w3, setup.attestor.address, transactor(w3, BOB))
    node = Account.create().address
    assert setup.owner.is_operator(ALICE.address, BOB.address) is False
    receipt = setup.owner.set_operator(BOB.address)
    (event,) = setup.attestor.contract.events.OperatorSet().process_receipt(receipt)
    assert dict(event["args"]) == {
        "registrant": ALICE.address,
        "operator": BOB.address,
        "approved": True,
    }
    assert setup.owner.is_operator(ALICE.address, BOB.address) is True
    bob.authorize_node(setup.model_id, node, setup.reg, IMAGE)
    assert setup.attestor.authorization(setup.model_id, node) == (setup.reg.model_digest, IMAGE)
    bob.deauthorize_node(setup.model_id, node)
    assert setup.attestor.authorization(setup.model_id, node) == (b"\x00" * 32, b"\x00" * 32)
    # nobody else is an operator
    with pytest.raises(ContractRevertError) as info:
        AttestorContract(w3, setup.attestor.address, transactor(w3, MALLORY)).authorize_node(
            setup.model_id, node, setup.reg, IMAGE
        )
    assert err(info) == (
        "NotModelRegistrant",
        {"modelId": h(setup.model_id), "account": MALLORY.address},
    )
    setup.owner.set_operator(BOB.address, approved=False)
    with pytest.raises(ContractRevertError) as info:
        bob.authorize_node(setup.model_id, node, setup.reg, IMAGE)
    assert err(info) == (
        "NotModelRegistrant",
        {"modelId": h(setup.model_id), "account": BOB.address},
    )
    with pytest.raises(ContractRevertError) as info:
        setup.owner.set_operator("0x" + "00" * 20)
    assert err(info) == ("ZeroValue", {})


def test_signatures_do_not_cross_attestor_deployments(
    setup: Setup, w3: Web3, tmp_path: Path
) -> None:
    _, other = deploy_contracts(w3, tmp_path)
    record = setup.record(0)
    foreign = other.sign(setup.node, Batch.of_one(record))  # domain: the other contract
    with pytest.raises(ContractRevertError) as info:
        setup.attestor.attest(record, foreign)
    assert info.value.error == "NodeNotAuthorized"
    assert info.value.arguments["node"] != setup.node.address
