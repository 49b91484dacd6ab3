"""Report logic of provenance.verify: real certificates and a real embedded IPFS store
(LocalStore), a small in-memory registry standing in for the contract (the contract and its
client are covered by the integration tests, tests/integration/test_verify.py among them)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address

from provenance.capture import track
from provenance.certificate import Certificate, SignedCertificate, typed_data
from provenance.chain.keys import anvil_dev_key
from provenance.chain.registry import RegistryEvent
from provenance.chain.types import ImageBinding, ModelRecord, Status
from provenance.errors import IntegrityError, PolicyError, SignatureError, StorageError
from provenance.registration import ZERO32, Parent, Registration
from provenance.storage import LocalStore
from provenance.verify import (
    Check,
    CheckStatus,
    Report,
    fetch_bytes,
    generation,
    report_for_model,
    report_for_target,
    verify_lineage,
    verify_model,
)

ALICE, BOB, MALLORY = (Account.from_key(anvil_dev_key(i)) for i in (1, 2, 3))


class FakeRegistry:
    """The registry's reads over in-memory state, events shaped as the contract emits them."""

    address = "0x" + "11" * 20

    def __init__(self, *, open_registration: bool = True) -> None:
        self.open = open_registration
        self.records: dict[bytes, ModelRecord] = {}
        self.log: list[RegistryEvent] = []
        self.links: dict[bytes, list[Parent]] = {}
        self.roles: set[str] = set()
        self.images: dict[bytes, ImageBinding] = {}
        self.block = 0

    def _event(self, name: str, **args: Any) -> RegistryEvent:
        self.block += 1
        event = RegistryEvent(name, self.block, b"\x00" * 32, f"0x{self.block:064x}", 0, args)
        self.log.append(event)
        return event

    def register(self, registration: Registration, registrant: str) -> bytes:
        model_id = registration.model_id_for(registrant)
        first = registration.parents[0] if registration.parents else None
        self._event(
            "ModelRegistered",
            id=model_id,
            firstParent=first.id if first else ZERO32,
            registrant=registrant,
            certificateDigest=registration.certificate_digest,
            modelDigest=registration.model_digest,
            dataCommitment=registration.data_commitment,
            firstRelation=int(first.relation) if first else 0,
        )
        self.records[model_id] = ModelRecord(model_id, registrant, self.block, Status.ACTIVE, False)
        self.links[model_id] = list(registration.parents)
        return model_id

    def revoke(self, model_id: bytes, by: str, reason: bytes) -> None:
        old = self.records[model_id]
        self.records[model_id] = ModelRecord(
            model_id, old.registrant, old.registered_at, Status.REVOKED, False
        )
        self._event("ModelRevoked", id=model_id, revokedBy=by, reasonDigest=reason)

    def status(self, model_id: bytes) -> Status:
        record = self.records.get(model_id)
        return Status.NONE if record is None else record.status

    def record(self, model_id: bytes) -> ModelRecord:
        return self.records[model_id]

    def registration_event(self, model_id: bytes) -> RegistryEvent | None:
        return next(
            (e for e in self.log if e.name == "ModelRegistered" and e.args["id"] == model_id),
            None,
        )

    def parents(self, model_id: bytes) -> list[Parent]:
        return sorted(self.links.get(model_id, []))

    def image_binding(self, model_id: bytes) -> ImageBinding | None:
        return self.images.get(model_id)

    def is_open(self) -> bool:
        return self.open

    def has_role(self, role: str, account: str) -> bool:
        return role == "registrant" and to_checksum_address(account) in self.roles

    def events(
        self, from_block: int | None = None, to_block: int | None = None
    ) -> Iterator[RegistryEvent]:
        return iter([e for e in self.log if e.block >= (from_block or 0)])


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "blocks")


@pytest.fixture
def iris(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]}).to_csv(path, index=False)
    return path


def certify(
    folder: Path,
    name: str,
    *,
    signer: Any = ALICE,
    data: Path | None = None,
    parents: tuple[tuple[bytes, str], ...] = (),
    confidential: bool = False,
    store: LocalStore | None = None,
    publish_data: bool = False,
) -> tuple[Certificate, SignedCertificate, Path]:
    """A real signed certificate of a one-file model (nothing stored or registered)."""
    out = folder / name
    out.mkdir(parents=True)
    model = out / "model.bin"
    model.write_bytes(hashlib.sha256(name.encode()).digest() * 8)
    with track(
        name,
        output_dir=out,
        signer=signer,
        environment=False,
        source_dir=folder,
        parents=list(parents),
        storage=store if publish_data else None,
    ) as run:
        if data is not None:
            run.log_dataset(
                data, role="train", subset=[0, 2], confidential=confidential, store=publish_data
            )
        run.log_model(model)
    assert run.certificate is not None and run.signed is not None
    return run.certificate, run.signed, model


