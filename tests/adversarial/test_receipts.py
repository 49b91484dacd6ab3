"""Attacks on output receipts and on serving, carried out for real on the local stack; each is
met by one named check (or a refusal) with its exact error class.

1. a receipt through a fake OutputAttestor the attacker deployed (it answers every view);
2. a node authorised for the attacker's model M re-signs M's anchored root as a batch of the
   victim's model G; and a node re-dates its own anchored batch a year back;
3. a node deauthorised before its batch is anchored (the trusted contract is made to record
   it: the verifier must not rely on the contract having refused it);
4. a receipt replayed against another chain;
5. serving a model whose registrant nobody trusts.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3

from provenance.attest import Batch, OutputRecord, OutputTree, Receipt, batch_typed_data
from provenance.chain.attestor import AttestorContract, verify_receipt_on_chain
from provenance.chain.client import connect
from provenance.chain.deploy import Deployment, ensure_deployed
from provenance.chain.registry import Registry
from provenance.errors import ConfigError, IntegrityError, PolicyError
from provenance.stack import Stack, ephemeral_anvil
from provenance.storage import Kubo
from provenance.verify import CheckName, CheckStatus, Policy, Report, Verifier
from tests.integration.chainutil import ADMIN, ALICE, MALLORY, compile_test_contract, transactor
from tests.integration.conftest import tools
from tests.integration.test_stack import run_cli
from tests.integration.test_verify import Trained, train

pytestmark = pytest.mark.integration

YEAR = 365 * 24 * 3600
IMAGE = keccak(text="image")


@pytest.fixture(scope="module")
def w3(stack: Stack) -> Web3:
    return connect(stack.config.chain.rpc_url)


@pytest.fixture(scope="module")
def kubo(stack: Stack) -> Iterator[Kubo]:
    with Kubo(stack.config.ipfs.api) as client:
        yield client


@dataclass(frozen=True)
class Chain:
    w3: Web3
    registry: Registry
    attestor: AttestorContract
    policy: Policy

    def as_user(self, account: LocalAccount) -> tuple[Registry, AttestorContract]:
        tx = transactor(self.w3, account)
        return (
            Registry(self.w3, self.registry.address, tx, from_block=self.registry.from_block),
            AttestorContract(self.w3, self.attestor.address, tx),
        )


@pytest.fixture(scope="module")
def chain(stack: Stack, w3: Web3) -> Chain:
    """The stack's contracts (those `provenance verify-output` trusts from the deployment)."""
    deployment = Deployment.read(stack.config.deployment_file)
    assert deployment is not None
    registry = Registry.from_deployment(w3, stack.config.deployment_file)
    attestor = AttestorContract(w3, deployment.contracts["OutputAttestor"].address)
    policy = Policy(chain_id=31337, registry=registry.address, attestor=attestor.address)
    return Chain(w3, registry, attestor, policy)


