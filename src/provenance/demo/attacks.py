"""The five attacks of the paper's section 3.1, each carried out for real against the stack
and its material, each met by a named check that must raise its specific error.

1. false training data: rows of the dataset changed in the data store after registration;
2. malicious code: the preprocessing script edited;
3. an attacker posing as an ML developer: Mallory registers a model "by Alice";
4. model poisoning: the deployed model file and the model image swapped for tampered ones;
5. manipulation of a running program's output: a changed prediction and a forged receipt.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd
from eth_account.messages import encode_typed_data

from provenance.attest import Batch, OutputRecord, Receipt, batch_typed_data, verify_receipt_offline
from provenance.capture.tracker import track
from provenance.certificate import SignedCertificate, typed_data
from provenance.chain.attestor import verify_receipt_on_chain
from provenance.errors import (
    ContractRevertError,
    IntegrityError,
    PolicyError,
    ProvenanceError,
    SignatureError,
)
from provenance.images import MODEL_DIR
from provenance.verify import Report, report_for_model, report_for_target

from . import checks, code
from .report import AttackOutcome, Detection
from .story import BETA, Story

POISONED_ROWS = 40


def detect(
    story: Story, check: str, expected: type[ProvenanceError], action: Callable[[], object]
) -> Detection:
    """Run one check against the attacked material; it must raise ``expected``."""
    try:
        action()
    except ProvenanceError as exc:
        found = Detection(check, expected.__name__, type(exc).__name__, str(exc))
    else:
        found = Detection(check, expected.__name__, None, None)
    if found.detected:
        story.narrator.caught(f"{check}: {found.error}: {found.message}")
    else:
        story.narrator.missed(
            f"{check}: {found.error or 'no error'}: {found.message or 'the check passed'}"
        )
    return found


def detect_check(
    story: Story, report: Report, name: str, expected: type[ProvenanceError]
) -> Detection:
    """A :mod:`provenance.verify` report's check ``name`` must have failed with ``expected``:
    the error :meth:`~provenance.verify.Report.raise_for_failure` raises for it (its subject and
    detail), shown as ``verify: <name>``."""
    check = report.check(name)
    alone = replace(report, checks=() if check is None else (check,))
    return detect(story, f"verify: {name}", expected, alone.raise_for_failure)


def poisoned_training_data(story: Story) -> AttackOutcome:
    """Attack 1: Mallory breaches the data store and flips labels of rows Alpha trained on."""
    alpha, _ = story.models()
    (dataset,) = alpha.certificate.data.datasets
    frame = pd.read_csv(story.data)
    assert dataset.subset is not None
    used = dataset.subset.selection.positions(len(frame))
    victims = used[:POISONED_ROWS]
    frame.loc[victims, "target"] = 1 - frame.loc[victims, "target"]
    frame.to_csv(story.data, index=False)
    new_cid = story.setup.storage.put_path(story.data)
    story.narrator.done(
        f"{POISONED_ROWS} labels flipped in {story.data.name} in the data store (now {new_cid}, "
        f"the certificate names {dataset.url})"
    )
    report = report_for_model(
        alpha.id,
        envelope=alpha.signed,
        data_sources={dataset.name: story.data},
        **story.verifying(),
    )
    found = detect_check(story, report, "data", IntegrityError)
    return AttackOutcome(
        1,
        "false training data (poisoned dataset)",
        f"{POISONED_ROWS} labels flipped in the training CSV after registration",
        (found,),
    )


def malicious_code(story: Story) -> AttackOutcome:
    """Attack 2: the preprocessing script is edited to relabel large tumours as benign."""
    alpha, _ = story.models()
    pristine = story.work / "audit" / f"{alpha.folder.name}-{story.data.name}"  # from IPFS
    code.make_malicious(story.script)
    story.narrator.done(
        f"{story.script.name}: drop_outliers now relabels tumours with mean radius > 17 as benign"
    )
    recorded = alpha.certificate.preprocessing
    found = detect(
        story,
        "preprocessing code digest (re-run of the captured steps)",
        IntegrityError,
        lambda: checks.verify_step_code(
            recorded, checks.rerun_steps(story.script, pristine, recorded)
        ),
    )
    return AttackOutcome(
        2,
        "malicious code",
        "drop_outliers in preprocess.py edited to relabel rows",
        (found,),
    )


def impersonation(story: Story) -> AttackOutcome:
    """Attack 3: Mallory publishes a trojaned "Beta v2" whose certificate names Alice as its
    creator, and registers it on chain (the registry is open: anyone may register)."""
    setup = story.setup
    _, beta = story.models()
    folder = story.work / "runs" / "mallory"
    with track(
        "Model Beta v2",
        parents=[(beta.id, "fine-tune", BETA)],
        output_dir=folder,
        environment=False,
        source_dir=folder,
    ) as run:
        trojan = beta.pipeline
        run.log_model(trojan)
    assert run.certificate is not None
    claimed = run.certificate.model_copy(update={"creator": setup.alice.address})
    claimed = type(claimed).model_validate(claimed.model_dump())
    # Mallory cannot sign as Alice: she signs the digest with her own key
    signature = setup.mallory.sign_message(typed_data(claimed.digest)).signature
    forged = SignedCertificate(certificate=claimed, signature="0x" + bytes(signature).hex())
    (folder / "certificate.json").write_text(forged.model_dump_json(indent=2))
    cid = setup.storage.put_bytes(claimed.canonical_bytes())  # published, as Alice's are
    if cid != claimed.cid:
        raise IntegrityError(f"the storage returned CID {cid}, expected {claimed.cid}")
    done = story.mallory_registry.register(claimed.registration())
    story.names[done.id] = "Model Beta v2 (by Mallory, claims Alice)"
    story.impostor = done.id
    story.narrator.done(
        f"Mallory registered 'Model Beta v2' (creator: Alice) as 0x{done.id.hex()[:16]}…, a child "
        f"of Beta, from her own account {setup.mallory.address}"
    )
    # an auditor given the model id and Mallory's signed certificate file
    report = report_for_model(done.id, envelope=forged, **story.verifying())
    return AttackOutcome(
        3,
        "attacker posing as an ML developer",
        "Mallory's key signs and registers a certificate naming Alice as creator",
        (
            detect_check(story, report, "signature", SignatureError),
            detect_check(story, report, "registrant", PolicyError),
            detect_check(story, report, "trusted", PolicyError),
        ),
    )


def _tampered_model(story: Story, target: Path) -> None:
    """Beta with its decision flipped: every class swapped (same size, different bytes)."""
    _, beta = story.models()
    import copy

    poisoned = copy.deepcopy(beta.pipeline)
    clf = poisoned.named_steps["clf"]
    clf.coef_ = -clf.coef_
    clf.intercept_ = -clf.intercept_
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(pickle.dumps(poisoned, protocol=5))


def model_poisoning(story: Story) -> AttackOutcome:
    """Attack 4: the deployed model file (beside its certificate) is swapped for a poisoned one,
    and (with images) a tampered image is made from Beta's by replacing its model file but
    keeping its labels. Each is verified as ``provenance verify`` verifies a file or an image."""
    _, beta = story.models()
    deployed = story.work / "deploy" / "beta"
    shutil.copytree(beta.folder, deployed, ignore=shutil.ignore_patterns("openings"))
    _tampered_model(story, deployed / "model.pkl")
    story.narrator.done(f"{deployed / 'model.pkl'} replaced by a model with its decisions inverted")
    files = report_for_target(str(deployed / "model.pkl"), **story.verifying())
    detections = [detect_check(story, files, "model-files", IntegrityError)]
    changed = "Beta's model file swapped for one with inverted decisions"
    if beta.image is not None:
        tampered_id = _tampered_image(story, deployed / "model.pkl")
        try:
            with story.engine() as engine:
                image = report_for_target(tampered_id, engine=engine, **story.verifying())
            detections += [
                detect_check(story, image, "image-model", IntegrityError),
                detect_check(story, image, "image-certified", IntegrityError),
            ]
        finally:
            with story.engine() as engine:
                engine.client.images.remove(tampered_id, force=True)
        changed += "; an image with Beta's labels but that model inside"
    return AttackOutcome(4, "model poisoning", changed, tuple(detections))


def _tampered_image(story: Story, model_file: Path) -> str:
    """Beta's image with its model file replaced (``docker commit``: labels kept)."""
    _, beta = story.models()
    assert beta.image is not None
    data = model_file.read_bytes()
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as tar:
        info = tarfile.TarInfo("model.pkl")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    with story.engine() as engine:
        container = engine.client.containers.create(beta.image.image_id, network_mode="none")
        try:
            container.put_archive(MODEL_DIR, payload.getvalue())
            committed = container.commit(
                repository="provenance/tampered", tag=beta.image.image_id[7:19]
            )
        finally:
            container.remove(force=True)
    story.narrator.done(
        f"tampered image {committed.id[:19]}… still labelled with Beta's model digest"
    )
    return str(committed.id)