def publish(
    registry: FakeRegistry,
    store: LocalStore,
    cert: Certificate,
    registrant: str = ALICE.address,
    *,
    stored: bool = True,
) -> bytes:
    if stored:
        assert store.put_bytes(cert.canonical_bytes()) == cert.cid
    return registry.register(cert.registration(), registrant)


def statuses(report: Report) -> list[tuple[str, str]]:
    return [(c.name, str(c.status)) for c in report.checks]


def test_a_good_model_passes_every_required_check(
    tmp_path: Path, store: LocalStore, iris: Path
) -> None:
    registry = FakeRegistry()
    cert, _, _ = certify(tmp_path, "alpha", data=iris)
    model_id = publish(registry, store, cert)

    report = report_for_model(
        model_id, registry=registry, storage=store, data_sources={"train.csv": iris}
    )

    assert report.ok and report.first_failure() is None
    assert report.kind == "model-id" and report.model_id == model_id
    assert statuses(report) == [
        ("registered", "pass"),
        ("status", "pass"),
        ("certificate-fetched", "pass"),
        ("certificate-digest", "pass"),
        ("certificate-schema", "pass"),
        ("model-digest", "pass"),
        ("data-commitment", "pass"),
        ("parents", "pass"),
        ("signature", "warn"),
        ("registrant", "pass"),
        ("trusted", "warn"),
        ("data", "pass"),
        ("lineage", "pass"),
        ("image", "skip"),  # no image bound on chain
    ]
    image = report.check("image")
    assert (
        image is not None
        and image.detail == f"no image is bound to model 0x{model_id.hex()} on chain"
    )
    trusted = report.check("trusted")
    assert trusted is not None and trusted.detail == "open registry: registrant not vouched for"
    data = report.check("data")
    assert data is not None and data.subject == "dataset train.csv (train)"
    assert data.detail.startswith(
        f"recomputed from {iris}: 2 of 4 rows selected by indices, subset root sha256:"
    )
    signature = report.check("signature")
    assert signature is not None and signature.detail.startswith(
        "not checked: the chain anchors the certificate body only"
    )
    verify_model(model_id, registry=registry, storage=store)  # does not raise

    document = report.to_json()
    assert document["ok"] is True and document["first_failure"] is None
    assert document["model_id"] == "0x" + model_id.hex()
    assert document["checks"][0] == {
        "name": "registered",
        "status": "pass",
        "subject": f"model 0x{model_id[:4].hex()}\u2026",
        "detail": f"registered by {ALICE.address} in block 1 (tx 0x{1:064x})",
        "required": True,
        "error": None,
    }
    json.dumps(document)  # plain JSON


def test_the_signed_envelope_is_checked_when_at_hand(tmp_path: Path, store: LocalStore) -> None:
    registry = FakeRegistry()
    cert, signed, _ = certify(tmp_path, "alpha")
    model_id = publish(registry, store, cert)
    report = report_for_model(model_id, registry=registry, storage=store, envelope=signed)
    check = report.check("signature")
    assert check is not None and check.status is CheckStatus.PASS
    assert check.detail == f"EIP-712 signature by the creator {ALICE.address}"


def forged(cert: Certificate) -> SignedCertificate:
    """ALICE named as creator, MALLORY's signature."""
    signature = MALLORY.sign_message(typed_data(cert.digest)).signature
    return SignedCertificate(certificate=cert, signature="0x" + bytes(signature).hex())


def test_a_forged_signature_fails_with_signature_error(tmp_path: Path, store: LocalStore) -> None:
    registry = FakeRegistry()
    cert, _, _ = certify(tmp_path, "alpha")
    model_id = publish(registry, store, cert, MALLORY.address)
    report = report_for_model(model_id, registry=registry, storage=store, envelope=forged(cert))
    failure = report.first_failure()
    assert failure is not None and failure.name == "signature" and failure.error is SignatureError
    assert failure.detail == (
        f"the certificate signature recovers to {MALLORY.address}, not to its creator "
        f"{ALICE.address}"
    )
    registrant = report.check("registrant")
    assert registrant is not None and registrant.status is CheckStatus.FAIL
    assert registrant.detail == (
        f"registered by {MALLORY.address}, but the certificate names creator {ALICE.address}"
    )
    with pytest.raises(SignatureError, match="recovers to"):
        report.raise_for_failure()


