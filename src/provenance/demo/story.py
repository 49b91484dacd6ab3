"""The story: Alice's ML team trains Model Alpha, fine-tunes Model Beta from it, packages both
as Docker images in IPFS, serves Beta with attested outputs, and an auditor verifies all of it.
:mod:`provenance.demo.attacks` then lets Mallory try the paper's five attacks.

Everything runs against a real stack (the chain with ModelRegistry and OutputAttestor, kubo,
a Docker engine), given in :class:`Setup`; everything written goes into ``Setup.work_dir``.
"""

from __future__ import annotations

import contextlib
import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from web3 import Web3

from provenance.attest import Attestor, Receipt, verify_receipt_offline
from provenance.capture.tracker import Run, track
from provenance.certificate import Certificate, SignedCertificate, verify_certificate_signature
from provenance.chain.attestor import AttestorContract, verify_receipt_on_chain
from provenance.chain.registry import Registry
from provenance.chain.tx import Transactor
from provenance.errors import ConfigError
from provenance.images import (
    DockerEngine,
    ImageRecord,
    attach_image,
    build_model_image,
    image_record_of,
    push_to_ipfs,
    verify_model_image,
)
from provenance.manifest import TableManifest, verify_manifest
from provenance.storage import Kubo, LocalStore

from . import checks, code
from .report import Narrator, Summary

ALPHA, BETA = "Model Alpha", "Model Beta"
DATASET = "breast_cancer.csv"
Z = 3.5
SEED = 0
BETA_ROWS = 200
SERVED_ROWS = 8


@dataclass(frozen=True)
class Setup:
    """What the demo runs against. ``docker_host`` None skips the images."""

    w3: Web3
    registry_address: str
    registry_from_block: int
    attestor_address: str
    storage: Kubo | LocalStore
    docker_host: str | None
    base_rootfs: Path | None
    work_dir: Path
    alice: LocalAccount
    mallory: LocalAccount


@dataclass
class Model:
    """One trained, certified and registered model of the story."""

    name: str
    signed: SignedCertificate
    folder: Path
    pipeline: Pipeline
    image: ImageRecord | None = None

    @property
    def certificate(self) -> Certificate:
        return self.signed.certificate

    @property
    def id(self) -> bytes:
        return self.certificate.model_id

    @property
    def id_hex(self) -> str:
        return "0x" + self.certificate.model_id.hex()

    def to_json(self) -> dict[str, Any]:
        cert = self.certificate
        return {
            "id": self.id_hex,
            "certificate": str(self.folder / "certificate.json"),
            "certificate_cid": cert.cid,
            "certificate_digest": cert.digest_text,
            "model_digest": cert.model.digest,
            "data_commitment": cert.data.commitment,
            "creator": cert.creator,
            "parents": [{"id": p.id, "relation": p.relation} for p in cert.parents],
            "image_id": self.image.image_id if self.image else None,
            "image_archive": self.image.archive if self.image else None,
        }


@dataclass
class Served:
    """Beta's attested outputs: for each, its input and output bytes and its receipt."""

    node: str
    outputs: list[tuple[bytes, bytes, Receipt]] = field(default_factory=list)


@dataclass
class Story:
    """The state the stages build up, which the attacks then use."""

    setup: Setup
    narrator: Narrator
    summary: Summary
    alice_registry: Registry
    mallory_registry: Registry
    attestor: AttestorContract
    data: Path
    script: Path
    test_rows: list[list[float]] = field(default_factory=list)
    alpha: Model | None = None
    beta: Model | None = None
    served: Served | None = None
    names: dict[bytes, str] = field(default_factory=dict)

    @property
    def work(self) -> Path:
        return self.setup.work_dir

    def engine(self) -> DockerEngine:
        if self.setup.docker_host is None:
            raise ConfigError("the images were skipped (--skip-images)")
        return DockerEngine(self.setup.docker_host)

    def models(self) -> tuple[Model, Model]:
        if self.alpha is None or self.beta is None:
            raise ConfigError("the story has not trained both models yet")
        return self.alpha, self.beta


