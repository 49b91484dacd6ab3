"""`provenance verify` and provenance.verify against the real stack: certificates made by
provenance.track, stored in the stack's kubo and registered in its ModelRegistry; each attack
is what an attacker can actually do, and the report names the exact failing check."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from web3 import Web3

from provenance.attest import Attestor
from provenance.capture import track
from provenance.certificate import Certificate, SignedCertificate, to_json, typed_data
from provenance.chain.attestor import AttestorContract
from provenance.chain.client import connect
from provenance.chain.deploy import Deployment
from provenance.chain.registry import Registry
from provenance.errors import StorageError
from provenance.images import DockerEngine, attach_image, build_model_image, push_to_ipfs
from provenance.registration import Registration
from provenance.stack import Stack
from provenance.storage import Kubo
from provenance.verify import report_for_model, report_for_target, verify_model

from .chainutil import ALICE, BOB, MALLORY, transactor
from .test_stack import run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def w3(stack: Stack) -> Web3:
    return connect(stack.config.chain.rpc_url)


@pytest.fixture(scope="module")
def kubo(stack: Stack) -> Iterator[Kubo]:
    with Kubo(stack.config.ipfs.api) as client:
        yield client


def registry_of(stack: Stack, w3: Web3, account: LocalAccount) -> Registry:
    """The stack's registry (the one the CLI opens), sending as ``account``."""
    return Registry.from_deployment(w3, stack.config.deployment_file, transactor(w3, account))


@dataclass(frozen=True)
class Trained:
    certificate: Certificate
    signed: SignedCertificate
    model: Path
    folder: Path


def train(
    folder: Path,
    name: str,
    *,
    registry: Registry | None,
    storage: Kubo | None,
    signer: LocalAccount = ALICE,
    parents: tuple[tuple[bytes, str], ...] = (),
    C: float = 1.0,
) -> Trained:
    out = folder / name
    data = folder / f"{name}-iris.csv"
    load_iris(as_frame=True).frame.to_csv(data, index=False)
    with track(
        name,
        output_dir=out,
        signer=signer,
        storage=storage,
        registry=registry,
        source_dir=folder,
        parents=list(parents),
        environment=False,
    ) as run:
        frame = pd.read_csv(data)
        train_rows = frame.iloc[::2]
        run.log_dataset(data, role="train", subset=train_rows.index, store=storage is not None)
        model = LogisticRegression(C=C, max_iter=500)
        model.fit(train_rows.drop(columns="target"), train_rows["target"])
        run.log_model(model)
    assert run.certificate is not None and run.signed is not None
    return Trained(run.certificate, run.signed, out / "model.pkl", out)