def test_a_certificate_never_stored_is_a_failed_check(tmp_path: Path, store: LocalStore) -> None:
    registry = FakeRegistry()
    cert, _, _ = certify(tmp_path, "alpha")
    model_id = publish(registry, store, cert, stored=False)
    report = report_for_model(model_id, registry=registry, storage=store, fetch_timeout=1)
    failure = report.first_failure()
    assert failure is not None and failure.name == "certificate-fetched"
    assert failure.error is StorageError
    assert failure.detail.startswith(
        f"certificate {cert.digest_text} (CID {cert.cid}) is not retrievable from IPFS at "
        f"{store.location}: "
    )
    with pytest.raises(StorageError, match="is not retrievable from IPFS"):
        verify_model(model_id, registry=registry, storage=store)


def test_anchored_bytes_that_are_not_a_canonical_body_fail(
    tmp_path: Path, store: LocalStore
) -> None:
    registry = FakeRegistry()
    cert, _, _ = certify(tmp_path, "alpha")
    pretty = json.dumps(cert.model_dump(mode="json", exclude_none=True), indent=1).encode()
    cid = store.put_bytes(pretty)
    digest = hashlib.sha256(pretty).digest()
    registration = Registration(
        digest, cert.registration().model_digest, cert.registration().data_commitment
    )
    model_id = registry.register(registration, ALICE.address)
    assert cid.startswith("b")
    report = report_for_model(model_id, registry=registry, storage=store)
    failure = report.first_failure()
    assert failure is not None and failure.name == "certificate-schema"
    assert failure.detail == (
        "the anchored bytes are not the canonical (RFC 8785) form of the certificate they hold, "
        f"whose digest is {cert.digest_text}"
    )


def test_a_borrowed_certificate_with_another_model_digest_fails(
    tmp_path: Path, store: LocalStore
) -> None:
    """Anyone can register a genuine certificate's digest with their own model digest."""
    registry = FakeRegistry()
    cert, _, _ = certify(tmp_path, "alpha")
    store.put_bytes(cert.canonical_bytes())
    other = hashlib.sha256(b"mallory's model").digest()
    genuine = cert.registration()
    model_id = registry.register(
        Registration(genuine.certificate_digest, other, genuine.data_commitment), MALLORY.address
    )
    report = report_for_model(model_id, registry=registry, storage=store)
    failure = report.first_failure()
    assert failure is not None and failure.name == "model-digest"
    assert failure.error is IntegrityError
    assert failure.detail == (
        f"the certificate's model digest {cert.model.digest} is not the anchored "
        f"sha256:{other.hex()}"
    )


def test_trust_list_and_allowlisted_registry(tmp_path: Path, store: LocalStore) -> None:
    cert, _, _ = certify(tmp_path, "bob", signer=BOB)
    registry = FakeRegistry()
    model_id = publish(registry, store, cert, BOB.address)

    report = report_for_model(
        model_id, registry=registry, storage=store, trusted_registrants=[ALICE.address.lower()]
    )
    failure = report.first_failure()
    assert failure is not None and failure.name == "trusted" and failure.error is PolicyError
    assert failure.detail == f"registrant {BOB.address} is not in the trust list"
    trusted = report_for_model(
        model_id, registry=registry, storage=store, trusted_registrants=[BOB.address]
    )
    assert trusted.ok

    closed = FakeRegistry(open_registration=False)
    closed_id = publish(closed, store, cert, BOB.address)
    failure = report_for_model(closed_id, registry=closed, storage=store).first_failure()
    assert failure is not None and failure.name == "trusted"
    assert failure.detail == (
        f"registrant {BOB.address} no longer holds REGISTRANT_ROLE in the allowlisted registry"
    )
    closed.roles.add(BOB.address)
    check = report_for_model(closed_id, registry=closed, storage=store).check("trusted")
    assert check is not None and check.status is CheckStatus.PASS