def start(setup: Setup, narrator: Narrator) -> Story:
    """A story in a fresh work folder: the accounts' clients and the demo's source files."""
    setup.work_dir.mkdir(parents=True, exist_ok=True)
    if any(setup.work_dir.iterdir()):
        raise ConfigError(f"the demo's work folder {setup.work_dir} is not empty")
    w3 = setup.w3
    alice_tx = Transactor(w3, setup.alice)
    story = Story(
        setup=setup,
        narrator=narrator,
        summary=Summary(work_dir=str(setup.work_dir), images=setup.docker_host is not None),
        alice_registry=Registry(
            w3, setup.registry_address, alice_tx, from_block=setup.registry_from_block
        ),
        mallory_registry=Registry(
            w3,
            setup.registry_address,
            Transactor(w3, setup.mallory),
            from_block=setup.registry_from_block,
        ),
        attestor=AttestorContract(w3, setup.attestor_address, alice_tx),
        data=setup.work_dir / "data" / DATASET,
        script=code.write(setup.work_dir / "code"),
    )
    story.data.parent.mkdir(parents=True)
    load_breast_cancer(as_frame=True).frame.to_csv(story.data, index=False)
    return story


def _features(frame: pd.DataFrame) -> tuple[Any, Any]:
    """Features and labels as numpy arrays (a served model receives plain rows)."""
    return frame.drop(columns="target").to_numpy(), frame["target"].to_numpy()


def _image_inside_run(story: Story, run: Run, name: str) -> ImageRecord | None:
    """Build the model's image, push it into IPFS and attach its record to the run (before the
    certificate is finalised, so the certificate digest covers it)."""
    if story.setup.docker_host is None:
        return None
    narrator = story.narrator
    with story.engine() as engine:
        with narrator.working(f"building the Docker image of {name}"):
            image = build_model_image(engine, run.output_dir / "model.pkl", name=name)
        with narrator.working(f"streaming `docker save` of {name} into IPFS") as advance:
            record = push_to_ipfs(engine, image.id, story.setup.storage, progress=advance)
    attach_image(run, record)
    narrator.done(
        f"image {record.image_id[:19]}… in IPFS as {record.archive} ({record.size / 1e6:.0f} MB)"
    )
    return record


def train_alpha(story: Story) -> Model:
    """Stage 1: Model Alpha, trained from scratch on the public dataset."""
    setup, narrator = story.setup, story.narrator
    steps = code.load(story.script)
    folder = story.work / "runs" / "alpha"
    with track(
        ALPHA,
        output_dir=folder,
        signer=setup.alice,
        storage=setup.storage,
        registry=story.alice_registry,
        source_dir=story.script.parent,
    ) as run:
        raw = pd.read_csv(story.data)
        clean = run.step(code.function(steps, "drop_incomplete"))(raw)
        clean = run.step(code.function(steps, "drop_outliers"))(clean, z=Z)
        train, test = train_test_split(
            clean, test_size=0.25, random_state=SEED, stratify=clean["target"]
        )
        run.log_dataset(story.data, role="train", subset=train.index, store=True)
        params = {"loss": "log_loss", "alpha": 1e-3, "max_iter": 1000, "random_state": SEED}
        pipeline = Pipeline([("scale", StandardScaler()), ("clf", SGDClassifier(**params))])
        run.log_params(params, test_size=0.25, z=Z)
        run.log_seeds(split=SEED, sgd=SEED)
        X, y = _features(train)
        pipeline.fit(X, y)
        X_test, y_test = _features(test)
        accuracy = float(pipeline.score(X_test, y_test))
        run.log_metrics(test_accuracy=accuracy)
        run.log_model(pipeline)
        story.test_rows = X_test[:SERVED_ROWS].tolist()
        image = _image_inside_run(story, run, ALPHA)
    assert run.signed is not None and run.registered is not None
    model = Model(ALPHA, run.signed, folder, pipeline, image)
    cert = model.certificate
    (dataset,) = cert.data.datasets
    assert isinstance(dataset.manifest, TableManifest)
    narrator.done(
        f"{len(cert.preprocessing)} preprocessing steps captured; trained on {dataset.manifest.rows} "
        f"of {len(raw)} rows (subset root {dataset.manifest.root[:23]}…); test accuracy {accuracy:.3f}"
    )
    narrator.done(
        f"certificate signed by Alice {setup.alice.address}, stored in IPFS as {cert.cid}"
    )
    narrator.done(f"registered on chain as {model.id_hex} in block {run.registered.block}")
    return model


