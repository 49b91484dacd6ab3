"""The story: Alice's ML team trains Model Alpha, fine-tunes Model Beta from it, packages both
as Docker images in IPFS, serves Beta with attested outputs, and an auditor verifies all of it.
:mod:`provenance.demo.attacks` then lets Mallory try the paper's five attacks.

Everything runs against a real stack (the chain with ModelRegistry and OutputAttestor, kubo,
a Docker engine), given in :class:`Setup`; everything written goes into ``Setup.work_dir``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
from provenance.certificate import Certificate, SignedCertificate
from provenance.chain.attestor import AttestorContract
from provenance.chain.keys import dev_account
from provenance.chain.registry import Registry
from provenance.chain.tx import Transactor
from provenance.errors import ConfigError, ProvenanceError
from provenance.images import (
    DockerEngine,
    ImageRecord,
    attach_image,
    build_model_image,
    push_to_ipfs,
)
from provenance.manifest import TableManifest
from provenance.server.service import output_bytes
from provenance.session import Session
from provenance.storage import Storage
from provenance.verify import Check, CheckStatus, Report, report_for_model, report_for_target

from . import checks, code
from .report import Narrator, Summary, tell_report

ALPHA, BETA = "Model Alpha", "Model Beta"
DATASET = "breast_cancer.csv"
Z = 3.5
BETA_ROWS = 200
SERVED_ROWS = 8
AUDITOR_ACCOUNT, ALICE_ACCOUNT, BOB_ACCOUNT, MALLORY_ACCOUNT = 0, 1, 2, 3
"""anvil dev accounts (from its public mnemonic) playing the cast; 0 deployed the contracts."""


@dataclass(frozen=True)
class Setup:
    """What the demo runs against. ``docker_host`` None skips the images."""

    w3: Web3
    registry_address: str
    registry_from_block: int
    attestor_address: str
    storage: Storage
    docker_host: str | None
    base_rootfs: Path | None
    work_dir: Path
    alice: LocalAccount
    mallory: LocalAccount
    auditor: LocalAccount
    """Holds the registry's admin role (on the local stack: the deployer) and grants itself
    AUDITOR_ROLE to revoke what the attacks left on chain."""
    bob: LocalAccount
    """A downstream developer who builds on a model before anyone found it was an impostor."""
    seed: int | None = None
    """The training seed (recorded in the certificates); None: a fresh one per run, so that
    each run trains models of their own (a model digest registered by an earlier run on the
    same chain would make looking a model file or image up by digest ambiguous)."""

    @classmethod
    def from_session(
        cls,
        session: Session,
        work_dir: Path,
        *,
        images: bool = True,
        base_rootfs: Path | None = None,
        seed: int | None = None,
    ) -> Setup:
        """The demo on a session's chain, trusted contracts, storage and (with ``images``)
        Docker engine, with anvil's dev accounts as the cast (the deployer, the registry's
        admin on the local stack, as the auditor)."""
        w3 = session.w3
        registry = session.registry
        return cls(
            w3=w3,
            registry_address=registry.address,
            registry_from_block=registry.from_block,
            attestor_address=session.attestor.address,
            storage=session.storage,
            docker_host=session.stack.docker_host() if images else None,
            base_rootfs=base_rootfs,
            work_dir=work_dir,
            alice=dev_account(w3, ALICE_ACCOUNT),
            mallory=dev_account(w3, MALLORY_ACCOUNT),
            auditor=dev_account(w3, AUDITOR_ACCOUNT),
            bob=dev_account(w3, BOB_ACCOUNT),
            seed=seed,
        )

    def registry_as(self, account: LocalAccount) -> Registry:
        """The registry, sending as ``account``."""
        return Registry(
            self.w3,
            self.registry_address,
            Transactor(self.w3, account),
            from_block=self.registry_from_block,
        )


@dataclass
class Model:
    """One trained, certified and registered model of the story."""

    name: str
    signed: SignedCertificate
    folder: Path
    pipeline: Pipeline
    image: ImageRecord | None = None
    registered_id: bytes | None = None  # the id the registration returned

    @property
    def certificate(self) -> Certificate:
        return self.signed.certificate

    @property
    def id(self) -> bytes:
        return self.certificate.model_id if self.registered_id is None else self.registered_id

    @property
    def id_hex(self) -> str:
        return "0x" + self.id.hex()

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
    seed: int
    test_rows: list[list[float]] = field(default_factory=list)
    alpha: Model | None = None
    beta: Model | None = None
    served: Served | None = None
    names: dict[bytes, str] = field(default_factory=dict)
    impostor: bytes | None = None

    @property
    def work(self) -> Path:
        return self.setup.work_dir

    def engine(self) -> DockerEngine:
        if self.setup.docker_host is None:
            raise ConfigError("the images were skipped (--skip-images)")
        return DockerEngine(self.setup.docker_host)

    def verifying(self) -> dict[str, Any]:
        """What :mod:`provenance.verify` is given: Alice's registry client (the chain), the
        storage, and Alice as the one trusted registrant."""
        return {
            "registry": self.alice_registry,
            "storage": self.setup.storage,
            "trusted_registrants": [str(self.setup.alice.address)],
        }

    def models(self) -> tuple[Model, Model]:
        if self.alpha is None or self.beta is None:
            raise ConfigError("the story has not trained both models yet")
        return self.alpha, self.beta


def start(setup: Setup, narrator: Narrator) -> Story:
    """A story in a fresh work folder: the accounts' clients and the demo's source files."""
    setup.work_dir.mkdir(parents=True, exist_ok=True)
    if any(setup.work_dir.iterdir()):
        raise ConfigError(f"the demo's work folder {setup.work_dir} is not empty")
    alice_registry = setup.registry_as(setup.alice)
    story = Story(
        setup=setup,
        narrator=narrator,
        summary=Summary(work_dir=str(setup.work_dir), images=setup.docker_host is not None),
        alice_registry=alice_registry,
        mallory_registry=setup.registry_as(setup.mallory),
        attestor=AttestorContract(setup.w3, setup.attestor_address, alice_registry.transactor),
        data=setup.work_dir / "data" / DATASET,
        script=code.write(setup.work_dir / "code"),
        seed=secrets.randbelow(2**31) if setup.seed is None else setup.seed,
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
            clean, test_size=0.25, random_state=story.seed, stratify=clean["target"]
        )
        run.log_dataset(story.data, role="train", subset=train.index, store=True)
        params = {"loss": "log_loss", "alpha": 1e-3, "max_iter": 1000, "random_state": story.seed}
        pipeline = Pipeline([("scale", StandardScaler()), ("clf", SGDClassifier(**params))])
        run.log_params(params, test_size=0.25, z=Z)
        run.log_seeds(split=story.seed, sgd=story.seed)
        X, y = _features(train)
        pipeline.fit(X, y)
        X_test, y_test = _features(test)
        accuracy = float(pipeline.score(X_test, y_test))
        run.log_metrics(test_accuracy=accuracy)
        run.log_model(pipeline)
        story.test_rows = X_test[:SERVED_ROWS].tolist()
        image = _image_inside_run(story, run, ALPHA)
    assert run.signed is not None and run.registered is not None
    model = Model(ALPHA, run.signed, folder, pipeline, image, run.registered.id)
    cert = model.certificate
    (dataset,) = cert.data.datasets
    assert isinstance(dataset.manifest, TableManifest)
    narrator.done(
        f"{len(cert.preprocessing)} preprocessing steps captured; trained on {dataset.manifest.rows} "
        f"of {len(raw)} rows (subset root {dataset.manifest.root[:23]}…, seed {story.seed}); "
        f"test accuracy {accuracy:.3f}"
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
        clinic = clean.sample(
            n=BETA_ROWS, random_state=story.seed + 1
        )  # "the second hospital's rows"
        run.log_dataset(story.data, role="fine-tune", subset=clinic.index, store=True)
        pipeline = copy.deepcopy(alpha.pipeline)
        epochs = 5
        run.log_params(epochs=epochs, method="partial_fit of Alpha's SGDClassifier")
        run.log_seeds(sample=story.seed + 1)
        X, y = _features(clinic)
        scaled = pipeline.named_steps["scale"].transform(X)
        for _ in range(epochs):
            pipeline.named_steps["clf"].partial_fit(scaled, y)
        run.log_metrics(train_accuracy=float(pipeline.score(X, y)))
        run.log_model(pipeline)
        image = _image_inside_run(story, run, BETA)
    assert run.signed is not None and run.registered is not None
    model = Model(BETA, run.signed, folder, pipeline, image, run.registered.id)
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
                registrants=[str(setup.alice.address)],
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


def _own_check(name: str, subject: str, detail: str, action: Callable[[], object]) -> Check:
    """A check of the demo's own (not one :mod:`provenance.verify` makes), as a report line."""
    try:
        action()
    except ProvenanceError as exc:
        return Check(name, CheckStatus.FAIL, str(exc), subject, error=type(exc))
    return Check(name, CheckStatus.PASS, detail, subject)