def output_manipulation(story: Story) -> AttackOutcome:
    """Attack 5: the served answer is changed on its way to the client, and Mallory forges a
    receipt for an answer the model never gave, signed by a node key of her own."""
    setup = story.setup
    served = story.served
    if served is None:
        raise IntegrityError("Beta was not served: there are no outputs to manipulate")
    x, y, receipt = served.outputs[0]
    answer = json.loads(y)["predictions"][0]
    changed = json.dumps({"predictions": [1 - int(answer)]}, sort_keys=True).encode()
    story.narrator.done(
        f"output {receipt.record.sequence} changed from {y.decode()} to {changed.decode()}"
    )
    tampered = detect(
        story,
        "output digest in the receipt",
        IntegrityError,
        lambda: verify_receipt_offline(receipt, input_data=x, output_data=changed),
    )
    # A receipt of her own: same model, Mallory's "node", a batch of one, correctly signed.
    record = OutputRecord(
        receipt.record.model_id,
        receipt.record.model_digest,
        hashlib.sha256(x).digest(),
        hashlib.sha256(changed).digest(),
        0,
        receipt.record.timestamp,
    )
    batch = Batch.of_one(record)
    signable = encode_typed_data(
        full_message=batch_typed_data(batch, receipt.chain_id, receipt.contract)
    )
    signature = bytes(setup.mallory.sign_message(signable).signature)
    forged = Receipt(
        record=record,
        batch=batch,
        proof=(),
        signature=signature,
        node=setup.mallory.address,
        chain_id=receipt.chain_id,
        contract=receipt.contract,
        transaction=receipt.transaction,
        block=receipt.block,
    )
    (story.work / "receipts" / "forged.receipt.json").write_text(
        json.dumps(forged.to_json(), indent=2)
    )
    verify_receipt_offline(forged, input_data=x, output_data=changed)  # self-consistent offline
    story.narrator.done(
        "Mallory's forged receipt is self-consistent: it passes every offline check"
    )
    on_chain = detect(
        story,
        "receipt anchored on chain by an authorised node",
        IntegrityError,
        lambda: verify_receipt_on_chain(
            setup.w3, forged, setup.registry_address, attestor=setup.attestor_address
        ),
    )
    anchoring = detect(
        story,
        "OutputAttestor refuses an unauthorised node",
        ContractRevertError,
        lambda: story.attestor.anchor(batch, signature),
    )
    return AttackOutcome(
        5,
        "manipulation of a running program's output",
        "a prediction changed in transit; a receipt forged with Mallory's own node key",
        (tampered, on_chain, anchoring),
    )