def fine_tune_beta(story: Story, alpha: Model) -> Model:
    """Stage 2: Model Beta, Alpha fine-tuned on a recorded subset of rows."""
    setup, narrator = story.setup, story.narrator
    steps = code.load(story.script)
    folder = story.work / "runs" / "beta"
    with track(
        BETA,
        parents=[(alpha.id, "fine-tune", ALPHA)],
        output_dir=folder,
        signer=setup.alice,
        storage=setup.storage,
        registry=story.alice_registry,
        source_dir=story.script.parent,
    ) as run:
        raw = pd.read_csv(story.data)
        clean = run.step(code.function(steps, "drop_incomplete"))(raw)
        clinic = clean.sample(n=BETA_ROWS, random_state=SEED + 1)  # "the second hospital's rows"
        run.log_dataset(story.data, role="fine-tune", subset=clinic.index, store=True)
        pipeline = copy.deepcopy(alpha.pipeline)
        epochs = 5
        run.log_params(epochs=epochs, method="partial_fit of Alpha's SGDClassifier")
        run.log_seeds(sample=SEED + 1)
        X, y = _features(clinic)
        scaled = pipeline.named_steps["scale"].transform(X)
        for _ in range(epochs):
            pipeline.named_steps["clf"].partial_fit(scaled, y)
        run.log_metrics(train_accuracy=float(pipeline.score(X, y)))
        run.log_model(pipeline)
        image = _image_inside_run(story, run, BETA)
    assert run.signed is not None and run.registered is not None
    model = Model(BETA, run.signed, folder, pipeline, image)
    parents = story.alice_registry.parents(model.id)
    narrator.done(
        f"fine-tuned on {BETA_ROWS} recorded rows; registered as {model.id_hex} "
        f"in block {run.registered.block}"
    )
    narrator.done(
        f"the chain links it to its parent: {', '.join(f'{p.relation.label} of 0x{p.id.hex()[:12]}…' for p in parents)}"
    )
    return model


def serve_beta(story: Story) -> Served:
    """Stage 4: ``provenance serve``'s service runs Beta (from its image, else its files), checked
    against its certificate first; each answer over HTTP is recorded, batched under a Merkle
    root, signed by the node and anchored on the OutputAttestor; the client keeps receipts."""
    import httpx

    from provenance.server.service import create_app, load_served_model, running
    from provenance.stack import free_port

    setup, narrator = story.setup, story.narrator
    _, beta = story.models()
    node = Account.create()
    images = beta.image is not None
    with contextlib.ExitStack() as stack:
        engine = stack.enter_context(story.engine()) if images else None
        with narrator.working("fetching Beta by its id and checking it against its certificate"):
            model = load_served_model(
                beta.id,
                registry=story.alice_registry,
                storage=setup.storage,
                workdir=story.work / "serve",
                source="image" if images else "artifacts",
                engine=engine,
                port=free_port() if images else None,
            )
        stack.callback(model.close)
        story.attestor.authorize_node(
            beta.id, node.address, beta.certificate.registration(), model.image_id_bytes
        )
        narrator.done(
            f"Alice authorised node {node.address} for Beta's model digest"
            + (f" and image {model.image_id[:19]}…" if model.image_id else "")
        )
        attestor = Attestor(
            beta.id,
            model.model_digest_bytes,
            node,
            story.attestor,
            story.work / "attest" / "journal.sqlite",
            batch_size=len(story.test_rows),
            max_age=3600.0,
        )
        stack.callback(attestor.close)
        url = stack.enter_context(
            running(create_app(model, attestor, story.alice_registry), port=free_port())
        )
        client = stack.enter_context(httpx.Client(base_url=url, timeout=120))
        answers: list[tuple[bytes, bytes, int]] = []
        with narrator.working(
            f"asking the service at {url} for {len(story.test_rows)} predictions"
        ):
            for row in story.test_rows:
                body = json.dumps({"instances": [row]}, sort_keys=True).encode()
                answer = client.post(
                    "/predict", content=body, headers={"content-type": "application/json"}
                )
                if answer.status_code != 200:
                    raise ConfigError(
                        f"the service answered {answer.status_code}: {answer.text[:300]}"
                    )
                data = answer.json()
                answers.append((body, output_bytes(data["predictions"]), int(data["sequence"])))
        with narrator.working("sealing, signing and anchoring the batch"):
            attestor.flush()
        served = Served(node=node.address)
        folder = story.work / "receipts"
        folder.mkdir(parents=True)
        for x, y, seq in answers:
            found = client.get(f"/receipts/{seq}")
            if found.status_code != 200:
                raise ConfigError(
                    f"receipt {seq}: the service answered {found.status_code}: {found.text[:300]}"
                )
            receipt = Receipt.from_json(found.json())
            (folder / f"{seq}.receipt.json").write_text(json.dumps(receipt.to_json(), indent=2))
            (folder / f"{seq}.input.json").write_bytes(x)
            (folder / f"{seq}.output.json").write_bytes(y)
            served.outputs.append((x, y, receipt))
    where = "in Beta's container" if images else "from Beta's files"
    last = served.outputs[-1][2]
    narrator.done(
        f"{len(answers)} predictions served {where} over HTTP, attested in one batch "
        f"(root 0x{last.batch.root.hex()[:16]}…, block {last.block}); receipts in {folder}"
    )
    return served