def test_a_revoked_grandparent_taints_the_model(tmp_path: Path, store: LocalStore) -> None:
    registry = FakeRegistry()
    alpha, _, _ = certify(tmp_path, "alpha")
    alpha_id = publish(registry, store, alpha)
    beta, _, _ = certify(tmp_path, "beta", parents=((alpha_id, "fine-tune"),))
    beta_id = publish(registry, store, beta)
    gamma, _, _ = certify(tmp_path, "gamma", parents=((beta_id, "distillation"),))
    gamma_id = publish(registry, store, gamma)
    assert report_for_model(gamma_id, registry=registry, storage=store).ok

    reason = hashlib.sha256(b"poisoned").digest()
    registry.revoke(alpha_id, ALICE.address, reason)
    report = report_for_model(gamma_id, registry=registry, storage=store)
    failure = report.first_failure()
    assert failure is not None and failure.name == "lineage" and failure.error is PolicyError
    assert failure.detail == f"tainted: ancestor 0x{alpha_id.hex()} (grandparent) revoked"
    ancestor = report.check("ancestor-status", f"model 0x{alpha_id[:4].hex()}\u2026 (grandparent)")
    assert ancestor is not None and ancestor.status is CheckStatus.FAIL
    assert ancestor.detail == (
        f"revoked by {ALICE.address} in block 4 (reason sha256:{reason.hex()})"
    )
    names = [
        (c.name, c.subject.rsplit("(", 1)[-1])
        for c in report.checks
        if c.name.startswith("ancestor")
    ]
    assert names == [
        ("ancestor-registered", "parent)"),
        ("ancestor-certificate", "parent)"),
        ("ancestor-creator", "parent)"),
        ("ancestor-status", "parent)"),
        ("ancestor-registered", "grandparent)"),
        ("ancestor-certificate", "grandparent)"),
        ("ancestor-creator", "grandparent)"),
        ("ancestor-status", "grandparent)"),
    ]
    with pytest.raises(
        PolicyError, match=r"tainted: ancestor 0x[0-9a-f]{64} \(grandparent\) revoked"
    ):
        verify_lineage(gamma_id, registry=registry, storage=store)
    # the parent itself is tainted too; alpha is simply revoked
    with pytest.raises(PolicyError, match=r"\(parent\) revoked"):
        verify_lineage(beta_id, registry=registry, storage=store)
    with pytest.raises(PolicyError, match=r"^model 0x[0-9a-f]{8}\u2026: revoked by "):
        verify_model(alpha_id, registry=registry, storage=store)


def test_training_data_checks(tmp_path: Path, store: LocalStore, iris: Path) -> None:
    registry = FakeRegistry()
    cert, _, _ = certify(tmp_path, "alpha", data=iris)
    model_id = publish(registry, store, cert)

    no_source = report_for_model(model_id, registry=registry, storage=store).check("data")
    assert no_source is not None and no_source.status is CheckStatus.SKIP
    assert no_source.detail == "no source: not published in IPFS; pass one with --data NAME=PATH"

    tampered = tmp_path / "tampered.csv"
    tampered.write_text(iris.read_text().replace("3.0", "3.5"))
    report = report_for_model(
        model_id, registry=registry, storage=store, data_sources={"train.csv": tampered}
    )
    failure = report.first_failure()
    assert failure is not None and failure.name == "data" and failure.error is IntegrityError
    assert failure.detail.startswith(f"recomputed from {tampered}: table root differs: recorded ")

    unknown = report_for_model(
        model_id, registry=registry, storage=store, data_sources={"test.csv": iris}
    ).first_failure()
    assert unknown is not None and unknown.subject == "dataset test.csv"
    assert unknown.detail == (
        "a source was given, but the certificate has no dataset 'test.csv' (it has: train.csv)"
    )


def test_confidential_data_is_skipped_and_published_data_fetched(
    tmp_path: Path, store: LocalStore, iris: Path
) -> None:
    registry = FakeRegistry()
    secret, _, _ = certify(tmp_path, "secret", data=iris, confidential=True)
    check = report_for_model(
        publish(registry, store, secret), registry=registry, storage=store
    ).check("data")
    assert check is not None and check.status is CheckStatus.SKIP
    assert check.detail.startswith("confidential: only its salted commitment is published")

    public, _, _ = certify(tmp_path, "public", data=iris, store=store, publish_data=True)
    (dataset,) = public.data.datasets
    assert dataset.url is not None
    check = report_for_model(
        publish(registry, store, public), registry=registry, storage=store
    ).check("data")
    assert check is not None and check.status is CheckStatus.PASS
    assert check.detail.startswith(f"recomputed from {dataset.url}: 2 of 4 rows selected")


def test_model_files_are_rehashed_and_found_by_digest(tmp_path: Path, store: LocalStore) -> None:
    registry = FakeRegistry()
    cert, _, model = certify(tmp_path, "alpha")
    model_id = publish(registry, store, cert)

    report = report_for_target(str(model), registry=registry, storage=store)
    assert report.ok and report.kind == "model-files" and report.model_id == model_id
    assert report.checks[0].name == "model-files"
    # certificate.json beside the model brings the signed envelope
    signature = report.check("signature")
    assert signature is not None and signature.status is CheckStatus.PASS

    model.write_bytes(model.read_bytes()[:-1] + b"!")
    tampered = report_for_target(str(model), registry=registry, storage=store)
    failure = tampered.first_failure()
    assert failure is not None and failure.name == "model-files"
    assert failure.detail.startswith(
        f"not the certified model of {model.parent / 'certificate.json'}: {model}: model.bin has "
        "256 bytes and digest sha256:"
    )
    assert tampered.model_id == model_id  # the rest of the report is about the certified model


