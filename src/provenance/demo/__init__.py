"""``provenance demo``: the paper's story on the local stack, and its five attacks detected.

    setup = Setup.from_session(provenance.connect(), work_dir)   # the stack's chain, kubo, engine
    summary = run_demo(setup, narrator)          # narrator: report.Silent() or the CLI's Rich one
    summary.ok                                   # the story completed and 5/5 attacks detected

Stages: Model Alpha trained with captured preprocessing and registered; Model Beta fine-tuned
from it; both packaged as Docker images in IPFS (the image record attached to the certificate);
Beta served with attested outputs; everything verified and the family tree rendered; then the
five attacks of section 3.1, each met by a check that raises its specific error.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from provenance.demo import attacks, story
from provenance.demo.report import AttackOutcome, Detection, Narrator, Silent, Summary, attack_table
from provenance.demo.story import Setup, Story
from provenance.images import DockerEngine, ensure_base_image, pull_from_ipfs


def _images(s: Story) -> None:
    """Stage 3: anyone holding Beta's certificate gets exactly its image from IPFS."""
    _, beta = s.models()
    if beta.image is None:
        s.narrator.done("skipped (--skip-images)")
        return
    record = beta.image
    with s.engine() as engine:
        if engine.has(record.image_id):
            engine.client.images.remove(record.image_id, force=True)
        s.narrator.done(f"Beta's image {record.image_id[:19]}… removed from the Docker engine")
        with s.narrator.working(
            f"pulling {record.archive} from IPFS, checked block by block"
        ) as advance:
            pulled = pull_from_ipfs(
                engine, s.setup.storage, record.archive, record.image_id, progress=advance
            )
    s.narrator.done(f"loaded as {pulled.tag}: the image id in Beta's certificate, byte for byte")


def _base_image(s: Story) -> None:
    if s.setup.docker_host is None:
        return
    with (
        DockerEngine(s.setup.docker_host) as engine,
        s.narrator.working("loading the base image (Debian bookworm's python3)"),
    ):
        base = ensure_base_image(engine, s.setup.base_rootfs)
    s.narrator.done(f"base image {base.id[:19]}… in the engine at {s.setup.docker_host}")


def tell_story(setup: Setup, narrator: Narrator) -> Story:
    """The story up to the attacks (stages 0 to 5); a failing stage raises its ProvenanceError."""
    with narrator.stage(
        "Setting up",
        "A fresh work folder; the public dataset (scikit-learn's breast cancer data) written as "
        "CSV; the preprocessing script; Alice (the ML team) and Mallory use two of anvil's dev "
        "accounts.",
    ):
        s = story.start(setup, narrator)
        narrator.done(f"work folder {setup.work_dir}")
        narrator.done(f"Alice {setup.alice.address}, Mallory {setup.mallory.address}")
        _base_image(s)
    with narrator.stage(
        "1. Model Alpha is born",
        "Alice trains a scikit-learn pipeline. provenance.track captures each preprocessing step "
        "(code digest, arguments, input and output digests), the exact rows used, parameters, "
        "seeds, metrics and environment; stores model, data and certificate in IPFS; Alice signs "
        "it (EIP-712) and registers it on chain.",
    ):
        s.alpha = story.train_alpha(s)
    with narrator.stage(
        "2. Model Beta: fine-tuned from Alpha",
        "Beta continues Alpha's training (partial_fit) on a recorded subset of 200 rows. Its "
        "certificate names Alpha as parent (relation fine-tune): the chain links them.",
    ):
        s.beta = story.fine_tune_beta(s, s.alpha)
    with narrator.stage(
        "3. Model images through IPFS",
        "Each model was packaged as a Docker image inside its run and pushed into IPFS; the "
        "image record (image id, archive CID) is attached to the certificate, so the chain "
        "commits to it. Here Beta's image is deleted and fetched back by CID.",
    ):
        _images(s)
    with narrator.stage(
        "4. Serving Beta with attested outputs",
        "The attesting inference service (`provenance serve`) fetches Beta by its id, checks it "
        "against its certificate and runs it; Alice authorises the service's node key for Beta "
        "(bound to its model digest and image). Each answer is recorded, sealed in a Merkle "
        "batch, signed by the node and anchored on the OutputAttestor; the client gets receipts.",
    ):
        s.served = story.serve_beta(s)
    with narrator.stage(
        "5. An auditor verifies everything",
        "From IPFS and the chain only: signatures, registrations, training data, preprocessing "
        "code, model files, images and output receipts; then the family tree from the chain.",
    ):
        s.summary.verification = story.verify_all(s)
        s.summary.files.update(story.render_tree(s))
    alpha, beta = s.models()
    s.summary.models = {"alpha": alpha.to_json(), "beta": beta.to_json()}
    return s


def run_demo(
    setup: Setup, narrator: Narrator, *, clock: Callable[[], float] = time.monotonic
) -> Summary:
    """Run the whole story and the five attacks; the summary says what was detected.

    A stage that fails raises (its ProvenanceError); an attack that goes undetected does not
    raise: ``summary.ok`` is then False."""
    t0 = clock()
    s = tell_story(setup, narrator)
    for title, explanation, attack in attacks.ATTACKS:
        with narrator.stage(title, explanation):
            s.summary.attacks.append(attack(s))
    with narrator.stage(
        "6. The response: the impostor revoked, its descendants tainted",
        "Bob, downstream, had already built on Mallory's impostor. The auditor (the registry's "
        "admin grants it AUDITOR_ROLE) revokes the impostor on chain; every descendant is now "
        "reported tainted, `provenance impact` lists them, and `provenance serve` refuses them.",
    ):
        s.summary.response = story.respond(s)
    with narrator.stage(
        "The family tree, after the attacks",
        "The chain's record now also holds Mallory's impostor (revoked, red) under Beta and "
        "Bob's model built on it (tainted, orange).",
    ):
        s.summary.files.update(story.render_tree(s, "family-tree-after-attacks"))
    s.summary.seconds = clock() - t0
    return s.summary


__all__ = [
    "AttackOutcome",
    "Detection",
    "Narrator",
    "Setup",
    "Silent",
    "Summary",
    "attack_table",
    "run_demo",
    "tell_story",
]
