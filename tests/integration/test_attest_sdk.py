"""The inference-service SDK (provenance.attest.Attestor) on the real anvil: batches, receipts,
crash recovery from the journal, and an RPC outage in the middle of a batch."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils.crypto import keccak
from web3 import Web3

from provenance.attest import Attestor, Receipt, verify_receipt_offline
from provenance.chain.attestor import AttestorContract
from provenance.chain.client import connect
from provenance.chain.deploy import Deployment
from provenance.chain.keys import dev_account
from provenance.chain.registry import Registry
from provenance.chain.tx import Transactor
from provenance.errors import ChainError, IntegrityError
from provenance.stack import Stack

from .chainutil import ALICE, as_user, deploy_contracts, registration, transactor
from .conftest import config_at, tools, write_stack_config

pytestmark = pytest.mark.integration

IMAGE = keccak(text="image")


@pytest.fixture(scope="module")
def w3(stack: Stack) -> Web3:
    return connect(stack.config.chain.rpc_url)


def served_model(
    registry: Registry, attestor: AttestorContract, w3: Web3
) -> tuple[bytes, bytes, object]:
    reg = registration()
    model_id = as_user(registry, ALICE).register(reg).id
    node = Account.create()
    AttestorContract(w3, attestor.address, transactor(w3, ALICE)).authorize_node(
        model_id, node.address, reg, IMAGE
    )
    return model_id, reg.model_digest, node


def outputs(target: Attestor, n: int, offset: int = 0) -> list[tuple[bytes, bytes, int]]:
    made = []
    for i in range(offset, offset + n):
        x, y = f"features {i}".encode(), f"class {i % 3}".encode()
        made.append((x, y, target.record(x, y).sequence))
    return made


def events(attestor: AttestorContract) -> list[bytes]:
    logs = attestor.w3.eth.get_logs(
        {
            "address": attestor.address,
            "fromBlock": 0,
            "toBlock": "latest",
            "topics": [attestor.contract.events.OutputsAttested().topic],
        }
    )
    return [bytes(log["topics"][1]) for log in logs]


def test_batches_receipts_and_offline_verification(w3: Web3, tmp_path: Path) -> None:
    registry, attestor = deploy_contracts(w3, tmp_path)
    model_id, digest, node = served_model(registry, attestor, w3)
    sdk = Attestor(model_id, digest, node, attestor, tmp_path / "journal.sqlite", batch_size=10)
    made = outputs(sdk, 25)
    assert sdk.receipt(0) is None and sdk.pending() == 25
    assert sdk.flush() == 3
    assert sdk.pending() == 0 and attestor.next_sequence(node.address) == 25
    for x, y, seq in made:
        receipt = sdk.receipt(seq)
        assert receipt is not None and receipt.transaction is not None and receipt.block is not None
        again = Receipt.from_json(json.loads(json.dumps(receipt.to_json())))
        assert again == receipt
        verify_receipt_offline(again, input_data=x, output_data=y)
    receipt = sdk.receipt(13)
    assert receipt is not None
    with pytest.raises(IntegrityError) as info:
        verify_receipt_offline(receipt, output_data=b"class 2 (tampered)")
    assert str(info.value) == (
        f"the output does not match the receipt's output digest 0x{receipt.record.output_digest.hex()}"
    )
    forged = Receipt.from_json({**receipt.to_json(), "node": Account.create().address})
    with pytest.raises(
        IntegrityError, match=r"^the batch is signed by 0x[0-9a-fA-F]{40}, not by the node "
    ):
        verify_receipt_offline(forged)
    assert len(events(attestor)) == 3
    sdk.close()


def test_a_crash_loses_nothing_and_doubles_nothing(w3: Web3, tmp_path: Path) -> None:
    registry, attestor = deploy_contracts(w3, tmp_path)
    model_id, digest, node = served_model(registry, attestor, w3)
    journal = tmp_path / "journal.sqlite"
    first = Attestor(model_id, digest, node, attestor, journal, batch_size=4)
    outputs(first, 6)
    first._seal()  # sealed and signed, then the process dies before submitting
    first.db.close()

    second = Attestor(model_id, digest, node, attestor, journal, batch_size=4)
    assert second.pending() == 6
    # the first batch reaches the chain, then the process dies before writing that down
    row = second.db.execute(
        "SELECT first, count, root, ts, signature FROM batches ORDER BY first"
    ).fetchone()
    from provenance.attest import Batch

    attestor.anchor(Batch(model_id, digest, row[2], row[0], row[1], row[3]), row[4])
    second.db.close()

    third = Attestor(model_id, digest, node, attestor, journal, batch_size=4)
    outputs(third, 3, offset=6)  # new outputs continue the sequence
    assert third.flush() == 2  # the second sealed batch and the new one; the first is recognised
    assert attestor.next_sequence(node.address) == 9
    roots = events(attestor)
    assert len(roots) == len(set(roots)) == 3
    for seq in range(9):
        receipt = third.receipt(seq)
        assert receipt is not None and receipt.transaction is not None
        verify_receipt_offline(receipt)
    third.close()


def test_anvil_dies_in_the_middle_of_a_batch(tmp_path: Path) -> None:
    """Kill anvil after the batch is sealed, restart it from its persisted state: the journal
    resubmits, nothing is lost and nothing is doubled."""
    config = config_at(write_stack_config(tmp_path))
    own = Stack(config, tools())
    own.up()
    try:
        w3 = connect(config.chain.rpc_url)
        deployment = Deployment.read(config.deployment_file)
        assert deployment is not None
        registry = Registry.from_deployment(
            w3, config.deployment_file, Transactor(w3, dev_account(w3))
        )
        attestor = AttestorContract(
            w3, deployment.contracts["OutputAttestor"].address, Transactor(w3, dev_account(w3))
        )
        reg = registration()
        model_id = registry.register(reg).id
        node = Account.create()
        attestor.authorize_node(model_id, node.address, reg, IMAGE)
        sdk = Attestor(
            model_id,
            reg.model_digest,
            node,
            attestor,
            tmp_path / "journal.sqlite",
            batch_size=8,
        )
        outputs(sdk, 8)
        assert sdk.flush() == 1
        time.sleep(config.chain.state_interval + 0.5)  # let anvil persist the first batch
        outputs(sdk, 12, offset=8)
        sdk._seal()
        own._stop("anvil")  # the RPC goes away between sealing and submitting
        with pytest.raises(ChainError):
            sdk.flush()
        assert sdk.pending() == 12
        own.up()  # anvil comes back from its state file
        attestor.transactor._next_nonce = None  # type: ignore[union-attr]
        assert attestor.next_sequence(node.address) == 8
        assert sdk.flush() == 2
        assert sdk.pending() == 0 and attestor.next_sequence(node.address) == 20
        roots = events(attestor)
        assert len(roots) == len(set(roots)) == 3
        for seq in range(20):
            receipt = sdk.receipt(seq)
            assert receipt is not None and receipt.transaction is not None
        sdk.close()
    finally:
        own.down()


def test_the_background_loop_outlives_an_rpc_outage_and_catches_up(
    stack: Stack, tmp_path: Path
) -> None:
    """The RPC going away raises the HTTP client's own ConnectionError: the loop keeps it as its
    last error, backs off, and anchors everything once anvil is back."""
    path = write_stack_config(tmp_path)
    with path.open("a", encoding="utf-8") as f:  # the session's engine: no dockerd of our own
        f.write(f'\n[docker]\nhost = "{stack.docker_host()}"\n')
    config = config_at(path)
    own = Stack(config, tools())
    own.up()
    try:
        w3 = connect(config.chain.rpc_url)
        deployment = Deployment.read(config.deployment_file)
        assert deployment is not None
        registry = Registry.from_deployment(
            w3, config.deployment_file, Transactor(w3, dev_account(w3))
        )
        attestor = AttestorContract(
            w3, deployment.contracts["OutputAttestor"].address, Transactor(w3, dev_account(w3))
        )
        reg = registration()
        model_id = registry.register(reg).id
        node = Account.create()
        attestor.authorize_node(model_id, node.address, reg, IMAGE)
        sdk = Attestor(
            model_id,
            reg.model_digest,
            node,
            attestor,
            tmp_path / "journal.sqlite",
            max_age=0.2,
            retry_base=0.2,
            retry_cap=1.0,
        )
        sdk.start()
        outputs(sdk, 3)
        wait(lambda: sdk.pending() == 0, "the first batch")
        time.sleep(config.chain.state_interval + 0.5)
        own._stop("anvil")
        outputs(sdk, 5, offset=3)  # recording goes on without the chain
        wait(lambda: sdk.failures >= 3, "retries")
        health = sdk.health()
        assert health.running and health.backlog == 5 and health.backlog_age is not None
        assert health.last_error is not None
        assert health.last_error.startswith(f"anchoring outputs of model 0x{model_id.hex()}: ")
        own.up()
        wait(lambda: sdk.pending() == 0, "catching up")
        health = sdk.health()
        assert (health.running, health.failures, health.last_error) == (True, 0, None)
        assert attestor.next_sequence(node.address) == 8
        sdk.close()
    finally:
        own.down()


def wait(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_retries_back_off_exponentially_with_jitter_up_to_a_cap(tmp_path: Path) -> None:
    sdk = Attestor.__new__(Attestor)  # the delay needs no journal or chain
    sdk.retry_base, sdk.retry_cap = 0.5, 30.0
    for failures, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (1000, 30.0)]:
        delays = [sdk.retry_delay(failures) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered: restarted nodes do not retry in lockstep