def test_certificate_files_and_ids(tmp_path: Path, store: LocalStore) -> None:
    registry = FakeRegistry()
    cert, _, model = certify(tmp_path, "alpha")
    model_id = publish(registry, store, cert)
    path = model.parent / "certificate.json"

    report = report_for_target(str(path), registry=registry, storage=store)
    assert report.ok and report.kind == "certificate"
    assert [c.name for c in report.checks].count("signature") == 1

    bad = tmp_path / "forged.json"
    bad.write_text(forged(cert).model_dump_json())
    failure = report_for_target(str(bad), registry=registry, storage=store).first_failure()
    assert failure is not None and failure.name == "signature" and failure.subject == str(bad)

    by_id = report_for_target("0x" + model_id.hex(), registry=registry, storage=store)
    assert by_id.ok and by_id.kind == "model-id" and by_id.model_id == model_id
    by_digest = report_for_target(cert.digest_text, registry=registry, storage=store)
    assert by_digest.model_id == model_id  # a certificate digest finds its registration

    unknown = report_for_target("0x" + "ab" * 32, registry=registry, storage=store)
    assert unknown.first_failure() == Check(
        "registered",
        CheckStatus.FAIL,
        f"model 0x{'ab' * 32} is not registered in the registry {registry.address}",
        "model 0xabababab\u2026",
        True,
        IntegrityError,
    )


class _Remote:
    """A node that does not hold the content and would wait for peers forever; its bounded
    views give up at their deadline as kubo does (the real node:
    tests/integration/test_ipfs_timeout.py)."""

    location = "http://remote"

    def __init__(self, wait: float | None = None, parent: _Remote | None = None) -> None:
        self.wait = wait
        self.parent = parent
        self.views: list[_Remote] = []
        self.closed = False

    def has(self, cid: str) -> bool:
        return False

    def with_timeout(self, seconds: float) -> _Remote:
        self.views.append(_Remote(seconds, self))
        return self.views[-1]

    def close(self) -> None:
        self.closed = True

    def get_bytes(self, cid: str, *, max_size: int = 0) -> bytes:
        if self.wait is None:
            raise AssertionError("content the node does not hold is read without a deadline")
        raise StorageError(f"{cid} was not found in IPFS within {self.wait:g} s (remote)")


def test_content_the_node_does_not_hold_is_read_with_a_deadline() -> None:
    remote = _Remote()
    with pytest.raises(StorageError, match=r"^bafy was not found in IPFS within 0.2 s \(remote\)$"):
        fetch_bytes(remote, "bafy", timeout=0.2, max_size=10)  # type: ignore[arg-type]
    assert [view.wait for view in remote.views] == [0.2]
    assert remote.views[0].closed and not remote.closed


def test_the_local_store_is_its_own_bounded_view(store: LocalStore) -> None:
    assert store.with_timeout(0.2) is store
    cid = store.put_bytes(b"certificate")
    assert fetch_bytes(store, cid, timeout=0.2, max_size=100) == b"certificate"


def test_generations() -> None:
    assert [generation(d) for d in (1, 2, 3, 5)] == [
        "parent",
        "grandparent",
        "great-grandparent",
        "ancestor, 5 generations up",
    ]


def test_several_registrations_of_the_same_files_report_the_one_that_verifies(
    tmp_path: Path, store: LocalStore
) -> None:
    """MALLORY registers her own certificate for ALICE's model files first."""
    registry = FakeRegistry()
    cert, _, model = certify(tmp_path, "alpha")
    theirs = Certificate.model_validate(
        cert.model_copy(update={"model_name": "mine", "creator": MALLORY.address}).model_dump()
    )
    mallory_id = publish(registry, store, theirs, MALLORY.address)
    alice_id = publish(registry, store, cert)

    report = report_for_target(
        str(model), registry=registry, storage=store, trusted_registrants=[ALICE.address]
    )
    assert report.ok and report.model_id == alice_id
    lookup = report.check("lookup")
    assert lookup is not None and lookup.status is CheckStatus.WARN
    assert lookup.detail == (
        f"2 registrations match; reporting 0x{alice_id.hex()} (the first that verifies, else the "
        f"first registered); also: 0x{mallory_id.hex()}"
    )
    only_mallory = report_for_target(
        str(model), registry=registry, storage=store, trusted_registrants=[MALLORY.address]
    )
    assert only_mallory.model_id == mallory_id