ATTACKS: tuple[tuple[str, str, Callable[[Story], AttackOutcome]], ...] = (
    (
        "Attack 1: false training data",
        "Mallory breaks into the data store and flips labels of rows Alpha was trained on. The "
        "certificate committed to every row (a Merkle root over typed rows, and the selection "
        "of the rows used): verifying Alpha with the store's copy as its data source, the "
        "recomputed root no longer matches.",
        poisoned_training_data,
    ),
    (
        "Attack 2: malicious code",
        "The preprocessing script is edited to relabel large tumours as benign. Each captured "
        "step recorded the SHA-256 of its function's source and of its output: re-running the "
        "steps from the script as it is now gives other digests.",
        malicious_code,
    ),
    (
        "Attack 3: an attacker posing as an ML developer",
        "Mallory publishes a trojaned 'Model Beta v2' whose certificate names Alice as creator, "
        "and registers it. The chain accepts it (open registry) but records Mallory as the "
        "registrant; verifying it, her signature does not recover to Alice, and the registrant "
        "is neither the certificate's creator nor trusted.",
        impersonation,
    ),
    (
        "Attack 4: model poisoning",
        "Beta's deployed model file is replaced by one with inverted decisions, and an image is "
        "doctored to carry it under Beta's labels. Verifying the file and the image, the model "
        "digest in the certificate (per-file SHA-256) catches both; the image is also not the "
        "one the certificate's image record names.",
        model_poisoning,
    ),
    (
        "Attack 5: manipulation of a running program's output",
        "A prediction is changed on its way to the client, and Mallory forges a receipt for it "
        "with a node key of her own. Receipts bind each output's digest; only an authorised "
        "node's batch anchored on chain counts.",
        output_manipulation,
    ),
)
