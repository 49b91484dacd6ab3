"""``export --format cyclonedx``: a certificate as a CycloneDX 1.7 ML-BOM, validated by
cyclonedx-python-lib's own strict JSON-schema validator and read back by its deserializer."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from cyclonedx.model.bom import Bom
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from eth_account import Account

import provenance
from provenance.certificate import Certificate, SignedCertificate, TrainingData, to_json
from provenance.export import FORMATS, Subject, export
from provenance.manifest import DatasetRecord, dataset_record, manifest_of

from .test_certificate import sample_certificate

PARENT = "0x" + "ab" * 32
IMAGE = "sha256:" + "cd" * 32
REGISTRY = "0x" + "11" * 20
PROVENANCE = Path(sys.executable).parent / "provenance"


def validate(document: bytes) -> dict[str, Any]:
    """The document, after the library's strict validator for 1.7 accepted it."""
    error = JsonStrictValidator(SchemaVersion.V1_7).validate_str(document.decode())
    assert error is None, str(error)
    parsed: dict[str, Any] = json.loads(document)
    return parsed


def props(component: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component.get("properties", [])}


def drop_outliers(frame: pd.DataFrame, z: float = 3.0) -> pd.DataFrame:
    numeric = frame.drop(columns="target")
    return frame[((numeric - numeric.mean()).abs() <= z * numeric.std()).all(axis=1)]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> SignedCertificate:
    """A real certificate from track(): a captured step, a subset of a CSV, a parent, an image."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    work = tmp_path_factory.mktemp("tracked")
    load_iris(as_frame=True).frame.to_csv(work / "iris.csv", index=False)
    with provenance.track(
        "Model Beta",
        output_dir=work / "beta",
        signer=Account.create(),
        parents=[(PARENT, "distillation")],
        image_id=IMAGE,
    ) as run:
        clean = run.step(drop_outliers)(pd.read_csv(work / "iris.csv"), z=2.5)
        run.log_dataset(work / "iris.csv", role="train", subset=clean.index)
        model = LogisticRegression(C=0.5)
        run.log_params(C=0.5)
        model.fit(clean.drop(columns="target"), clean["target"])
        run.log_metrics(accuracy=float(model.score(clean.drop(columns="target"), clean["target"])))
        run.log_model(model)
    assert run.signed is not None
    return run.signed


def test_cyclonedx_is_listed() -> None:
    assert FORMATS["cyclonedx"][0] == "cyclonedx"


def test_a_tracked_certificate_is_a_valid_ml_bom(tracked: SignedCertificate) -> None:
    cert = tracked.certificate
    subject = Subject.of(tracked, chain_id=31337, registry=REGISTRY)
    bom = validate(export(subject, "cyclonedx", signing_key=None))
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.7"

    model = bom["metadata"]["component"]
    assert model["type"] == "machine-learning-model" and model["name"] == "Model Beta"
    assert model["bom-ref"] == f"model:{subject.model_id_hex}"
    assert props(model) | {
        "provenance:model-id": subject.model_id_hex,
        "provenance:certificate-cid": cert.cid,
        "provenance:certificate-digest": cert.digest_text,
        "provenance:model-digest": cert.model.digest,
        "provenance:data-commitment": cert.data.commitment,
        "provenance:chain-id": "31337",
        "provenance:registry": REGISTRY,
        "provenance:creator": cert.creator,
    } == props(model)
    (file,) = cert.model.manifest.files
    sha = file.digest.removeprefix("sha256:")
    assert model["hashes"] == [{"alg": "SHA-256", "content": sha}]
    assert model["components"][0]["name"] == "model.pkl"
    assert model["externalReferences"][0]["url"] == f"ipfs://{cert.cid}"

    # the typed parent
    (ancestor,) = model["pedigree"]["ancestors"]
    assert ancestor["type"] == "machine-learning-model"
    assert props(ancestor) == {"provenance:model-id": PARENT, "provenance:relation": "distillation"}
    assert model["pedigree"]["notes"] == f"Model Beta: distillation of model id {PARENT}"

    # the dataset: its commitment, the subset it was selected as, and the model card's reference
    (dataset,) = cert.data.datasets
    (data,) = bom["components"]
    assert data["type"] == "data" and data["name"] == "iris.csv"
    assert data["data"][0]["type"] == "dataset" and data["data"][0]["classification"] == "public"
    assert props(data)["provenance:commitment"] == dataset.commitment
    assert dataset.subset is not None
    assert props(data)["provenance:subset-of"] == dataset.subset.source.digest
    assert props(data)["provenance:rows"] == "148"
    card = model["modelCard"]
    assert card["modelParameters"]["datasets"] == [{"ref": data["bom-ref"]}]
    assert card["modelParameters"]["modelArchitecture"] == (
        "sklearn.linear_model._logistic.LogisticRegression"
    )
    accuracy = cert.training.metrics["accuracy"]
    assert card["quantitativeAnalysis"]["performanceMetrics"] == [
        {"type": "accuracy", "value": str(accuracy)}
    ]
    assert {"ref": model["bom-ref"], "dependsOn": [data["bom-ref"]]} in bom["dependencies"]

    # formulation: the captured step, then the training, by digest
    (formula,) = bom["formulation"]
    (workflow,) = formula["workflows"]
    step_task, training = workflow["tasks"]
    (step,) = cert.preprocessing
    assert step_task["name"] == step.name == f"{__name__}:drop_outliers"
    assert props(step_task)["provenance:source-digest"] == step.source_digest
    assert {"parameters": [{"name": "z", "value": "2.5"}]} in step_task["inputs"]
    step_input = step_task["inputs"][0]["resource"]["ref"]
    step_output = step_task["outputs"][0]["resource"]["ref"]
    assert step_input == f"value:{step.inputs[0].digest}"
    assert step_output == f"value:{step.outputs[0].digest}"
    transient = {c["bom-ref"]: c for c in formula["components"]}
    assert props(transient[step_output])["provenance:digest"] == step.outputs[0].digest
    assert training["timeStart"] == cert.training.started_at
    assert training["timeEnd"] == cert.training.ended_at
    inputs = [i["resource"]["ref"] for i in training["inputs"] if "resource" in i]
    assert inputs == [data["bom-ref"], f"image:{IMAGE}"]
    assert transient[f"image:{IMAGE}"]["type"] == "container"
    assert {"parameters": [{"name": "C", "value": "0.5"}]} in training["inputs"]
    assert training["outputs"][0] == {"type": "artifact", "resource": {"ref": model["bom-ref"]}}
    assert workflow["taskDependencies"] == [
        {"ref": "task:training", "dependsOn": [step_task["bom-ref"]]}
    ]
    assert cert.environment is not None
    packages = {c["name"]: c for c in transient.values() if c["type"] == "library"}
    assert len(packages) == len(cert.environment.packages)
    assert packages["pandas"]["purl"] == f"pkg:pypi/pandas@{pd.__version__}"


def test_the_library_reads_the_bom_back(tracked: SignedCertificate) -> None:
    bom = Bom.from_json(json.loads(export(Subject.of(tracked), "cyclonedx")))  # type: ignore[attr-defined]
    assert bom.metadata.component is not None
    assert bom.metadata.component.name == "Model Beta"
    assert [c.name for c in bom.components] == ["iris.csv"]
    assert bom.metadata.component.pedigree is not None
    assert len(bom.metadata.component.pedigree.ancestors) == 1


def test_the_same_certificate_gives_the_same_bytes(tracked: SignedCertificate) -> None:
    subject = Subject.of(tracked)
    assert export(subject, "cyclonedx") == export(subject, "cyclonedx")


def rich_datasets(tmp: Path) -> Certificate:
    """The sample certificate plus a confidential dataset and a published folder of files."""
    base = sample_certificate(tmp)
    folder = tmp / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"png a")
    (folder / "b.png").write_bytes(b"png b")
    images, _ = dataset_record("images", manifest_of(folder), url="ipfs://bafyimages")
    secret = DatasetRecord(
        name="clinic", commitment="sha256:" + "5e" * 32, confidential=True, role="train"
    )
    datasets = (*base.data.datasets, images, secret)
    return sample_certificate(tmp, data=TrainingData.of(datasets))


def test_confidential_and_file_datasets(tmp_path: Path) -> None:
    cert = rich_datasets(tmp_path)
    bom = validate(export(Subject.of(cert), "cyclonedx"))
    data = {c["name"]: c for c in bom["components"]}
    assert sorted(data) == ["clinic", "holdout", "images", "train.csv"]  # the library sorts
    clinic = data["clinic"]
    assert clinic["data"][0]["classification"] == "confidential"
    assert "url" not in clinic["data"][0]["contents"] and "externalReferences" not in clinic
    assert props(clinic) == {
        "provenance:commitment": "sha256:" + "5e" * 32,
        "provenance:confidential": "true",
        "provenance:role": "train",
    }
    images = data["images"]
    assert images["data"][0]["contents"]["url"] == "ipfs://bafyimages"
    assert [(f["name"], f["hashes"][0]["content"]) for f in images["components"]] == [
        ("a.png", hashlib.sha256(b"png a").hexdigest()),
        ("b.png", hashlib.sha256(b"png b").hexdigest()),
    ]
    assert props(data["holdout"])["provenance:role"] == "test"
    # the sample has no creator: no model id, so the model is named by its digest
    model = bom["metadata"]["component"]
    assert model["bom-ref"] == f"model:{cert.model.digest}"
    assert "provenance:model-id" not in props(model)
    assert model["pedigree"]["notes"] == f"Model Beta: fine-tune of Model Alpha (model id {PARENT})"
    assert len(model["components"]) == 2 and "hashes" not in model  # two files: no one hash
    training = bom["formulation"][0]["workflows"][0]["tasks"][-1]
    assert training["steps"] == [
        {"name": "command", "commands": [{"executed": "python train.py --epochs 3"}]}
    ]
    code = f"code:{cert.training.entry_point.digest}"  # type: ignore[union-attr]
    assert {"resource": {"ref": code}} in training["inputs"]


def test_the_validator_is_not_a_formality(tmp_path: Path) -> None:
    """What we add beside the library's model must hold to the schema: a wrong value fails."""
    bom = json.loads(export(Subject.of(sample_certificate(tmp_path)), "cyclonedx"))
    bom["metadata"]["component"]["modelCard"]["modelParameters"]["approach"] = {"type": "guess"}
    error = JsonStrictValidator(SchemaVersion.V1_7).validate_str(json.dumps(bom))
    assert error is not None and "'guess' is not one of" in str(error)


def test_the_command_writes_a_valid_bom(tmp_path: Path) -> None:
    cert_file = tmp_path / "certificate.json"
    cert_file.write_text(to_json(rich_datasets(tmp_path)))
    out = tmp_path / "bom.cdx.json"
    result = subprocess.run(
        [str(PROVENANCE), "export", str(cert_file), "--format", "cyclonedx", "-o", str(out)],
        cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"wrote {out} (cyclonedx)" in result.stdout + result.stderr
    validate(out.read_bytes())
    listed = subprocess.run(
        [str(PROVENANCE), "export", "--help"],
        env=dict(os.environ) | {"COLUMNS": "200"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "cyclonedx" in listed.stdout and "CycloneDX 1.7 ML-BOM" in listed.stdout