# -- trust roots --------------------------------------------------------------------------


def _config(tmp_path: Path, text: str, **env: str) -> Any:
    from provenance.config import load_config

    (tmp_path / "provenance.toml").write_text(text)
    return load_config(env, cwd=tmp_path)


def test_the_trust_section_of_the_config(tmp_path: Path) -> None:
    from provenance.errors import ConfigError

    low = ALICE.address.lower()
    config = _config(tmp_path, f'[trust]\nregistrants = ["{low}"]\ncreators = []\n')
    assert config.trust.registrants == (ALICE.address,)  # checksummed
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, '[trust]\nregistrants = ["0x1234"]\n')
    assert str(info.value) == (
        f"config file {tmp_path / 'provenance.toml'}: trust.registrants: Value error, "
        "'0x1234' is not an Ethereum address (0x and 40 hex digits)"
    )
    with pytest.raises(ConfigError, match=r"trust\.anyone: Extra inputs are not permitted"):
        _config(tmp_path, "[trust]\nanyone = true\n")


def test_the_policy_comes_from_config_and_flags_only(tmp_path: Path) -> None:
    from provenance.chain.deploy import Deployed, Deployment
    from provenance.verify import policy_from_config

    registry, attestor, other = ("0x" + c * 40 for c in "abc")
    config = _config(
        tmp_path,
        f'state_dir = "st"\n[chain]\nchain_id = 5\n[chain.contracts]\nModelRegistry = "{registry}"'
        f'\n[trust]\nregistrants = ["{ALICE.address}"]\n',
    )
    policy = policy_from_config(config, trust=[BOB.address.lower()], attestor=attestor)
    assert (policy.chain_id, policy.registry, policy.attestor) == (
        5,
        to_checksum_address(registry),
        to_checksum_address(attestor),
    )
    assert policy.registrants == {ALICE.address, BOB.address}
    # the deployment file counts only for its own chain
    deployed = Deployment(
        5, {"OutputAttestor": Deployed(other, "0x" + "00" * 32, 7, ALICE.address, "")}
    )
    deployed.write(config.deployment_file)
    assert policy_from_config(config).attestor == to_checksum_address(other)
    assert policy_from_config(config, chain_id=6).attestor is None
    assert policy_from_config(config, chain_id=6).registrants == {ALICE.address}


def _receipt(chain_id: int, contract: str, output_digest: bytes = b"\x04" * 32) -> Any:
    from eth_account.messages import encode_typed_data

    from provenance.attest import Batch, OutputRecord, Receipt, batch_typed_data

    node = Account.create()
    record = OutputRecord(b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, output_digest, 0, 1)
    batch = Batch.of_one(record)
    typed = batch_typed_data(batch, chain_id, contract)
    signature = bytes(node.sign_message(encode_typed_data(full_message=typed)).signature)
    return Receipt(record, batch, (), signature, node.address, chain_id, contract)


MALFORMED_RECEIPTS = [
    ("record", "sequence", -1, "record.sequence is out of the uint64 range"),
    ("batch", "count", 1 << 32, "batch.count is out of the uint32 range"),
    ("batch", "timestamp", 1 << 64, "batch.timestamp is out of the uint64 range"),
    ("batch", "count", True, "batch.count must be an integer, not True"),
    (None, "node", "bob", "node must be a 20-byte 0x address, not 'bob'"),
    (None, "contract", "bob", "contract must be a 20-byte 0x address, not 'bob'"),
    (None, "chain_id", -5, "chain_id is out of the uint256 range"),
    (None, "chain_id", 0, "chain_id 0 is not a chain"),
    (None, "signature", "0x1234", "'0x1234' is not 65 bytes"),
    (None, "version", 2, "version 2 is not 1"),
]


@pytest.mark.parametrize(("part", "key", "value", "why"), MALFORMED_RECEIPTS)
def test_a_malformed_receipt_fails_its_receipt_check_instead_of_crashing(
    part: str | None, key: str, value: Any, why: str
) -> None:
    """Values the ABI cannot encode used to escape as OverflowError / ValueOutOfBounds /
    EncodingTypeError (a traceback from `verify-output`), and a node that is no address would
    reach the event filter of the on-chain check."""
    from provenance.verify import CheckName, Policy, Verifier

    trusted = to_checksum_address("0x" + "aa" * 20)
    data = _receipt(31337, trusted).to_json()
    (data if part is None else data[part])[key] = value
    policy = Policy(chain_id=31337, registry="0x" + "11" * 20, attestor=trusted)
    report = Verifier(policy, registry=None, storage=None).receipt(data)
    failure = report.first_failure()
    assert failure is not None and (failure.name, failure.detail, failure.error) == (
        CheckName.RECEIPT,
        f"not a valid output receipt: {why}",
        IntegrityError,
    )


