"""The gas budgets of issue 3, on the real anvil (gas is deterministic, unlike time).

benchmarks/gas.py prints the full table beside EAS; this guards the budgets against
regressions. Digests are random, as real ones are (a zero byte would make calldata cheaper).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from web3 import Web3

from provenance.chain.client import connect
from provenance.registration import Parent
from provenance.stack import Stack

from .chainutil import deploy_registry, registration

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def w3(stack: Stack) -> Web3:
    return connect(stack.config.chain.rpc_url)


def gas_of(registry, fn) -> int:  # type: ignore[no-untyped-def]
    built = fn.build_transaction({"from": registry.transactor.address, "gas": 0})
    built.pop("gas")
    return int(registry.transactor.send(dict(built))["gasUsed"])


def test_registration_budgets_in_an_open_registry(w3: Web3, tmp_path: Path) -> None:
    registry = deploy_registry(w3, tmp_path)
    functions = registry.contract.functions
    me = registry.transactor.address
    root = registration()
    gas_of(registry, functions.register(root.as_abi()))
    child = registration(Parent(root.model_id_for(me), "fine-tune"))
    # issue 13: binding the registrant into the id may cost a little; the budget is 58,000
    assert gas_of(registry, functions.register(child.as_abi())) <= 58_000
    batch = [registration(Parent(root.model_id_for(me), "transfer")) for _ in range(50)]
    assert gas_of(registry, functions.registerBatch([r.as_abi() for r in batch])) <= 50 * 32_000
    assert gas_of(registry, functions.revoke(child.model_id_for(me), b"\x01" * 32)) <= 35_000
    # issue 16: an image bound to a model (three new words), then rebound; digests without a
    # zero byte, the dearest calldata
    bound = root.model_id_for(me)
    assert gas_of(registry, functions.bindImage(bound, b"\x02" * 32, b"\x03" * 32)) <= 95_000
    assert gas_of(registry, functions.bindImage(bound, b"\x04" * 32, b"\x05" * 32)) <= 40_000


def test_attestation_budgets(w3: Web3, tmp_path: Path) -> None:
    """One output <= 60,000 gas; a batch of 1,000 outputs <= 50 gas per output."""
    import time

    from eth_account import Account

    from provenance.attest import Batch, OutputRecord, OutputTree

    from .chainutil import deploy_contracts

    registry, attestor = deploy_contracts(w3, tmp_path)
    reg = registration()
    model_id = registry.register(reg).id
    node = Account.create()
    attestor.authorize_node(model_id, node.address, reg, b"\x07" * 32)
    ts = int(time.time())

    def record(seq: int) -> OutputRecord:
        return OutputRecord(
            model_id, reg.model_digest, b"\x01" * 32, seq.to_bytes(32, "big"), seq, ts
        )

    functions = attestor.contract.functions
    first = record(0)  # the first submission also creates the node's sequence slot
    gas_of(registry, functions.attest(first.as_abi(), attestor.sign(node, Batch.of_one(first))))
    single = record(1)
    assert (
        gas_of(
            registry, functions.attest(single.as_abi(), attestor.sign(node, Batch.of_one(single)))
        )
        <= 60_000
    )
    tree = OutputTree([record(2 + i).leaf for i in range(1000)])
    batch = Batch(model_id, reg.model_digest, tree.root, 2, 1000, ts)
    assert (
        gas_of(registry, functions.attestBatch(batch.as_abi(), attestor.sign(node, batch)))
        <= 1000 * 50
    )