def _rerun(story: Story, cert: Certificate) -> None:
    recorded = cert.preprocessing
    checks.verify_step_code(recorded, checks.rerun_steps(story.script, story.data, recorded))


def verify_all(story: Story) -> list[dict[str, Any]]:
    """Stage 5: an auditor checks everything that was published, from IPFS and the chain, with
    :mod:`provenance.verify` (as ``provenance verify`` does): each model by its id with its
    signed certificate, Alice as the one trusted registrant and the training data fetched from
    IPFS; its model file fetched from IPFS; its image; an output receipt. The demo adds what
    verification does not do: re-running the preprocessing, and matching the answers the client
    got with their receipts. Each report is told line by line; a report that is not ok raises
    its first failure's error. The reports as JSON."""
    setup, narrator = story.setup, story.narrator
    audit = story.work / "audit"
    audit.mkdir()
    common = story.verifying()
    reports: list[Report] = []

    def tell(title: str, report: Report, *, brief: str | None = None) -> None:
        tell_report(narrator, title, report, brief=brief)
        reports.append(report)
        report.raise_for_failure()

    for model in story.models():
        cert = model.certificate
        sources: dict[str, Path] = {}
        for dataset in cert.data.datasets:
            if dataset.url is not None and dataset.url.startswith("ipfs://"):
                sources[dataset.name] = audit / f"{model.folder.name}-{dataset.name}"
                setup.storage.get_path(dataset.url.removeprefix("ipfs://"), sources[dataset.name])
        report = report_for_model(model.id, envelope=model.signed, data_sources=sources, **common)
        rerun = _own_check(
            "preprocessing",
            report.checks[0].subject,
            f"{len(cert.preprocessing)} captured step(s) re-run from {story.script.name} on the "
            "data: code and output digests are the certificate's",
            functools.partial(_rerun, story, cert),
        )
        tell(f"{model.name} {model.id_hex}", replace(report, checks=(*report.checks, rerun)))
        assert cert.model.url is not None
        model_file = audit / f"{model.folder.name}-model" / "model.pkl"
        model_file.parent.mkdir()
        setup.storage.get_path(cert.model.url.removeprefix("ipfs://"), model_file)
        tell(
            f"{model.name}'s model file from IPFS",
            report_for_target(str(model_file), data_sources=sources, **common),
            brief=model.name,
        )
        if model.image is not None:
            with story.engine() as engine:
                image = report_for_target(
                    model.image.image_id, engine=engine, data_sources=sources, **common
                )
            tell(f"{model.name}'s image", image, brief=model.name)
    if story.served is not None:
        outputs = story.served.outputs
        first = story.work / "receipts" / f"{outputs[0][2].record.sequence}.receipt.json"
        report = report_for_target(str(first), attestor=story.attestor, **common)

        def answers() -> None:
            for x, y, receipt in outputs:
                verify_receipt_offline(receipt, input_data=x, output_data=y)

        matched = _own_check(
            "outputs",
            report.checks[0].subject,
            f"the input and output bytes of the {len(outputs)} answers the client got hash to "
            "their receipts' digests",
            answers,
        )
        tell(
            f"output receipt {first.name}",
            replace(report, checks=(*report.checks, matched)),
            brief=BETA,
        )
    return [r.to_json() for r in reports]


