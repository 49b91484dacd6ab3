"""SPDX 3.0.1 export: every document is read back and re-written by spdx-python-model, the
SPDX project's bindings generated from the 3.0.1 model (types, enumerations, required
properties, unknown properties, references that must resolve)."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import spdx_python_model
from eth_account import Account
from typer.testing import CliRunner

from provenance.certificate import ParentLink, Source, TrainingData, sign_certificate
from provenance.cli import app
from provenance.export import FORMATS, Subject, export
from provenance.manifest import dataset_record, open_table

from .test_certificate import sample_certificate

SPDX = "https://spdx.org/rdf/3.0.1/terms/"
MERGED = "0x" + "cd" * 32


def validated(document: bytes) -> tuple[Any, Any]:
    """The SPDX library's model and objects for ``document``; raises unless the library reads
    it, every reference resolves, and writing the objects again gives the same document."""
    data = json.loads(document)
    model, objects = spdx_python_model.load_data(data)
    assert objects.link() == set()  # no reference to an element the document lacks
    assert model.JSONLDSerializer().serialize_data(objects) == data  # required props present
    return model, objects


def one(objects: Any, kind: str, **where: Any) -> Any:
    found = [
        o for o in objects.foreach_type(kind) if all(getattr(o, k) == v for k, v in where.items())
    ]
    assert len(found) == 1, (kind, where, found)
    return found[0]


def relationships(objects: Any, kind: str) -> list[Any]:
    iri = f"{SPDX}Core/RelationshipType/{kind}"
    return [r for r in objects.foreach_type("Relationship") if r.relationshipType == iri]


def rich_subject(tmp_path: Path) -> Subject:
    """A signed certificate with a parent of each kind we map, a confidential dataset and a
    dataset of a role SPDX has no relationship for."""
    creator = Account.create()
    secret, _ = dataset_record(
        "patients",
        open_table(pd.DataFrame({"x": [1, 2, 3]})).manifest(),
        confidential=True,
        salt=b"\x07" * 32,
    )
    calib, _ = dataset_record(
        "calibration", open_table(pd.DataFrame({"y": [0.5]})).manifest(), role="calibration"
    )
    base = sample_certificate(tmp_path)
    body = sample_certificate(
        tmp_path,
        creator=creator.address,
        parents=(*base.parents, ParentLink(id=MERGED, relation="merge")),
        data=TrainingData.of((*base.data.datasets, secret, calib), url=base.data.url),
        source=Source(commit="c" * 40, dirty=True, remote="https://git.example/team/beta.git"),
    )
    return Subject.of(
        sign_certificate(body, creator),
        chain_id=31337,
        registry="0x5FbDB2315678afecb367f032d93F642f64180aa3",
    )


def test_the_spdx_document_is_read_back_by_the_spdx_model(tmp_path: Path) -> None:
    subject = rich_subject(tmp_path)
    cert = subject.certificate
    _, objects = validated(export(subject, "spdx"))

    doc = one(objects, "SpdxDocument")
    assert doc.creationInfo.specVersion == "3.0.1"
    assert {p.rsplit("/", 1)[1] for p in doc.profileConformance} == {
        "core",
        "software",
        "ai",
        "dataset",
    }
    package = one(objects, "ai_AIPackage", name="Model Beta")
    assert list(doc.rootElement) == [package]
    assert set(doc.element) == {o for o in objects.foreach_type("Element")} - {doc}
    assert package.software_primaryPurpose == f"{SPDX}Software/SoftwarePurpose/model"
    assert [(h.algorithm.rsplit("/", 1)[1], h.hashValue) for h in package.verifiedUsing] == [
        ("other", cert.model.digest.split(":")[1])
    ]
    assert {i.identifier for i in package.externalIdentifier} == {
        f"ipfs://{subject.cid}",
        subject.model_id_hex,
    }
    assert [a.name for a in package.originatedBy] == [f"Ethereum {cert.creator}"]
    assert {(e.key, e.value) for e in package.ai_hyperparameter} == {
        ("C", "0.5"),
        ("layers", "[64,32]"),
        ("seed:numpy", "0"),
    }
    assert [(e.key, e.value) for e in package.ai_metric] == [("accuracy", "0.97")]
    assert package.ai_informationAboutTraining.splitlines()[0] == (
        "command: python train.py --epochs 3"
    )
    assert f"source: {'c' * 40} (dirty)" in package.ai_informationAboutTraining
    (vcs,) = package.externalRef
    assert vcs.externalRefType.endswith("/ExternalRefType/vcs")
    assert list(vcs.locator) == [f"git+https://git.example/team/beta.git@{'c' * 40}"]
    assert json.loads(package.ai_modelDataPreprocessing[0])["name"] == "prep:drop_outliers"

    # the model's files, each by its sha-256, contained in the package
    (contains,) = relationships(objects, "contains")
    assert contains.from_ is package
    assert sorted((f.name, f.verifiedUsing[0].hashValue) for f in contains.to) == sorted(
        (e.path, e.digest.split(":")[1]) for e in cert.model.manifest.files
    )

    # datasets: commitments as hashes; roles as trainedOn / testedOn / other
    commitments = {
        d.name: d.verifiedUsing[0].hashValue for d in objects.foreach_type("dataset_DatasetPackage")
    }
    assert commitments == {d.name: d.commitment.split(":")[1] for d in cert.data.datasets}
    (trained,) = relationships(objects, "trainedOn")
    assert trained.from_ is package and {d.name for d in trained.to} == {"train.csv", "patients"}
    (tested,) = relationships(objects, "testedOn")
    assert [d.name for d in tested.to] == ["holdout"]
    (other,) = relationships(objects, "other")
    assert [d.name for d in other.to] == ["calibration"]
    assert other.comment == "role: calibration (neither training nor test)"
    patients = one(objects, "dataset_DatasetPackage", name="patients")
    assert patients.dataset_confidentialityLevel.endswith("/ConfidentialityLevelType/red")
    assert patients.comment == "confidential: only a salted commitment is published"

    # parents: descendantOf from the model, our relation in the comment
    ancestry = {(r.to[0].name, r.comment) for r in relationships(objects, "descendantOf")}
    assert ancestry == {("Model Alpha", "relation: fine-tune"), (MERGED, "relation: merge")}
    assert all(r.from_ is package for r in relationships(objects, "descendantOf"))


def test_the_spdx_document_of_a_tracked_model(tmp_path: Path) -> None:
    """A real certificate from provenance.track (the README's capture): estimator type,
    parameters, steps and files come through, and the SPDX model reads it."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import provenance

    frame = load_iris(as_frame=True).frame
    frame.to_csv(tmp_path / "iris.csv", index=False)
    with provenance.track("Iris", output_dir=tmp_path / "run", signer=Account.create()) as run:
        run.log_dataset(tmp_path / "iris.csv", role="train")
        model = LogisticRegression(C=0.5).fit(frame.drop(columns="target"), frame["target"])
        run.log_params(C=0.5)
        run.log_metrics(accuracy=float(model.score(frame.drop(columns="target"), frame["target"])))
        run.log_model(model)
    subject = Subject.of(run.signed)
    _, objects = validated(export(subject, "spdx"))
    package = one(objects, "ai_AIPackage", name="Iris")
    assert list(package.ai_typeOfModel) == ["sklearn.linear_model._logistic.LogisticRegression"]
    assert [(e.key, e.value) for e in package.ai_hyperparameter] == [("C", "0.5")]
    (trained,) = relationships(objects, "trainedOn")
    assert [d.name for d in trained.to] == ["iris.csv"]


def test_the_library_rejects_what_the_model_forbids(tmp_path: Path) -> None:
    """The validation above is the library's: a document missing a required property, or
    naming a relationship type SPDX does not have, is refused."""
    data = json.loads(export(Subject.of(sample_certificate(tmp_path)), "spdx"))
    at = next(i for i, o in enumerate(data["@graph"]) if o.get("relationshipType") == "trainedOn")
    broken = copy.deepcopy(data)
    broken["@graph"][at].pop("to")
    with pytest.raises(ValueError, match=r"Property 'to' in Relationship \(\d+\) is required"):
        validated(json.dumps(broken).encode())
    misnamed = copy.deepcopy(data)
    misnamed["@graph"][at]["relationshipType"] = "trainedBy"
    with pytest.raises(ValueError, match="'trainedBy' is not a valid value"):
        validated(json.dumps(misnamed).encode())


def test_equal_certificates_give_equal_documents(tmp_path: Path) -> None:
    first = export(Subject.of(sample_certificate(tmp_path)), "spdx")
    again = export(Subject.of(sample_certificate(Path(tempfile.mkdtemp()))), "spdx")
    assert first == again and first.endswith(b"}\n")


def test_provenance_export_writes_spdx(tmp_path: Path) -> None:
    certificate = tmp_path / "certificate.json"
    certificate.write_text(sample_certificate(tmp_path).model_dump_json())
    runner = CliRunner()
    help_text = runner.invoke(app, ["export", "--help"], terminal_width=120).output
    assert "spdx" in help_text and FORMATS["spdx"][0] == "spdx"
    out = tmp_path / "model.spdx.json"
    result = runner.invoke(app, ["export", str(certificate), "--format", "spdx", "-o", str(out)])
    assert result.exit_code == 0, result.output
    validated(out.read_bytes())
