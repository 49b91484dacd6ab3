"""The paper's five attacks (section 3.1), each carried out for real against the session stack
after the demo's story ran once (with images), each caught by its check with its exact error."""

from __future__ import annotations

import re
from pathlib import Path

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
    assert all(r["status"] == "pass" for r in story.summary.verification)
    # per model: signature, registration, its dataset, preprocessing, model file, image; receipts
    assert len(story.summary.verification) == 2 * 6 + 1
    assert Path(story.summary.files["family_tree_html"]).read_text().count("<svg") == 1
    assert story.served is not None and len(story.served.outputs) == 8


def test_attack_1_poisoned_training_data(story: Story) -> None:
    alpha, _ = story.models()
    (dataset,) = alpha.certificate.data.datasets
    assert dataset.subset is not None
    outcome = demo_attacks.poisoned_training_data(story)
    found = only(outcome, "data commitment (provenance data verify)")
    assert found.error == "IntegrityError"
    recorded = dataset.subset.source.root
    assert re.fullmatch(
        rf"table root differs: recorded {recorded}, recomputed sha256:{HEX}", found.message or ""
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
    signature = only(outcome, "creator signature (EIP-712)")
    assert signature.error == "SignatureError"
    assert signature.message == (
        f"the certificate signature recovers to {mallory}, not to its creator {alice}"
    )
    registrant = only(outcome, "registrant is trusted (Alice)")
    assert registrant.error == "IntegrityError"
    assert re.fullmatch(
        rf"model 0x{HEX} was registered by {mallory}, who is not a trusted registrant "
        rf"\(Alice {alice}\)",
        registrant.message or "",
    )


def test_attack_4_model_poisoning(story: Story) -> None:
    _, beta = story.models()
    digest = beta.certificate.model.digest
    (entry,) = beta.certificate.model.manifest.files
    outcome = demo_attacks.model_poisoning(story)
    files = only(outcome, "model manifest digest")
    assert files.error == "IntegrityError"
    assert re.fullmatch(
        rf".*/deploy/beta: model.pkl has \d+ bytes and digest sha256:{HEX}, the manifest says "
        rf"{entry.size} bytes and {entry.digest}",
        files.message or "",
    )
    image = only(outcome, "image model digest")
    assert image.error == "IntegrityError"
    assert re.fullmatch(
        rf"the model in image sha256:{HEX} has digest sha256:{HEX}, not {digest}",
        image.message or "",
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
        rf"batch root 0x[0-9a-f]{{64}} by {mallory} is not anchored on {receipt.contract}",
        forged.message or "",
    )
    refused = only(outcome, "OutputAttestor refuses an unauthorised node")
    assert refused.error == "ContractRevertError"
    assert refused.message == (
        f"OutputAttestor reverted: NodeNotAuthorized(modelId=0x{receipt.record.model_id.hex()}, "
        f"node={mallory})"
    )