def verify_cli(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    result = run_cli("verify", *args, "--json", env=env)
    assert result.stderr == "" or "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def failing(report: dict[str, Any]) -> tuple[str, str]:
    first = report["first_failure"]
    assert first is not None, report
    return first["name"], first["detail"]


def test_a_good_model_passes(
    stack: Stack, w3: Web3, kubo: Kubo, cli_env: dict[str, str], tmp_path: Path
) -> None:
    alice = registry_of(stack, w3, ALICE)
    alpha = train(tmp_path, "alpha", registry=alice, storage=kubo)

    code, report = verify_cli(cli_env, str(alpha.model), "--trust", ALICE.address)
    assert code == 0, report
    assert report["ok"] is True and report["kind"] == "model-files"
    assert report["model_id"] == "0x" + alpha.certificate.model_id.hex()
    assert [(c["name"], c["status"]) for c in report["checks"]] == [
        ("model-files", "pass"),
        ("oms-signature", "skip"),  # no model.pkl.sig beside it
        ("registered", "pass"),
        ("status", "pass"),
        ("certificate-fetched", "pass"),
        ("certificate-digest", "pass"),
        ("certificate-schema", "pass"),
        ("model-digest", "pass"),
        ("data-commitment", "pass"),
        ("parents", "pass"),
        ("signature", "pass"),  # certificate.json beside the model holds the envelope
        ("registrant", "pass"),
        ("trusted", "pass"),
        ("data", "pass"),  # the published CSV fetched from kubo and the subset recomputed
        ("lineage", "pass"),
    ]
    assert set(report["checks"][0]) == {"name", "status", "subject", "detail", "required", "error"}

    # the text report: one line per check, exit 0
    text = run_cli("verify", "0x" + alpha.certificate.model_id.hex(), env=cli_env)
    assert text.returncode == 0, text.stdout + text.stderr
    lines = text.stdout.splitlines()
    assert any(line.startswith("\u2714 model 0x") and "registered:" in line for line in lines)
    assert any(line.startswith("! model 0x") and "signature: not checked" in line for line in lines)
    assert lines[-1].startswith("verified: every required check passed")

    # the library, directly
    verify_model(alpha.certificate.model_id, registry=alice, storage=kubo)


def test_a_tampered_model_file(
    stack: Stack, w3: Web3, kubo: Kubo, cli_env: dict[str, str], tmp_path: Path
) -> None:
    alpha = train(tmp_path, "alpha", registry=registry_of(stack, w3, ALICE), storage=kubo)
    copy = tmp_path / "delivered"
    shutil.copytree(alpha.folder, copy)
    model = copy / "model.pkl"
    model.write_bytes(model.read_bytes().replace(b"LogisticRegression", b"LogisticRegressioN"))

    code, report = verify_cli(cli_env, str(model))
    assert code == 1
    name, detail = failing(report)
    assert name == "model-files"
    assert detail.startswith(
        f"not the certified model of {copy / 'certificate.json'}: {model}: model.pkl has "
    )
    assert "the manifest says" in detail
    assert report["model_id"] == "0x" + alpha.certificate.model_id.hex()


def test_a_borrowed_certificate_and_an_altered_envelope(
    stack: Stack, w3: Web3, kubo: Kubo, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """What an attacker can do to a certificate: IPFS content cannot change under its CID, so
    (1) register Alice's genuine certificate digest with another model's digest, (2) hand out
    Alice's signed envelope with a changed body and the old signature."""
    alpha = train(tmp_path, "alpha", registry=registry_of(stack, w3, ALICE), storage=kubo)
    genuine = alpha.certificate.registration()
    theirs = keccak(text="mallory's model")
    borrowed = Registration(genuine.certificate_digest, theirs, genuine.data_commitment)
    mallorys = registry_of(stack, w3, MALLORY).register(borrowed).id

    code, report = verify_cli(cli_env, "0x" + mallorys.hex())
    assert code == 1
    assert failing(report) == (
        "model-digest",
        f"the certificate's model digest {alpha.certificate.model.digest} is not the anchored "
        f"sha256:{theirs.hex()}",
    )

    better = alpha.certificate.model_copy(
        update={"training": alpha.certificate.training.model_copy(update={"metrics": {"acc": 1}})}
    )
    altered = SignedCertificate(certificate=better, signature=alpha.signed.signature)
    path = tmp_path / "altered.json"
    path.write_text(to_json(altered))
    code, report = verify_cli(cli_env, str(path))
    assert code == 1
    name, detail = failing(report)
    assert name == "signature"
    assert detail.startswith("the certificate signature recovers to ")
    assert detail.endswith(f", not to its creator {ALICE.address}")
    registered = next(c for c in report["checks"] if c["name"] == "registered")
    assert registered["status"] == "fail"
    assert registered["detail"] == (
        f"model 0x{better.model_id.hex()} is not registered in the registry "
        f"{registry_of(stack, w3, ALICE).address}"
    )


def test_a_forged_signature(
    stack: Stack, w3: Web3, kubo: Kubo, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """MALLORY signs a certificate that names ALICE as its creator, stores and registers it."""
    template = train(tmp_path, "template", registry=None, storage=None, signer=MALLORY)
    claim = Certificate.model_validate(
        template.certificate.model_copy(update={"creator": ALICE.address}).model_dump()
    )
    signature = MALLORY.sign_message(typed_data(claim.digest)).signature
    envelope = SignedCertificate(certificate=claim, signature="0x" + bytes(signature).hex())
    assert kubo.put_bytes(claim.canonical_bytes()) == claim.cid
    mallorys = registry_of(stack, w3, MALLORY).register(claim.registration()).id
    assert mallorys == claim.model_id_for(MALLORY.address) != claim.model_id
    path = tmp_path / "forged.json"
    path.write_text(to_json(envelope))

    code, report = verify_cli(cli_env, str(path))
    assert code == 1
    assert failing(report) == (
        "signature",
        f"the certificate signature recovers to {MALLORY.address}, not to its creator "
        f"{ALICE.address}",
    )
    # by id alone (no envelope) the registrant check catches the impersonation
    code, report = verify_cli(cli_env, "0x" + mallorys.hex())
    assert code == 1
    assert failing(report) == (
        "registrant",
        f"registered by {MALLORY.address}, but the certificate names creator {ALICE.address}",
    )


def test_an_unknown_registrant(
    stack: Stack, w3: Web3, kubo: Kubo, cli_env: dict[str, str], tmp_path: Path
) -> None:
    bob = train(tmp_path, "bob", registry=registry_of(stack, w3, BOB), storage=kubo, signer=BOB)
    model_id = "0x" + bob.certificate.model_id.hex()
    code, report = verify_cli(cli_env, model_id, "--trust", ALICE.address)
    assert code == 1
    assert failing(report) == ("trusted", f"registrant {BOB.address} is not in the trust list")
    code, report = verify_cli(cli_env, model_id)  # no trust list: an open registry warns
    assert code == 0
    trusted = next(c for c in report["checks"] if c["name"] == "trusted")
    assert (trusted["status"], trusted["detail"]) == (
        "warn",
        "open registry: registrant not vouched for",
    )


def test_a_revoked_grandparent_taints_the_child(
    stack: Stack, w3: Web3, kubo: Kubo, cli_env: dict[str, str], tmp_path: Path
) -> None:
    alice = registry_of(stack, w3, ALICE)
    alpha = train(tmp_path, "alpha", registry=alice, storage=kubo)
    alpha_id = alpha.certificate.model_id
    beta = train(
        tmp_path, "beta", registry=alice, storage=kubo, parents=((alpha_id, "fine-tune"),), C=0.5
    )
    gamma = train(
        tmp_path,
        "gamma",
        registry=alice,
        storage=kubo,
        parents=((beta.certificate.model_id, "distillation"),),
        C=0.25,
    )
    gamma_id = "0x" + gamma.certificate.model_id.hex()
    assert verify_cli(cli_env, gamma_id)[0] == 0

    alice.revoke(alpha_id, keccak(text="poisoned rows"))
    text = run_cli("verify", gamma_id, env=cli_env)
    assert text.returncode == 1 and "Traceback" not in text.stderr
    assert f"lineage: tainted: ancestor 0x{alpha_id.hex()} (grandparent) revoked" in text.stdout
    assert text.stdout.splitlines()[-1].startswith("NOT verified: ")
    code, report = verify_cli(cli_env, gamma_id)
    assert code == 1
    assert failing(report) == (
        "lineage",
        f"tainted: ancestor 0x{alpha_id.hex()} (grandparent) revoked",
    )
    grandparent = [c for c in report["checks"] if c["subject"].endswith("(grandparent)")]
    assert [(c["name"], c["status"]) for c in grandparent] == [
        ("ancestor-registered", "pass"),
        ("ancestor-certificate", "pass"),
        ("ancestor-creator", "warn"),  # the envelope is not on chain; an open registry
        ("ancestor-status", "fail"),
    ]
    assert grandparent[-1]["detail"].startswith(f"revoked by {ALICE.address} in block ")


def test_missing_ipfs_data_is_a_failed_check_not_a_hang(
    stack: Stack, w3: Web3, kubo: Kubo, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Registered, but the certificate was never stored: kubo would wait for it forever."""
    lost = train(tmp_path, "lost", registry=None, storage=None)
    # track() refuses to register what it does not store: register it behind its back
    registry_of(stack, w3, ALICE).register(lost.certificate.registration())
    model_id = lost.certificate.model_id
    code, report = verify_cli(cli_env, "0x" + model_id.hex(), "--fetch-timeout", "2")
    assert code == 1
    name, detail = failing(report)
    assert name == "certificate-fetched"
    assert detail == (
        f"certificate {lost.certificate.digest_text} (CID {lost.certificate.cid}) is not "
        f"retrievable from IPFS at {stack.config.ipfs.api}: {lost.certificate.cid} was not found "
        f"in IPFS within 2 s (IPFS API {stack.config.ipfs.api})"
    )
    assert report["first_failure"]["error"] == "StorageError"
    with pytest.raises(StorageError, match=r"was not found in IPFS within 1 s \(IPFS API "):
        verify_model(
            model_id, registry=registry_of(stack, w3, ALICE), storage=kubo, fetch_timeout=1
        )


def test_an_image_target(
    stack: Stack,
    w3: Web3,
    kubo: Kubo,
    base_image: str,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    alice = registry_of(stack, w3, ALICE)
    with DockerEngine(stack.docker_host()) as engine:
        X, y = load_iris(return_X_y=True)
        with track(
            "Iris in a box",
            output_dir=tmp_path / "run",
            signer=ALICE,
            storage=kubo,
            registry=alice,
            source_dir=tmp_path,
            environment=False,
        ) as run:
            run.log_model(LogisticRegression(max_iter=500).fit(X, y))
            image = build_model_image(engine, tmp_path / "run" / "model.pkl")
            attach_image(run, push_to_ipfs(engine, image.id, kubo))
        assert run.certificate is not None and image.tag is not None
        report = report_for_target(image.tag, registry=alice, storage=kubo, engine=engine)
    assert report.ok and report.kind == "image", report.first_failure()
    assert report.model_id == run.certificate.model_id
    certified = report.check("image-certified")
    assert certified is not None
    assert certified.detail == f"the certificate's image record names image {image.id}"

    code, cli_report = verify_cli(cli_env, image.id)
    assert code == 0, cli_report
    assert [c["name"] for c in cli_report["checks"][:3]] == [
        "image",
        "image-model",
        "image-certified",
    ]


def test_a_receipt_target(
    stack: Stack, w3: Web3, kubo: Kubo, cli_env: dict[str, str], tmp_path: Path
) -> None:
    alice = registry_of(stack, w3, ALICE)
    served = train(tmp_path, "served", registry=alice, storage=kubo)
    deployment = Deployment.read(stack.config.deployment_file)
    assert deployment is not None
    address = deployment.contracts["OutputAttestor"].address
    registration = served.certificate.registration()
    node = Account.create()
    AttestorContract(w3, address, transactor(w3, ALICE)).authorize_node(
        served.certificate.model_id, node.address, registration, keccak(text="image")
    )
    sdk = Attestor(
        served.certificate.model_id,
        registration.model_digest,
        node,
        AttestorContract(w3, address, transactor(w3, BOB)),
        tmp_path / "journal.sqlite",
        batch_size=4,
    )
    for i in range(3):
        sdk.record(f"in {i}".encode(), f"out {i}".encode())
    sdk.flush()
    receipt = sdk.receipt(1)
    sdk.close()
    assert receipt is not None
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipt.to_json()))

    code, report = verify_cli(cli_env, str(path))
    assert code == 0, report
    assert report["kind"] == "receipt"
    assert [(c["name"], c["status"]) for c in report["checks"][:6]] == [
        ("receipt", "pass"),
        ("receipt-chain", "pass"),
        ("receipt-contract", "pass"),
        ("receipt-anchored", "pass"),
        ("node-authorised", "pass"),
        ("receipt-model", "pass"),
    ]

    # a receipt from another attestor contract (one the attacker deployed) is refused
    other = dict(receipt.to_json(), contract="0x" + "42" * 20)
    path.write_text(json.dumps(other))
    code, report = verify_cli(cli_env, str(path))
    assert code == 1
    assert failing(report)[0] == "receipt"  # the node signed for the real contract


def test_verify_output_from_the_cli(
    stack: Stack, w3: Web3, kubo: Kubo, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """`provenance verify-output` is Verifier.receipt on the config's trust roots: the
    deployment's OutputAttestor and registry; one line on stderr and exit 1 on failure."""
    alice = registry_of(stack, w3, ALICE)
    served = train(tmp_path, "outputs", registry=alice, storage=kubo)
    deployment = Deployment.read(stack.config.deployment_file)
    assert deployment is not None
    address = deployment.contracts["OutputAttestor"].address
    reg = served.certificate.registration()
    node = Account.create()
    AttestorContract(w3, address, transactor(w3, ALICE)).authorize_node(
        served.certificate.model_id, node.address, reg, keccak(text="image")
    )
    sdk = Attestor(
        served.certificate.model_id,
        reg.model_digest,
        node,
        AttestorContract(w3, address, transactor(w3, BOB)),
        tmp_path / "journal.sqlite",
        batch_size=5,
    )
    x, y = b"features", b"class 1"
    seq = sdk.record(x, y).sequence
    for i in range(4):
        sdk.record(f"in {i}".encode(), f"out {i}".encode())
    sdk.flush()
    receipt = sdk.receipt(seq)
    assert receipt is not None and receipt.block is not None
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipt.to_json()))
    (tmp_path / "x").write_bytes(x)
    (tmp_path / "y").write_bytes(y)

    args = ("--input", str(tmp_path / "x"), "--output", str(tmp_path / "y"))
    result = run_cli("verify-output", str(path), *args, "--json", env=cli_env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["kind"] == "receipt"
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["receipt"]["detail"].startswith("the input and output match(es) its digests")
    assert checks["receipt-anchored"]["detail"].startswith(
        f"batch root 0x{receipt.batch.root.hex()} anchored in block {receipt.block}"
    )
    assert checks["node-authorised"]["status"] == "pass"

    # offline: the trust roots are still compared (here given as flags), the chain is not read
    bare = {"PATH": "/usr/bin:/bin", "PYTHONPATH": cli_env.get("PYTHONPATH", "")}
    offline = run_cli(
        "verify-output",
        str(path),
        "--offline",
        "--attestor",
        address,
        "--receipt-only",
        env=bare,
    )
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert "receipt-anchored: not checked (offline)" in offline.stdout
    # without a trusted attestor even offline fails: the receipt's own contract is no root
    untrusted = run_cli("verify-output", str(path), "--offline", env=bare)
    assert untrusted.returncode == 1
    assert untrusted.stderr.strip().startswith(
        f"error: receipt-contract: the receipt names OutputAttestor {address}, but no "
        "OutputAttestor is trusted"
    )

    # a bare receipt without its output proves no particular output: it fails, last
    result = run_cli("verify-output", str(path), env=cli_env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip() == (
        "error: receipt-output: no output was checked: the receipt alone shows that some output "
        "was attested, not which; give the output (--output FILE, or the /predict answer, which "
        "carries its predictions), or --receipt-only to check the receipt alone"
    )
    assert run_cli("verify-output", str(path), "--receipt-only", env=cli_env).returncode == 0

    (tmp_path / "y2").write_bytes(y + b"!")
    tampered = run_cli("verify-output", str(path), "--output", str(tmp_path / "y2"), env=cli_env)
    assert tampered.returncode == 1
    assert tampered.stderr.strip() == (
        "error: receipt: the output does not match the receipt's output digest "
        f"0x{receipt.record.output_digest.hex()}"
    )

    sdk.record(b"later", b"unsent")
    sdk._seal()  # sealed and signed, never sent
    unsent = sdk.receipt(5)
    assert unsent is not None
    (tmp_path / "unsent.json").write_text(json.dumps(unsent.to_json()))
    result = run_cli("verify-output", str(tmp_path / "unsent.json"), env=cli_env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: receipt-anchored: batch root 0x{unsent.batch.root.hex()} of model "
        f"0x{served.certificate.model_id.hex()} by {node.address} is not anchored on {address}"
    )
    sdk.close()

    # revoked after the anchoring: a warning, the output was attested while it was active
    alice.revoke(served.certificate.model_id, keccak(text="incident"))
    result = run_cli("verify-output", str(path), "--json", "--receipt-only", env=cli_env)
    assert result.returncode == 0, result.stdout + result.stderr
    status = {c["name"]: c for c in json.loads(result.stdout)["checks"]}["status"]
    assert status["status"] == "warn"
    assert status["detail"].endswith(
        f"after the output was anchored in block {receipt.block}: it was attested while the "
        "model was active"
    )


def test_report_for_model_with_trust_and_envelope_passes_everything(
    stack: Stack, w3: Web3, kubo: Kubo, tmp_path: Path
) -> None:
    """The explorer's entry point: a Report for a model id, JSON-ready."""
    alice = registry_of(stack, w3, ALICE)
    alpha = train(tmp_path, "alpha", registry=alice, storage=kubo)
    report = report_for_model(
        alpha.certificate.model_id,
        registry=alice,
        storage=kubo,
        trusted_registrants=[ALICE.address],
        envelope=alpha.signed,
    )
    assert report.ok
    # every check passes, but the image's: no image is recorded or bound (a skip, said once)
    skipped = [(str(c.name), str(c.status)) for c in report.checks if str(c.status) != "pass"]
    assert skipped == [("image", "skip")]
    assert json.loads(json.dumps(report.to_json()))["ok"] is True