def output_bytes(predictions: list[Any]) -> bytes:
    """The bytes the service attests for an answer (RFC 8785 of ``{"predictions": ...}``)."""
    from provenance.server.service import output_bytes as attested

    return attested(predictions)


def verify_all(story: Story) -> list[dict[str, Any]]:
    """Stage 5: an auditor checks everything that was published, from IPFS and the chain."""
    setup, narrator = story.setup, story.narrator
    results: list[dict[str, Any]] = []
    audit = story.work / "audit"
    audit.mkdir()

    def passed(check: str, subject: str) -> None:
        results.append({"check": check, "subject": subject, "status": "pass"})
        narrator.done(f"{subject}: {check}")

    trusted: dict[str, str] = {str(setup.alice.address): "Alice"}
    for model in story.models():
        cert = model.certificate
        verify_certificate_signature(model.signed)
        passed("certificate signed by its creator (Alice)", model.name)
        checks.verify_registered(story.alice_registry, model.id, cert.digest)
        checks.verify_registrant(story.alice_registry, model.id, trusted)
        passed("on chain with this certificate digest, registered by a trusted account", model.name)
        for dataset in cert.data.datasets:
            assert dataset.url is not None
            copy_path = audit / f"{model.folder.name}-{dataset.name}"
            setup.storage.get_path(dataset.url.removeprefix("ipfs://"), copy_path)
            checks.verify_training_data(dataset, copy_path)
            passed(
                f"training data {dataset.name} recomputed from IPFS matches the commitment",
                model.name,
            )
        rerun = checks.rerun_steps(story.script, story.data, cert.preprocessing)
        checks.verify_step_code(cert.preprocessing, rerun)
        passed("preprocessing re-run: code and output digests match", model.name)
        assert cert.model.url is not None
        model_dir = audit / f"{model.folder.name}-model"
        model_dir.mkdir()
        setup.storage.get_path(cert.model.url.removeprefix("ipfs://"), model_dir / "model.pkl")
        verify_manifest(cert.model.manifest, model_dir)
        passed("model file fetched from IPFS matches the model digest", model.name)
        if model.image is not None:
            with story.engine() as engine:
                record = image_record_of(cert, setup.storage)
                verify_model_image(engine, record.image_id, cert.model.digest)
            passed(
                "image record attached; the image's model files match the model digest", model.name
            )
    if story.served is not None:
        for x, y, receipt in story.served.outputs:
            verify_receipt_offline(receipt, input_data=x, output_data=y)
            verify_receipt_on_chain(setup.w3, receipt, setup.registry_address)
        passed(
            f"{len(story.served.outputs)} output receipts: digests, Merkle proof, node signature, anchored, authorised",
            BETA,
        )
    return results


def render_tree(story: Story, stem: str = "family-tree") -> dict[str, str]:
    """The family tree from the chain's events (a LineageIndex in the work folder), written as
    HTML and SVG (Graphviz), DOT and Mermaid; the files by format."""
    from provenance.chain.index import LineageIndex
    from provenance.lineage import build_family_tree, render

    alpha, beta = story.models()
    with LineageIndex(story.work / "lineage.sqlite") as index:
        index.sync(story.alice_registry)
        names = {alpha.id: ALPHA, beta.id: BETA, **story.names}
        tree = build_family_tree(index, alpha.id, names=names)
    files: dict[str, str] = {}
    for fmt, suffix in (("html", "html"), ("svg", "svg"), ("dot", "dot"), ("mermaid", "mmd")):
        path = story.work / f"{stem}.{suffix}"
        path.write_text(render(tree, fmt), encoding="utf-8")
        files[f"{stem.replace('-', '_')}_{fmt}"] = str(path)
    story.narrator.done(
        f"family tree of Alpha: {len(tree.nodes)} models, {len(tree.edges)} links -> "
        f"{files[stem.replace('-', '_') + '_html']} (and .svg)"
    )
    return files
