"""Registration squatting (issue 13, item 3): certificates are public, so anyone may register
one first. The model id binds its registrant, so a squat takes nothing from the creator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from web3 import Web3

from provenance.capture import track
from provenance.certificate import SignedCertificate
from provenance.chain.attestor import AttestorContract
from provenance.chain.client import connect
from provenance.chain.registry import Registry
from provenance.chain.types import Status
from provenance.errors import ContractRevertError
from provenance.stack import Stack
from provenance.storage import Kubo
from provenance.verify import CheckStatus, Report, report_for_model
from tests.integration.chainutil import (
    ALICE,
    BOB,
    MALLORY,
    as_user,
    deploy_contracts,
    transactor,
)

pytestmark = pytest.mark.integration

IMAGE = keccak(text="sha256:image-config")


@pytest.fixture(scope="module")
def w3(stack: Stack) -> Web3:
    return connect(stack.config.chain.rpc_url)


@pytest.fixture(scope="module")
def kubo(stack: Stack) -> Iterator[Kubo]:
    with Kubo(stack.config.ipfs.api) as client:
        yield client


@pytest.fixture
def contracts(w3: Web3, tmp_path: Path) -> tuple[Registry, AttestorContract]:
    return deploy_contracts(w3, tmp_path)  # type: ignore[no-any-return]


def trained(
    folder: Path, kubo: Kubo, signer: LocalAccount, registry: Registry | None = None
) -> SignedCertificate:
    """A model trained and certified by ``signer``, its certificate and data in IPFS (public,
    as every creator's are); registered only when ``registry`` is given."""
    data = folder / "iris.csv"
    folder.mkdir(parents=True, exist_ok=True)
    load_iris(as_frame=True).frame.to_csv(data, index=False)
    with track(
        f"Model of {signer.address[:8]}",
        output_dir=folder / "run",
        signer=signer,
        storage=kubo,
        registry=registry,
        source_dir=folder,
        environment=False,
    ) as run:
        rows = pd.read_csv(data).iloc[::2]
        run.log_dataset(data, role="train", subset=rows.index, store=True)
        model = LogisticRegression(max_iter=500)
        model.fit(rows.drop(columns="target"), rows["target"])
        run.log_model(model)
    assert run.signed is not None
    return run.signed


def check(report: Report, name: str) -> tuple[CheckStatus, str]:
    found = report.check(name)
    assert found is not None, [c.name for c in report.checks]
    return found.status, found.detail


def err(info: pytest.ExceptionInfo[ContractRevertError]) -> tuple[str, dict[str, object]]:
    return info.value.error, info.value.arguments


def test_a_squat_blocks_nothing(
    contracts: tuple[Registry, AttestorContract], kubo: Kubo, w3: Web3, tmp_path: Path
) -> None:
    registry, attestor = contracts
    certificate = trained(tmp_path, kubo, ALICE).certificate
    registration = certificate.registration()

    # Mallory sees Alice's certificate in IPFS and registers it first
    squat = as_user(registry, MALLORY).register(registration)
    assert squat.id == certificate.model_id_for(MALLORY.address)
    assert squat.id != certificate.model_id and squat.registrant == MALLORY.address
    assert registry.status(certificate.model_id) is Status.NONE  # Alice's id is still free

    # Alice registers her certificate: her id, her record
    mine = as_user(registry, ALICE).register(registration)
    assert mine.id == certificate.model_id and mine.already is False
    record = registry.record(certificate.model_id)
    assert record.registrant == ALICE.address and record.status is Status.ACTIVE

    # Mallory holds no power over Alice's model
    with pytest.raises(ContractRevertError) as info:
        as_user(registry, MALLORY).revoke(mine.id, keccak(text="mine now"))
    assert err(info) == (
        "UnauthorizedRevoker",
        {"id": "0x" + mine.id.hex(), "account": MALLORY.address},
    )
    mallorys_attestor = AttestorContract(w3, attestor.address, transactor(w3, MALLORY))
    node = MALLORY.address
    with pytest.raises(ContractRevertError) as info:
        mallorys_attestor.authorize_node(mine.id, node, registration, IMAGE)
    assert err(info) == (
        "NotModelRegistrant",
        {"modelId": "0x" + mine.id.hex(), "account": MALLORY.address},
    )
    assert registry.status(mine.id) is Status.ACTIVE

    # an auditor accepts Alice's registration and rejects Mallory's
    alices = report_for_model(mine.id, registry=registry, storage=kubo)
    assert check(alices, "registrant") == (
        CheckStatus.PASS,
        f"registered by its creator {ALICE.address}",
    )
    assert alices.ok, alices.failures
    mallorys = report_for_model(squat.id, registry=registry, storage=kubo)
    assert check(mallorys, "registrant") == (
        CheckStatus.FAIL,
        f"registered by {MALLORY.address}, but the certificate names creator {ALICE.address}",
    )
    assert not mallorys.ok


def test_track_relays_the_signers_registration_when_the_registry_sends_as_someone_else(
    contracts: tuple[Registry, AttestorContract], kubo: Kubo, tmp_path: Path
) -> None:
    """Before: track(signer=Alice, registry sending as Bob) registered as Bob, a model that could
    never verify. Now Alice signs the EIP-712 registration and Bob relays it (registerFor)."""
    registry, _ = contracts
    bobs_client = as_user(registry, BOB)
    signed = trained(tmp_path, kubo, ALICE, registry=bobs_client)
    certificate = signed.certificate
    record = registry.record(certificate.model_id)
    assert record.status is Status.ACTIVE and record.registrant == ALICE.address
    assert registry.nonce(ALICE.address) == 1  # one delegated registration, signed by Alice
    event = registry.registration_event(certificate.model_id)
    assert event is not None and event.args["registrant"] == ALICE.address
    report = report_for_model(certificate.model_id, registry=registry, storage=kubo)
    assert check(report, "registrant") == (
        CheckStatus.PASS,
        f"registered by its creator {ALICE.address}",
    )
    assert report.ok, report.failures
    # relaying the same registration again is an idempotent success, still Alice's
    again = bobs_client.register_signed(ALICE, certificate.registration())
    assert again.already is True and again.id == certificate.model_id
    assert again.registrant == ALICE.address