@pytest.mark.parametrize("signature", ["00" * 65, "11" * 64 + "63"])
def test_an_unrecoverable_signature_is_a_failed_receipt_check(signature: str) -> None:
    """eth-keys' BadSignature used to escape verify_receipt_offline (a traceback)."""
    from dataclasses import replace

    from provenance.attest import verify_receipt_offline
    from provenance.verify import CheckName, Policy, Verifier

    trusted = to_checksum_address("0x" + "aa" * 20)
    receipt = replace(_receipt(31337, trusted), signature=bytes.fromhex(signature))
    with pytest.raises(IntegrityError) as info:
        verify_receipt_offline(receipt)
    assert str(info.value) == "the batch signature is malformed: failed to recover ECDSA public key"
    policy = Policy(chain_id=31337, registry="0x" + "11" * 20, attestor=trusted)
    check = Verifier(policy, registry=None, storage=None).receipt(receipt).first_failure()
    assert check is not None and check.name == CheckName.RECEIPT
    # a Receipt built in Python with a value the ABI cannot hold is a failure too
    negative = replace(receipt, batch=replace(receipt.batch, timestamp=-1))
    with pytest.raises(IntegrityError, match=r"^the receipt's batch cannot be encoded: "):
        verify_receipt_offline(negative)


def test_verify_output_on_a_receipt_with_a_zeroed_signature_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    trusted = to_checksum_address("0x" + "aa" * 20)
    data = _receipt(31337, trusted).to_json()
    data["signature"] = "0x" + "00" * 65
    (tmp_path / "r.json").write_text(json.dumps(data))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "provenance"), "verify-output", "r.json", "--offline",
         "--attestor", trusted],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == (
        "error: receipt: the batch signature is malformed: failed to recover ECDSA public key\n"
    )


def test_verify_output_offline_does_not_say_verified(tmp_path: Path) -> None:
    """A receipt signed by anyone's key is self-consistent: offline it passes every check it
    can make, and the last line used to read "verified: every required check passed"."""
    import subprocess
    import sys

    trusted = to_checksum_address("0x" + "aa" * 20)
    (tmp_path / "r.json").write_text(json.dumps(_receipt(31337, trusted).to_json()))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "provenance"), "verify-output", "r.json", "--offline",
         "--attestor", trusted, "--receipt-only"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "receipt-anchored: not checked (offline)" in lines[-2]
    assert lines[-1] == (
        "NOT verified on chain (offline): the receipt is self-consistent and names the trusted "
        "chain and OutputAttestor, but neither its anchoring, nor the node's authorisation, nor "
        "the model was checked"
    )
    assert "verified: every required check passed" not in result.stdout


NO_OUTPUT = (
    "no output was checked: the receipt alone shows that some output was attested, not which; "
    "give the output (--output FILE, or the /predict answer, which carries its predictions), "
    "or --receipt-only to check the receipt alone"
)


def test_verify_output_of_a_bare_receipt_without_its_output_fails(tmp_path: Path) -> None:
    """Issue 15: `verify-output receipt.json` exited 0 having checked no output at all."""
    import subprocess
    import sys

    trusted = to_checksum_address("0x" + "aa" * 20)
    receipt = _receipt(31337, trusted, hashlib.sha256(b"out").digest())
    (tmp_path / "r.json").write_text(json.dumps(receipt.to_json()))
    command = [str(Path(sys.executable).parent / "provenance"), "verify-output", "r.json",
               "--offline", "--attestor", trusted]  # fmt: skip

    def run(*more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *more], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )

    bare = run()
    assert bare.returncode == 1, bare.stdout + bare.stderr
    assert bare.stderr == f"error: receipt-output: {NO_OUTPUT}\n"
    assert bare.stdout.splitlines()[-1].startswith("NOT verified: 1 required check(s) failed")
    assert run("--receipt-only").returncode == 0
    (tmp_path / "y").write_bytes(b"out")  # _receipt's output
    with_output = run("--output", "y")
    assert with_output.returncode == 0, with_output.stdout + with_output.stderr
    assert "the output match(es) its digests" in with_output.stdout


