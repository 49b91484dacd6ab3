"""The gas budgets of issue 3, on the real anvil (gas is deterministic, unlike time).

benchmarks/gas.py prints the full table beside EAS; this guards the budgets against
regressions. Digests are random, as real ones are (a zero byte would make calldata cheaper).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from web3 import Web3

from provenance.chain.client import connect
from provenance.chain.types import Parent
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
    root = registration()
    gas_of(registry, functions.register(root.as_abi()))
    child = registration(Parent(root.model_id, "fine-tune"))
    assert gas_of(registry, functions.register(child.as_abi())) <= 55_000
    batch = [registration(Parent(root.model_id, "transfer")) for _ in range(50)]
    assert gas_of(registry, functions.registerBatch([r.as_abi() for r in batch])) <= 50 * 32_000
    assert gas_of(registry, functions.revoke(child.model_id, b"\x01" * 32)) <= 35_000