@pytest.fixture(scope="module")
def victim(chain: Chain, kubo: Kubo, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Alice's model G: registered, certificate and data in IPFS."""
    alice, _ = chain.as_user(ALICE)
    return train(tmp_path_factory.mktemp("victim"), "victim", registry=alice, storage=kubo)


@pytest.fixture(scope="module")
def attacker(chain: Chain, kubo: Kubo, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Mallory's own model M, which she may authorise nodes for."""
    mallory, _ = chain.as_user(MALLORY)
    return train(
        tmp_path_factory.mktemp("attacker"),
        "attacker",
        registry=mallory,
        storage=kubo,
        signer=MALLORY,
        C=0.5,
    )


def outputs(model: Trained, first: int, n: int) -> list[OutputRecord]:
    reg = model.certificate.registration()
    now = int(time.time())
    return [
        OutputRecord(
            model.certificate.model_id,
            reg.model_digest,
            hashlib.sha256(f"in {os.urandom(4).hex()}".encode()).digest(),
            hashlib.sha256(f"out {i}".encode()).digest(),
            first + i,
            now,
        )
        for i in range(n)
    ]


def sign(node: LocalAccount, batch: Batch, chain_id: int, contract: str) -> bytes:
    typed = batch_typed_data(batch, chain_id, contract)
    return bytes(node.sign_message(encode_typed_data(full_message=typed)).signature)


def receipt_of(
    records: list[OutputRecord],
    batch: Batch,
    node: LocalAccount,
    contract: str,
    anchored: tuple[str, int] | None,
    *,
    chain_id: int = 31337,
) -> Receipt:
    tree = OutputTree([r.leaf for r in records])
    assert tree.root == batch.root
    return Receipt(
        record=records[1],
        batch=batch,
        proof=tuple(tree.proof(1)),
        signature=sign(node, batch, chain_id, contract),
        node=node.address,
        chain_id=chain_id,
        contract=contract,
        transaction=None if anchored is None else anchored[0],
        block=None if anchored is None else anchored[1],
    )


def failed(report: Report, name: str, error: type[Exception]) -> str:
    """The detail of the check ``name``, which must be the report's first failure."""
    first = report.first_failure()
    assert first is not None, report.to_json()
    assert (first.name, first.status, first.error) == (name, CheckStatus.FAIL, error), first
    return first.detail


# -- 1. a fake OutputAttestor ---------------------------------------------------------------


class Fake:
    """The attacker's contract (tests/contracts/FakeAttestor.sol), deployed by Mallory."""

    def __init__(self, w3: Web3) -> None:
        artifact = compile_test_contract("FakeAttestor")
        self.w3 = w3
        self.tx = transactor(w3, MALLORY)
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        done = self.tx.send(
            dict(factory.constructor().build_transaction({"from": MALLORY.address}))
        )
        address = done["contractAddress"]
        assert address is not None
        self.address = Web3.to_checksum_address(address)
        self.contract = w3.eth.contract(address=self.address, abi=artifact["abi"])

    def call(self, name: str, *args: Any) -> tuple[str, int]:
        fn = getattr(self.contract.functions, name)(*args)
        done = self.tx.send(dict(fn.build_transaction({"from": MALLORY.address})))
        return "0x" + bytes(done["transactionHash"]).hex(), int(done["blockNumber"])

    def forge(self, model: Trained, node: LocalAccount, *, deauthorise: bool = False) -> Receipt:
        """A receipt of ``model`` by ``node``, 'anchored' here (after a deauthorisation when
        ``deauthorise``)."""
        reg = model.certificate.registration()
        self.call("authorize", model.certificate.model_id, node.address, reg.model_digest)
        if deauthorise:
            self.call("deauthorize", model.certificate.model_id, node.address)
        records = outputs(model, 0, 4)
        root = OutputTree([r.leaf for r in records]).root
        batch = Batch(model.certificate.model_id, reg.model_digest, root, 0, 4, int(time.time()))
        anchored = self.call(
            "anchor", root, model.certificate.model_id, node.address, 0, 4, batch.timestamp
        )
        return receipt_of(records, batch, node, self.address, anchored)


def test_a_receipt_through_a_fake_attestor_fails_receipt_contract(
    chain: Chain, kubo: Kubo, victim: Trained, cli_env: dict[str, str], tmp_path: Path
) -> None:
    fake = Fake(chain.w3)
    receipt = fake.forge(victim, Account.create())

    report = Verifier(chain.policy, registry=chain.registry, storage=kubo).receipt(receipt)
    detail = failed(report, CheckName.RECEIPT_CONTRACT, PolicyError)
    assert detail == (
        f"the receipt names OutputAttestor {fake.address}, not the trusted {chain.attestor.address}"
    )
    assert report.check(CheckName.RECEIPT).status is CheckStatus.PASS  # self-consistent
    assert report.check(CheckName.RECEIPT_ANCHORED).status is CheckStatus.SKIP

    # with no attestor trusted, the on-chain check fails (it used to warn and pass)
    unknown = replace(chain.policy, attestor=None)
    report = Verifier(unknown, registry=chain.registry, storage=kubo).receipt(receipt)
    assert failed(report, CheckName.RECEIPT_CONTRACT, PolicyError).startswith(
        f"the receipt names OutputAttestor {fake.address}, but no OutputAttestor is trusted"
    )
    anchored = report.check(CheckName.RECEIPT_ANCHORED)
    assert anchored is not None and anchored.failed and anchored.error is PolicyError

    # the raising form, given the trusted contracts
    with pytest.raises(PolicyError, match="not the trusted"):
        verify_receipt_on_chain(
            chain.w3, receipt, chain.registry.address, attestor=chain.attestor.address
        )

    # the CLI: exit 1, one line on stderr
    path = tmp_path / "forged.receipt.json"
    path.write_text(json.dumps(receipt.to_json()))
    result = run_cli("verify-output", str(path), env=cli_env)
    assert result.returncode == 1, result.stdout
    assert result.stderr.strip() == (
        f"error: receipt-contract: the receipt names OutputAttestor {fake.address}, not the "
        f"trusted {chain.attestor.address}"
    )
    assert "Traceback" not in result.stderr
    # ... and `provenance verify` on the same file
    verify = run_cli("verify", str(path), "--json", env=cli_env)
    assert verify.returncode == 1
    first = json.loads(verify.stdout)["first_failure"]
    assert (first["name"], first["error"]) == ("receipt-contract", "PolicyError")


# -- 2. cross-model and backdated receipts from a real node ------------------------------------


def test_a_cross_model_receipt_fails_receipt_anchored(
    chain: Chain, kubo: Kubo, victim: Trained, attacker: Trained
) -> None:
    _, as_mallory = chain.as_user(MALLORY)
    node = Account.create()
    m = attacker.certificate.registration()
    as_mallory.authorize_node(attacker.certificate.model_id, node.address, m, IMAGE)
    # the tree holds records "of G"; the root is anchored under M, which the node may attest
    records = outputs(victim, as_mallory.next_sequence(node.address), 4)
    root = OutputTree([r.leaf for r in records]).root
    first = records[0].sequence
    real = Batch(attacker.certificate.model_id, m.model_digest, root, first, 4, int(time.time()))
    anchored = as_mallory.anchor(real, as_mallory.sign(node, real))
    g = victim.certificate.registration()
    forged = Batch(
        victim.certificate.model_id, g.model_digest, root, first, 4, real.timestamp - YEAR
    )
    receipt = receipt_of(records, forged, node, chain.attestor.address, anchored)

    report = Verifier(chain.policy, registry=chain.registry, storage=kubo).receipt(receipt)
    detail = failed(report, CheckName.RECEIPT_ANCHORED, IntegrityError)
    assert detail == (
        f"batch root 0x{root.hex()} of model 0x{victim.certificate.model_id.hex()} by {node.address} is not "
        f"anchored on {chain.attestor.address}; it is anchored for model 0x{attacker.certificate.model_id.hex()} "
        f"(block {anchored[1]})"
    )


def test_a_backdated_receipt_fails_receipt_anchored(
    chain: Chain, kubo: Kubo, victim: Trained
) -> None:
    _, as_alice = chain.as_user(ALICE)
    node = Account.create()
    g = victim.certificate.registration()
    as_alice.authorize_node(victim.certificate.model_id, node.address, g, IMAGE)
    records = outputs(victim, as_alice.next_sequence(node.address), 4)
    root = OutputTree([r.leaf for r in records]).root
    batch = Batch(
        victim.certificate.model_id, g.model_digest, root, records[0].sequence, 4, int(time.time())
    )
    anchored = as_alice.anchor(batch, as_alice.sign(node, batch))
    genuine = receipt_of(records, batch, node, chain.attestor.address, anchored)
    verifier = Verifier(chain.policy, registry=chain.registry, storage=kubo)
    assert verifier.receipt(genuine).ok, verifier.receipt(genuine).to_json()

    old = replace(batch, timestamp=batch.timestamp - YEAR)
    report = verifier.receipt(receipt_of(records, old, node, chain.attestor.address, anchored))
    detail = failed(report, CheckName.RECEIPT_ANCHORED, IntegrityError)
    assert detail.endswith(
        f"timestamp {batch.timestamp}; the receipt states first sequence {batch.first_sequence}, "
        f"count 4, timestamp {old.timestamp}, block {anchored[1]}, tx {anchored[0]}"
    )
    # another block than the anchoring one is refused too
    moved = replace(genuine, block=anchored[1] - 1)
    assert failed(verifier.receipt(moved), CheckName.RECEIPT_ANCHORED, IntegrityError)


# -- 3. a node deauthorised before its batch is anchored ---------------------------------------


def test_a_node_deauthorised_before_the_anchoring_fails_node_authorised(
    chain: Chain, kubo: Kubo, victim: Trained
) -> None:
    """The trusted contract here records whatever it is told (the fake, trusted by this
    policy): the verifier replays the authorisation events itself."""
    fake = Fake(chain.w3)
    node = Account.create()
    receipt = fake.forge(victim, node, deauthorise=True)
    trusting = replace(chain.policy, attestor=fake.address)
    verifier = Verifier(trusting, registry=chain.registry, storage=kubo)

    report = verifier.receipt(receipt)
    assert report.check(CheckName.RECEIPT_ANCHORED).status is CheckStatus.PASS
    detail = failed(report, CheckName.NODE_AUTHORISED, PolicyError)
    assert detail == (
        f"node {node.address} was not authorised for model "
        f"0x{victim.certificate.model_id.hex()} when the batch was anchored (block "
        f"{receipt.block})"
    )
    # authorised before, for this digest: passes, and a later deauthorisation is only noted
    again = fake.forge(victim, Account.create())
    assert verifier.receipt(again).check(CheckName.NODE_AUTHORISED).status is CheckStatus.PASS


# -- 4. a receipt replayed on another chain ----------------------------------------------------


def test_a_receipt_replayed_on_another_chain_fails_receipt_chain(
    chain: Chain, kubo: Kubo, victim: Trained, tmp_path: Path
) -> None:
    _, as_alice = chain.as_user(ALICE)
    node = Account.create()
    g = victim.certificate.registration()
    as_alice.authorize_node(victim.certificate.model_id, node.address, g, IMAGE)
    records = outputs(victim, as_alice.next_sequence(node.address), 4)
    root = OutputTree([r.leaf for r in records]).root
    batch = Batch(
        victim.certificate.model_id, g.model_digest, root, records[0].sequence, 4, int(time.time())
    )
    anchored = as_alice.anchor(batch, as_alice.sign(node, batch))
    receipt = receipt_of(records, batch, node, chain.attestor.address, anchored)

    with ephemeral_anvil(tools(), chain_id=11155111) as url:
        other = connect(url)
        deployment, _ = ensure_deployed(other, ADMIN, tmp_path / "sepolia.json")
        registry = Registry(other, deployment.contracts["ModelRegistry"].address)
        policy = Policy(
            chain_id=11155111,
            registry=registry.address,
            attestor=deployment.contracts["OutputAttestor"].address,
        )
        report = Verifier(policy, registry=registry, storage=kubo).receipt(receipt)
        detail = failed(report, CheckName.RECEIPT_CHAIN, PolicyError)
        assert detail == "the receipt is for chain 31337, the trusted chain is 11155111"
        # a policy for one chain does not read another
        with pytest.raises(ConfigError, match="the RPC serves chain 11155111, the trusted"):
            Verifier(chain.policy, registry=registry, storage=kubo)


# -- 5. serving an untrusted registrant's model --------------------------------------------


def test_serving_an_untrusted_registrants_model_is_refused_before_loading(
    stack: Stack,
    chain: Chain,
    kubo: Kubo,
    attacker: Trained,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    from provenance.server.service import load_served_model

    model_id = attacker.certificate.model_id
    workdir = stack.config.state_dir / "serve" / f"0x{model_id.hex()}"
    result = run_cli("serve", "--model-id", f"0x{model_id.hex()}", env=cli_env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: model 0x{model_id.hex()} is registered by {MALLORY.address}, who is not "
        f"trusted; refusing to load it (trust it with --trust {MALLORY.address}, or list it in "
        "registrants of the config's trust section)"
    )
    assert not workdir.exists()  # nothing fetched, nothing unpickled

    with pytest.raises(PolicyError, match=f"registered by {MALLORY.address}, who is not"):
        load_served_model(
            model_id,
            registry=chain.registry,
            storage=kubo,
            workdir=tmp_path / "refused",
            registrants=[ALICE.address],
            serving_account=ADMIN.address,
        )
    assert not (tmp_path / "refused").exists()
    served = load_served_model(
        model_id,
        registry=chain.registry,
        storage=kubo,
        workdir=tmp_path / "trusted",
        registrants=[MALLORY.address],
    )
    served.close()


# -- 6. the explorer's verification tab ---------------------------------------------------------


def test_the_explorer_verifies_against_the_configured_trust_roots(
    stack_config_path: Path, cli_env: dict[str, str], attacker: Trained, victim: Trained
) -> None:
    """`provenance explorer` used to build its verification report without the config's
    [trust] section: Mallory's model read "ok" there (an open-registry warning) while
    `provenance verify` refused it."""
    import subprocess
    import urllib.request

    from provenance.stack import free_port
    from tests.integration.test_stack import PROVENANCE

    trusting = stack_config_path.with_name("trusting.toml")  # same folder: same state dir
    trusting.write_text(
        stack_config_path.read_text(encoding="utf-8")
        + f'\n[trust]\nregistrants = ["{ALICE.address}"]\n',
        encoding="utf-8",
    )
    env = {**cli_env, "PROVENANCE_CONFIG": str(trusting)}
    port = free_port()
    server = subprocess.Popen(
        [str(PROVENANCE), "explorer", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def report(model: Trained) -> Any:
            url = f"http://127.0.0.1:{port}/api/models/0x{model.certificate.model_id.hex()}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(url + "/verification", timeout=60) as answer:
                        return json.load(answer)
                except OSError:
                    assert server.poll() is None, server.communicate()[1]
                    assert time.monotonic() < deadline, "the explorer did not start"
                    time.sleep(0.2)

        mallory = report(attacker)
        assert mallory["ok"] is False
        first = mallory["first_failure"]
        assert (first["name"], first["detail"], first["error"]) == (
            "trusted",
            f"registrant {MALLORY.address} is not in the trust list",
            "PolicyError",
        )
        alice = report(victim)
        trusted = next(c for c in alice["checks"] if c["name"] == "trusted")
        assert trusted["status"] == "pass", alice
    finally:
        server.terminate()  # the process this test started
        server.wait(timeout=30)
