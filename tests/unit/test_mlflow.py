"""MLflow both ways, against a real local MLflow tracking store (SQLite backend, artifacts in a
temporary folder, no server): a run with params, metrics, a dataset input and a logged
scikit-learn model becomes a certificate; a certificate is logged to a run, and MLflow's own
client finds the tags and artifacts."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account

from provenance.capture.mlflow import certificate_from_run
from provenance.certificate import (
    SignedCertificate,
    load_certificate,
    sign_certificate,
    timestamp,
    verify_certificate_signature,
)
from provenance.errors import ConfigError
from provenance.export import Subject
from provenance.export.mlflow import MISSING, MlflowError, log_certificate, mlflow_client
from provenance.manifest import manifest_of, open_table
from tests.unit.cli_in_process import Main, in_process_main

mlflow = pytest.importorskip("mlflow")


@dataclass(frozen=True)
class Store:
    uri: str
    run_id: str
    csv: Path
    folder: Path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One MLflow run: params, a metric, the iris CSV as a dataset input, a logged model."""
    import datetime as dt

    import pandas as pd
    from mlflow import sklearn as mlflow_sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    csv = folder / "iris.csv"
    load_iris(as_frame=True).frame.to_csv(csv, index=False)
    frame = pd.read_csv(csv)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment(
            "iris", artifact_location=(folder / "artifacts").as_uri()
        )
        with mlflow.start_run(experiment_id=experiment, run_name="iris-logreg") as run:
            mlflow.log_params({"C": 0.5, "max_iter": 300})
            dataset = mlflow.data.from_pandas(frame, source=str(csv), name="iris", targets="target")
            mlflow.log_input(dataset, context="training")
            X, y = frame.drop(columns="target"), frame["target"]
            model = LogisticRegression(C=0.5, max_iter=300).fit(X, y)
            mlflow.log_metric("accuracy", float(model.score(X, y)))
            mlflow_sklearn.log_model(model, name="model", serialization_format="pickle")
    finally:
        mlflow.set_tracking_uri(previous)
    assert dt.datetime.now(dt.UTC)  # the run has ended
    yield Store(uri, run.info.run_id, csv, folder)


@pytest.fixture
def main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Main:
    """``provenance.cli.main`` in this process: same parsing, errors and exit codes."""
    return in_process_main(monkeypatch, capsys, cleared=("PROVENANCE_", "MLFLOW_"))


def test_a_run_becomes_a_certificate_with_our_commitments(store: Store, tmp_path: Path) -> None:
    client = mlflow.MlflowClient(tracking_uri=store.uri)
    run = client.get_run(store.run_id)
    imported = certificate_from_run(store.run_id, model_dir=tmp_path / "model", client=client)
    body = imported.certificate

    assert body.model_name == "iris-logreg"
    assert body.training.parameters == {"C": "0.5", "max_iter": "300"}
    assert body.training.metrics == {"accuracy": run.data.metrics["accuracy"]}
    assert body.training.started_at == timestamp(_utc(run.info.start_time))
    assert body.training.ended_at == timestamp(_utc(run.info.end_time))

    # the dataset input: OUR commitment, recomputed from the source file MLflow names
    (dataset,) = body.data.datasets
    assert (dataset.name, dataset.role) == ("iris", "train")
    assert dataset.commitment == open_table(store.csv).manifest().digest
    (mlflow_dataset,) = run.inputs.dataset_inputs
    note = body.payload["mlflow"]["datasets"][0]  # type: ignore[call-overload,index]
    assert note == {
        "name": "iris",
        "role": "train",
        "mlflow_digest": mlflow_dataset.dataset.digest,
        "source_type": "local",
    }
    assert len(mlflow_dataset.dataset.digest) == 8  # MLflow's digest: a note, not a commitment

    # the model digest is the manifest of the logged model's files as MLflow itself serves them
    (output,) = run.outputs.model_outputs
    assert imported.mlflow_model_id == output.model_id
    served = mlflow.artifacts.download_artifacts(
        artifact_uri=client.get_logged_model(output.model_id).artifact_location,
        dst_path=str(tmp_path / "served"),
    )
    assert (
        body.model.digest == manifest_of(Path(served)).root == manifest_of(tmp_path / "model").root
    )
    assert {f.path for f in body.model.manifest.files} >= {"MLmodel", "model.pkl"}
    assert body.model.format == "mlflow-model"
    assert body.model.framework is not None and body.model.framework.name == "scikit-learn"
    assert body.warnings == (
        f"imported from MLflow run {store.run_id}: the environment and the preprocessing steps "
        "were not captured; parameters are MLflow's strings",
    )


