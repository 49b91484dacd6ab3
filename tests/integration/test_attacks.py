"""The paper's five attacks (section 3.1), each carried out for real against the session stack
after the demo's story ran once (with images), each caught by its check with its exact error."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from provenance.chain.client import connect
from provenance.chain.deploy import Deployment
from provenance.chain.keys import dev_account
from provenance.demo import Setup, Silent, tell_story
from provenance.demo import attacks as demo_attacks
from provenance.demo.report import AttackOutcome, Detection
from provenance.demo.story import Story
from provenance.images import default_rootfs
from provenance.stack import Stack
from provenance.storage import Kubo

from .conftest import ROOT

pytestmark = pytest.mark.integration

HEX = "[0-9a-f]{64}"


@pytest.fixture(scope="module")
def story(stack: Stack, base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Story:
    """The story once: Alpha and Beta trained, certified, registered, imaged, Beta served and
    everything verified."""
    config = stack.config
    w3 = connect(config.chain.rpc_url)
    deployment = Deployment.read(config.deployment_file)
    assert deployment is not None
    registry = deployment.contracts["ModelRegistry"]
    setup = Setup(
        w3=w3,
        registry_address=registry.address,
        registry_from_block=registry.block,
        attestor_address=deployment.contracts["OutputAttestor"].address,
        storage=Kubo(config.ipfs.api, timeout=600),
        docker_host=stack.docker_host(),
        base_rootfs=default_rootfs(ROOT / ".venv"),
        work_dir=tmp_path_factory.mktemp("demo") / "run",
        alice=dev_account(w3, 1),
        mallory=dev_account(w3, 3),
        auditor=dev_account(w3, 0),
        bob=dev_account(w3, 2),
    )
    return tell_story(setup, Silent())


def only(outcome: AttackOutcome, check: str) -> Detection:
    (found,) = [d for d in outcome.detections if d.check == check]
    assert found.detected, found
    return found


def test_the_story_verifies_before_any_attack(story: Story) -> None:
    alpha, beta = story.models()
    assert beta.certificate.parents[0].id == alpha.id_hex
    assert alpha.image is not None and beta.image is not None
    assert {a.name for a in beta.certificate.attachments} == {
        a.name for a in alpha.certificate.attachments
    }
    reports = story.summary.verification
    # per model: its report by id, its model file from IPFS, its image; then a receipt
    assert [(r["kind"], r["model_id"]) for r in reports] == [
        ("model-id", alpha.id_hex),
        ("model-files", alpha.id_hex),
        ("image", alpha.id_hex),
        ("model-id", beta.id_hex),
        ("model-files", beta.id_hex),
        ("image", beta.id_hex),
        ("receipt", beta.id_hex),
    ]
    assert all(r["ok"] and r["first_failure"] is None for r in reports)

    def status(report: dict[str, Any], name: str) -> tuple[str, str]:
        (check,) = [c for c in report["checks"] if c["name"] == name]
        return check["status"], check["detail"]

    for report, model in ((reports[0], alpha), (reports[3], beta)):
        for name in ("registered", "status", "certificate-digest", "model-digest", "data"):
            assert status(report, name)[0] == "pass", name
        (dataset,) = model.certificate.data.datasets
        assert status(report, "data")[1].startswith(
            f"recomputed from {story.work / 'audit' / f'{model.folder.name}-{dataset.name}'}: "
        )
        assert status(report, "signature") == (
            "pass",
            f"EIP-712 signature by the creator {story.setup.alice.address}",
        )
        assert status(report, "trusted") == (
            "pass",
            f"registrant {story.setup.alice.address} is in the trust list",
        )
        assert status(report, "preprocessing") == (
            "pass",
            f"{len(model.certificate.preprocessing)} captured step(s) re-run from preprocess.py "
            "on the data: code and output digests are the certificate's",
        )
    assert status(reports[0], "lineage") == ("pass", "a root model: no ancestors")
    assert status(reports[3], "lineage") == ("pass", "1 ancestor(s), none revoked")
    for report, model in ((reports[2], alpha), (reports[5], beta)):
        assert model.image is not None
        assert status(report, "image-model") == (
            "pass",
            f"the model files inside the image hash to {model.certificate.model.digest}",
        )
        assert status(report, "image-certified") == (
            "pass",
            f"the certificate's image record names image {model.image.image_id}",
        )
    assert status(reports[6], "receipt-contract")[0] == "pass"
    assert status(reports[6], "receipt-anchored")[0] == "pass"
    assert status(reports[6], "outputs") == (
        "pass",
        "the input and output bytes of the 8 answers the client got hash to their receipts' "
        "digests",
    )
    # told through the narrator: a heading per report, then one line per check
    lines = story.narrator.lines  # type: ignore[attr-defined]
    headings = [line for line in lines if line.startswith(("\u2714 ", "\u2718 "))]
    assert len(headings) == 7 and all(h.startswith("\u2714 ") for h in headings)
    assert headings[0].startswith(f"\u2714 Model Alpha {alpha.id_hex}: ")
    assert not any(line.lstrip().startswith("\u2718") for line in lines)
    assert Path(story.summary.files["family_tree_html"]).read_text().count("<svg") == 1
    assert story.served is not None and len(story.served.outputs) == 8


def test_attack_1_poisoned_training_data(story: Story) -> None:
    alpha, _ = story.models()
    (dataset,) = alpha.certificate.data.datasets
    assert dataset.subset is not None
    outcome = demo_attacks.poisoned_training_data(story)
    (found,) = outcome.detections
    assert found == only(outcome, "verify: data")
    assert found.error == "IntegrityError"
    recorded = dataset.subset.source.root
    assert re.fullmatch(
        rf"dataset {re.escape(dataset.name)} \(train\): recomputed from "
        rf"{re.escape(str(story.data))}: table root differs: recorded {recorded}, "
        rf"recomputed sha256:{HEX}",
        found.message or "",
    )
    assert not found.message.endswith(recorded)  # type: ignore[union-attr]


def test_attack_2_malicious_code(story: Story) -> None:
    alpha, _ = story.models()
    step = alpha.certificate.preprocessing[1]
    assert step.name == "preprocess:drop_outliers"
    outcome = demo_attacks.malicious_code(story)
    found = only(outcome, "preprocessing code digest (re-run of the captured steps)")
    assert found.error == "IntegrityError"
    assert re.fullmatch(
        rf"step preprocess:drop_outliers: code digest differs: recorded {step.source_digest}, "
        rf"recomputed sha256:{HEX}",
        found.message or "",
    )


def test_attack_3_an_attacker_posing_as_alice(story: Story) -> None:
    alice, mallory = story.setup.alice.address, story.setup.mallory.address
    outcome = demo_attacks.impersonation(story)
    assert [d.check for d in outcome.detections] == [
        "verify: signature",
        "verify: registrant",
        "verify: trusted",
    ]
    (impostor,) = [m for m, name in story.names.items() if "Mallory" in name]
    subject = f"model 0x{impostor[:4].hex()}\u2026"
    signature = only(outcome, "verify: signature")
    assert signature.error == "SignatureError"
    assert signature.message == (
        f"{subject}: the certificate signature recovers to {mallory}, not to its creator {alice}"
    )
    registrant = only(outcome, "verify: registrant")
    assert registrant.error == "PolicyError"
    assert registrant.message == (
        f"{subject}: registered by {mallory}, but the certificate names creator {alice}"
    )
    trusted = only(outcome, "verify: trusted")
    assert trusted.error == "PolicyError"
    assert trusted.message == f"{subject}: registrant {mallory} is not in the trust list"


def test_attack_4_model_poisoning(story: Story) -> None:
    _, beta = story.models()
    assert beta.image is not None
    digest = beta.certificate.model.digest
    (entry,) = beta.certificate.model.manifest.files
    deployed = story.work / "deploy" / "beta"
    outcome = demo_attacks.model_poisoning(story)
    assert [d.check for d in outcome.detections] == [
        "verify: model-files",
        "verify: image-model",
        "verify: image-certified",
    ]
    files = only(outcome, "verify: model-files")
    assert files.error == "IntegrityError"
    model = re.escape(str(deployed / "model.pkl"))
    assert re.fullmatch(
        rf"{model}: not the certified model of {re.escape(str(deployed / 'certificate.json'))}: "
        rf"{model}: model.pkl has \d+ bytes and digest sha256:{HEX}, the manifest says "
        rf"{entry.size} bytes and {entry.digest}",
        files.message or "",
    )
    image = only(outcome, "verify: image-model")
    assert image.error == "IntegrityError"
    match = re.fullmatch(
        rf"image (sha256:{HEX}): the model in image \1 has digest sha256:{HEX}, not {digest}",
        image.message or "",
    )
    assert match is not None
    tampered = match.group(1)
    assert tampered != beta.image.image_id
    certified = only(outcome, "verify: image-certified")
    assert certified.error == "IntegrityError"
    assert certified.message == (
        f"image {tampered}: the certificate's image record names image {beta.image.image_id}, "
        f"not {tampered}"
    )


def test_attack_5_output_manipulation(story: Story) -> None:
    assert story.served is not None
    _, _, receipt = story.served.outputs[0]
    mallory = story.setup.mallory.address
    outcome = demo_attacks.output_manipulation(story)
    tampered = only(outcome, "output digest in the receipt")
    assert tampered.error == "IntegrityError"
    assert tampered.message == (
        f"the output does not match the receipt's output digest 0x{receipt.record.output_digest.hex()}"
    )
    forged = only(outcome, "receipt anchored on chain by an authorised node")
    assert forged.error == "IntegrityError"
    assert re.fullmatch(
        rf"batch root 0x[0-9a-f]{{64}} of model 0x{receipt.record.model_id.hex()} by {mallory} "
        rf"is not anchored on {receipt.contract}",
        forged.message or "",
    )
    refused = only(outcome, "OutputAttestor refuses an unauthorised node")
    assert refused.error == "ContractRevertError"
    assert refused.message == (
        f"OutputAttestor reverted: NodeNotAuthorized(modelId=0x{receipt.record.model_id.hex()}, "
        f"node={mallory})"
    )