def respond(story: Story) -> dict[str, Any]:
    """After the attacks: Bob, downstream, had already quantized Mallory's impostor (believing
    it Alice's); the auditor, given AUDITOR_ROLE by the registry's admin, revokes the impostor.
    The chain now reports it revoked and Bob's model tainted; ``impact`` lists who is affected."""
    from provenance.chain.index import LineageIndex
    from provenance.chain.types import Status
    from provenance.lineage import impact

    setup = story.setup
    impostor = story.impostor
    if impostor is None:
        raise ConfigError("the impersonation attack did not run: nothing to respond to")
    _, beta = story.models()

    quantized = copy.deepcopy(beta.pipeline)
    clf = quantized.named_steps["clf"]
    clf.coef_ = clf.coef_.astype("float16").astype("float64")  # what a quantization keeps
    folder = story.work / "runs" / "bob"
    with track(
        "Beta v2, quantized",
        parents=[(impostor, "quantization", "Model Beta v2")],
        output_dir=folder,
        environment=False,
        source_dir=folder,
        storage=setup.storage,
        registry=setup.registry_as(setup.bob),
        signer=setup.bob,
    ) as run:
        run.log_model(quantized)
    if run.registered is None:  # pragma: no cover - track registers when given a registry
        raise ConfigError("Bob's model was not registered")
    downstream = run.registered.id
    story.names[downstream] = "Beta v2, quantized (by Bob)"
    story.narrator.done(
        f"Bob had quantized 'Model Beta v2' and registered it as 0x{downstream.hex()[:16]}…"
    )
    auditor = setup.registry_as(setup.auditor)
    if not auditor.has_role("auditor", setup.auditor.address):
        auditor.grant_role("auditor", setup.auditor.address)
    # as `provenance revoke --reason TEXT` does: the reason's sha-256 goes on chain
    reason = hashlib.sha256(
        f"impersonation: 0x{impostor.hex()} names Alice, signed by Mallory".encode()
    ).digest()
    auditor.revoke(impostor, reason)
    story.narrator.done(
        f"the auditor {setup.auditor.address} revoked the impostor 0x{impostor.hex()[:16]}… "
        f"(reason digest 0x{reason.hex()[:16]}…)"
    )
    with LineageIndex(story.work / "lineage.sqlite") as index:
        index.sync(story.alice_registry)
        affected = impact(index, impostor)
        tainted = index.is_tainted(downstream)
        status = index.get(impostor)
    if status is None or status.status is not Status.REVOKED or not tainted:
        raise ConfigError("the chain does not report the impostor revoked and its child tainted")
    for a in affected:
        story.narrator.done(
            f"impact: 0x{a.id.hex()[:16]}… ({story.names.get(a.id, '?')}) is "
            f"{a.status}, reached by {' -> '.join(e.relation for e in a.path)}"
        )
    return {
        "revoked": "0x" + impostor.hex(),
        "tainted": ["0x" + a.id.hex() for a in affected if a.status == "tainted"],
    }


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