def test_the_verifier_requires_the_output_only_when_asked() -> None:
    from provenance.verify import Policy, Verifier

    trusted = "0x" + "aa" * 20
    policy = Policy(chain_id=31337, registry="0x" + "11" * 20, attestor=trusted)
    offline = Verifier(policy, registry=None, storage=None)
    receipt = _receipt(31337, to_checksum_address(trusted), hashlib.sha256(b"out").digest())
    assert offline.receipt(receipt).ok
    required = offline.receipt(receipt, require_output=True)
    assert not required.ok
    assert statuses(required)[-1] == ("receipt-output", "fail")
    first = required.first_failure()
    assert first is not None and first.detail == NO_OUTPUT
    assert offline.receipt(receipt, output=b"out", require_output=True).ok


def test_a_receipt_outside_the_trust_roots_fails_offline() -> None:
    from provenance.errors import ConfigError
    from provenance.verify import CheckName, Policy, Verifier

    trusted = "0x" + "aa" * 20
    policy = Policy(chain_id=31337, registry="0x" + "11" * 20, attestor=trusted)
    offline = Verifier(policy, registry=None, storage=None)
    good = offline.receipt(_receipt(31337, to_checksum_address(trusted)))
    assert good.ok and statuses(good) == [
        ("receipt", "pass"),
        ("receipt-chain", "pass"),
        ("receipt-contract", "pass"),
        ("receipt-anchored", "skip"),
    ]
    elsewhere = offline.receipt(_receipt(31337, "0x" + "bb" * 20))
    failure = elsewhere.first_failure()
    assert failure is not None and failure.name == CheckName.RECEIPT_CONTRACT
    assert failure.error is PolicyError
    replayed = offline.receipt(_receipt(11155111, to_checksum_address(trusted)))
    failure = replayed.first_failure()
    assert failure is not None and (failure.name, failure.detail) == (
        "receipt-chain",
        "the receipt is for chain 11155111, the trusted chain is 31337",
    )
    # no attestor trusted: a required failure, not a warning
    blind = Verifier(Policy(chain_id=31337, registry=None), registry=None, storage=None)
    check = blind.receipt(_receipt(31337, trusted)).check(CheckName.RECEIPT_CONTRACT)
    assert check is not None and check.failed
    # the registry client must be the trusted one
    other = Policy(chain_id=None, registry="0x" + "12" * 20)
    with pytest.raises(ConfigError) as info:
        Verifier(other, registry=FakeRegistry(), storage=None)
    assert str(info.value) == (
        f"the registry client reads {FakeRegistry.address}, the trusted ModelRegistry is "
        f"{to_checksum_address(other.registry or '')}"
    )


# -- what `provenance verify FILE` takes a file for (issue 15: an answer taken for a model) ----


ANSWER = {
    "predictions": [0, 1],
    "model_id": "0x" + "01" * 32,
    "model_digest": "sha256:" + "02" * 32,
    "sequence": 0,
    "input_digest": "sha256:" + "03" * 32,
    "output_digest": "sha256:" + "04" * 32,
    "receipt_url": "/receipts/0",
    "receipt": None,
}


@pytest.mark.parametrize("name", ["answer.json", "answer", "answer.txt", "prediction.out"])
def test_a_predict_answer_is_recognised_by_content_whatever_its_name(
    tmp_path: Path, name: str
) -> None:
    from provenance.verify.verifier import document_kind, json_document

    path = tmp_path / name
    path.write_text("\n  " + json.dumps(ANSWER))
    assert document_kind(json_document(path)) == "receipt"


def test_receipts_pending_answers_and_certificates_are_told_apart(tmp_path: Path) -> None:
    from provenance.verify.verifier import document_kind, json_document

    trusted = to_checksum_address("0x" + "aa" * 20)
    assert document_kind(_receipt(31337, trusted).to_json()) == "receipt"
    pending = {"status": "pending", "sequence": 3, "detail": "not anchored yet"}
    assert document_kind(pending) == "pending"
    assert document_kind({"version": 1, "model": {}, "data": {}}) == "certificate"
    assert document_kind({"certificate": {}, "signature": "0x"}) == "certificate"
    assert document_kind({"accuracy": 0.9}) is None
    assert document_kind([1, 2]) is None
    # model files stay model files: a pickle, broken JSON, a folder
    (tmp_path / "model.pkl").write_bytes(b"\x80\x05{" + b"\x00" * 100)
    (tmp_path / "broken.json").write_text('{"predictions": [')
    assert json_document(tmp_path / "model.pkl") is None
    assert json_document(tmp_path / "broken.json") is None
    assert json_document(tmp_path) is None
    assert json_document(tmp_path / "missing") is None