def test_mlflow_import_signs_like_run(
    store: Store, tmp_path: Path, main: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    account = Account.create()
    keystore = tmp_path / "key.json"
    keystore.write_text(json.dumps(Account.encrypt(account.key, "pw")))
    (tmp_path / "pw").write_text("pw")
    out = tmp_path / "beta" / "certificate.json"
    done = main(
        "mlflow", "import", store.run_id, "--tracking-uri", store.uri, "-o", str(out),
        "--keystore", str(keystore), "--password-file", str(tmp_path / "pw"), "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    signed = load_certificate(out)
    assert isinstance(signed, SignedCertificate)
    verify_certificate_signature(signed)
    assert signed.certificate.creator == account.address
    summary = json.loads(done.stdout)
    assert summary["model_id"] == "0x" + signed.certificate.model_id.hex()
    assert summary["model_digest"] == manifest_of(tmp_path / "beta" / "model").root
    assert summary["datasets"] == ["iris"]

    again = main("mlflow", "import", store.run_id, "--tracking-uri", store.uri, "-o", str(out), cwd=tmp_path)  # fmt: skip
    assert again.returncode == 1
    assert again.stderr.strip() == (
        f"error: {out} exists: pass -o FILE for another, or --force to replace it"
    )


def test_a_dataset_not_at_hand_is_refused_and_can_be_given(store: Store, tmp_path: Path) -> None:
    client = mlflow.MlflowClient(tracking_uri=store.uri)
    moved = tmp_path / "elsewhere.csv"
    store.csv.rename(moved)
    try:
        with pytest.raises(ConfigError) as info:
            certificate_from_run(store.run_id, model_dir=tmp_path / "m1", client=client)
        assert str(info.value) == (
            f'MLflow dataset \'iris\' (source local: {{"uri": "{store.csv}"}}) is not at '
            "hand, so no commitment can be made for it: give its file with --data iris=PATH"
        )
        imported = certificate_from_run(
            store.run_id, model_dir=tmp_path / "m2", client=client, data={"iris": moved}
        )
        assert imported.certificate.data.datasets[0].commitment == (
            open_table(moved).manifest().digest
        )
        assert len(imported.certificate.warnings) == 1  # the same rows: MLflow's digest agrees
        other = tmp_path / "other.csv"
        other.write_text(moved.read_text().replace("5.1,3.5", "5.2,3.5", 1))
        swapped = certificate_from_run(
            store.run_id, model_dir=tmp_path / "m4", client=client, data={"iris": other}
        )
        (_, warning) = swapped.certificate.warnings
        digest = client.get_run(store.run_id).inputs.dataset_inputs[0].dataset.digest
        assert warning.startswith(
            "MLflow dataset 'iris': other.csv read with pandas gives MLflow digest "
        )
        assert warning.endswith(
            f", the run logged {digest}: check that it is the data the run used"
        )
        with pytest.raises(ConfigError) as info:
            certificate_from_run(
                store.run_id, model_dir=tmp_path / "m3", client=client, data={"wine": moved}
            )
        assert str(info.value) == (
            f"MLflow run {store.run_id} has no dataset input named 'wine'; its datasets: iris"
        )
    finally:
        moved.rename(store.csv)


def test_mlflow_log_puts_tags_and_artifacts_on_the_run(
    store: Store, tmp_path: Path, main: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    creator = Account.create()
    imported = certificate_from_run(
        store.run_id, model_dir=tmp_path / "model", tracking_uri=store.uri,
        creator=creator.address,
    )  # fmt: skip
    signed = sign_certificate(imported.certificate, creator)
    cert = tmp_path / "certificate.json"
    from provenance.certificate import to_json

    cert.write_text(to_json(signed))
    done = main("mlflow", "log", str(cert), "--run-id", store.run_id, "--tracking-uri", store.uri, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr

    client = mlflow.MlflowClient(tracking_uri=store.uri)
    tags = client.get_run(store.run_id).data.tags
    body = signed.certificate
    assert tags["provenance.model_id"] == "0x" + body.model_id.hex()
    assert tags["provenance.certificate_cid"] == body.cid
    assert tags["provenance.certificate_digest"] == body.digest_text
    assert tags["provenance.verify"] == f"provenance verify 0x{body.model_id.hex()}"
    listed = {a.path for a in client.list_artifacts(store.run_id, "provenance")}
    assert listed == {"provenance/certificate.json", "provenance/certificate.signed.json"}
    got = Path(
        mlflow.artifacts.download_artifacts(
            run_id=store.run_id,
            artifact_path="provenance",
            dst_path=str(tmp_path / "got"),
            tracking_uri=store.uri,
        )
    )
    assert load_certificate(got / "certificate.json") == body
    assert load_certificate(got / "certificate.signed.json") == signed


def test_an_unknown_run_is_one_line(
    store: Store, tmp_path: Path, main: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    cert = tmp_path / "c.json"
    from provenance.certificate import to_json

    from .test_certificate import sample_certificate

    cert.write_text(to_json(sample_certificate(tmp_path)))
    done = main("mlflow", "log", str(cert), "--run-id", "0" * 32, "--tracking-uri", store.uri, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: MLflow run '{'0' * 32}': ")
    assert len(done.stderr.strip().splitlines()) == 1
    with pytest.raises(MlflowError):
        log_certificate(Subject.of(sample_certificate(tmp_path)), "0" * 32, tracking_uri=store.uri)


def test_a_model_logged_as_run_artifacts_by_its_path(store: Store, tmp_path: Path) -> None:
    client = mlflow.MlflowClient(tracking_uri=store.uri)
    experiment = client.get_run(store.run_id).info.experiment_id
    run = client.create_run(experiment, run_name="artifacts only")
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "model.bin").write_bytes(b"\x00\x01" * 100)
    (weights / "config.json").write_text('{"layers": 2}')
    client.log_param(run.info.run_id, "lr", 0.01)
    client.log_artifacts(run.info.run_id, str(weights), artifact_path="weights")
    client.set_terminated(run.info.run_id)

    with pytest.raises(ConfigError) as info:
        certificate_from_run(run.info.run_id, model_dir=tmp_path / "m1", client=client)
    assert str(info.value) == (
        f"MLflow run {run.info.run_id} logged no model: name the model's artifact path "
        "(--model-path PATH)"
    )
    imported = certificate_from_run(
        run.info.run_id, model_dir=tmp_path / "m2", client=client, model_path="weights"
    )
    body = imported.certificate
    assert body.model.digest == manifest_of(weights).root
    assert body.model.format == "files" and body.data.datasets == ()
    assert body.training.parameters == {"lr": "0.01"}
    assert body.model_name == "artifacts only"


def test_a_store_that_does_not_exist_is_not_made(
    tmp_path: Path, main: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    missing = tmp_path / "typo" / "mlflow.db"
    done = main("mlflow", "import", "0" * 32, "--tracking-uri", f"sqlite:///{missing}", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: MLflow tracking store sqlite:///{missing}: {missing} does not exist"
    )
    assert not missing.parent.exists()


def test_without_mlflow_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(ConfigError) as info:
        mlflow_client("sqlite:///x.db")
    assert str(info.value) == MISSING


def _utc(milliseconds: int):  # type: ignore[no-untyped-def]
    import datetime as dt

    return dt.datetime.fromtimestamp(milliseconds / 1000, dt.UTC)
