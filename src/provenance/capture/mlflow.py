"""A birth certificate built from an MLflow run (the optional ``mlflow`` extra).

What maps to what:

- the run's params -> ``training.parameters`` (as MLflow keeps them: strings);
- its metrics -> ``training.metrics`` (the latest value of each);
- its dataset inputs -> ``data.datasets`` with OUR commitments, recomputed from the dataset's
  source files: a path given by name (``data={"iris": Path("iris.csv")}``), else the local
  file MLflow names as the source. MLflow's own dataset digest (8 hex digits of a hash of a
  sample of the rows) commits to nothing; it is kept only as a note in ``payload``;
- the logged model's files (MLflow 3's logged model of the run, or ``model_path`` among the
  run's artifacts) -> the model manifest: downloaded from the store into ``model_dir`` and
  hashed there;
- start and end times, the run's source file (entry point) and git commit.

Nothing else of the run's machine is known here: the environment and the preprocessing steps
are not captured, and the certificate says so in its warnings::

    imported = certificate_from_run(run_id, model_dir=Path("beta/model"))
    done = publish(imported.certificate, signer=account, path=Path("beta/certificate.json"))
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provenance.capture.tracker import ParentSpec, parse_parent
from provenance.certificate import (
    Certificate,
    EntryPoint,
    Framework,
    ModelArtifact,
    Source,
    Training,
    TrainingData,
    timestamp,
)
from provenance.errors import CertificateError, ConfigError
from provenance.export.mlflow import mlflow_client, mlflow_errors, mlflow_failure
from provenance.manifest import DatasetRecord, dataset_record, manifest_of, open_table

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import DatasetInput, Run

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
ROLES = {
    "training": "train",
    "train": "train",
    "validation": "validation",
    "val": "validation",
    "eval": "test",
    "evaluation": "test",
    "testing": "test",
    "test": "test",
}
"""MLflow's dataset contexts (``mlflow.data.context``) -> our dataset roles (others kept)."""

NOT_CAPTURED = (
    "imported from MLflow run {run_id}: the environment and the preprocessing steps were not "
    "captured; parameters are MLflow's strings"
)


@dataclass(frozen=True)
class Imported:
    """A certificate (unsigned) built from an MLflow run, and where the model files are."""

    certificate: Certificate
    run_id: str
    model_dir: Path
    mlflow_model_id: str | None = None


def certificate_from_run(
    run_id: str,
    *,
    model_dir: Path,
    tracking_uri: str | None = None,
    client: MlflowClient | None = None,
    name: str | None = None,
    parents: Iterable[ParentSpec] = (),
    data: Mapping[str, Path] | None = None,
    model_path: str | None = None,
    creator: str | None = None,
) -> Imported:
    """The certificate body of MLflow run ``run_id`` (see the module doc). The model's files
    are downloaded into ``model_dir`` (which must not exist, or be empty) and hashed there;
    ``data`` gives dataset sources by the dataset's MLflow name. A dataset whose source is not
    at hand is an error (no commitment can be made for it)."""
    client = client or mlflow_client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except mlflow_errors() as exc:
        raise mlflow_failure(f"MLflow run {run_id!r}", exc) from exc
    given = dict(data or {})
    inputs = list(run.inputs.dataset_inputs) if run.inputs is not None else []
    known = {d.dataset.name for d in inputs}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(
            f"MLflow run {run_id} has no dataset input named {unknown[0]!r}; its datasets: "
            f"{', '.join(sorted(known)) or 'none'}"
        )
    datasets, notes, warnings = _datasets(inputs, given)
    model_id, model_uri = _model_location(client, run, model_path)
    _download(model_uri, model_dir, client.tracking_uri)
    manifest = manifest_of(model_dir)
    tags = run.data.tags
    certificate = Certificate(
        model_name=name or tags.get("mlflow.runName") or f"MLflow run {run_id}",
        created_at=timestamp(dt.datetime.now(dt.UTC)),
        creator=creator,
        parents=tuple(parse_parent(p) for p in parents),
        model=ModelArtifact(
            digest=manifest.root,
            manifest=manifest,
            format="mlflow-model" if (model_dir / "MLmodel").is_file() else "files",
            framework=_framework(model_dir),
        ),
        data=TrainingData.of(tuple(datasets)),
        training=Training(
            entry_point=EntryPoint(path=tags["mlflow.source.name"])
            if tags.get("mlflow.source.name")
            else None,
            parameters=dict(run.data.params),
            metrics=dict(run.data.metrics),
            started_at=_time(run.info.start_time),
            ended_at=_time(run.info.end_time),
        ),
        source=_source(tags),
        warnings=(NOT_CAPTURED.format(run_id=run_id), *warnings),
        payload={
            "mlflow": {
                "run_id": run_id,
                "experiment_id": run.info.experiment_id,
                **({"model_id": model_id} if model_id else {}),
                "datasets": notes,
            }
        },
    )
    certificate.canonical_bytes()  # the size check now
    return Imported(certificate, run_id, model_dir, model_id)


# -- datasets ---------------------------------------------------------------------------------


def _datasets(
    inputs: list[DatasetInput], given: Mapping[str, Path]
) -> tuple[list[DatasetRecord], list[dict[str, Any]], list[str]]:
    """Our records of the run's datasets, MLflow's notes on them, and warnings: a table whose
    file does not reproduce MLflow's digest may not be the data the run logged."""
    records: list[DatasetRecord] = []
    notes: list[dict[str, Any]] = []
    warnings: list[str] = []
    for item in inputs:
        dataset = item.dataset
        context = next((t.value for t in item.tags if t.key == "mlflow.data.context"), None)
        role = ROLES.get((context or "training").lower(), context or "train")
        path = given.get(dataset.name) or _local_source(dataset.source_type, dataset.source)
        if path is None:
            raise ConfigError(
                f"MLflow dataset {dataset.name!r} (source {dataset.source_type}: "
                f"{dataset.source}) is not at hand, so no commitment can be made for it: give "
                f"its file with --data {dataset.name}=PATH"
            )
        if not path.exists():
            raise ConfigError(f"MLflow dataset {dataset.name!r}: {path} does not exist")
        tabular = path.is_file() and path.suffix.lower() in TABLE_SUFFIXES
        manifest = open_table(path).manifest() if tabular else manifest_of(path)
        if any(r.name == dataset.name and r.role == role for r in records):
            raise CertificateError(f"MLflow dataset {dataset.name!r} ({role}) is logged twice")
        record, _ = dataset_record(dataset.name, manifest, role=role)
        records.append(record)
        again = _pandas_digest(path) if tabular else None
        if again is not None and again != dataset.digest:
            warnings.append(
                f"MLflow dataset {dataset.name!r}: {path.name} read with pandas gives MLflow "
                f"digest {again}, the run logged {dataset.digest}: check that it is the data "
                "the run used"
            )
        notes.append(
            {
                "name": dataset.name,
                "role": role,
                "mlflow_digest": dataset.digest,
                "source_type": dataset.source_type,
            }
        )
    return records, notes, warnings


def _pandas_digest(path: Path) -> str | None:
    """MLflow's digest of the table at ``path`` read with pandas' defaults (None: unreadable)."""
    import pandas as pd
    from mlflow.data.digest_utils import compute_pandas_digest

    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
        return str(compute_pandas_digest(frame))
    except (ValueError, OSError, ImportError):
        return None


def _local_source(source_type: str, source: str) -> Path | None:
    """The local file an MLflow dataset source names (``{"uri": "/path"}`` or a file URI)."""
    if source_type != "local":
        return None
    try:
        uri = json.loads(source).get("uri")
    except (ValueError, AttributeError):
        return None
    if not isinstance(uri, str):
        return None
    if uri.startswith("file://"):
        uri = uri.removeprefix("file://")
    path = Path(uri)
    return path if path.is_absolute() and path.exists() else None


# -- the model --------------------------------------------------------------------------------


def _model_location(
    client: MlflowClient, run: Run, model_path: str | None
) -> tuple[str | None, str]:
    """(MLflow's logged-model id or None, the artifact URI to download)."""
    run_id = run.info.run_id
    if model_path is not None:
        return None, f"{run.info.artifact_uri.rstrip('/')}/{model_path.strip('/')}"
    outputs = run.outputs.model_outputs if run.outputs is not None else []
    ids = list(dict.fromkeys(o.model_id for o in outputs))
    if not ids:
        raise ConfigError(
            f"MLflow run {run_id} logged no model: name the model's artifact path "
            "(--model-path PATH)"
        )
    if len(ids) > 1:
        raise ConfigError(
            f"MLflow run {run_id} logged {len(ids)} models ({', '.join(ids)}): name one's "
            "artifact path (--model-path PATH)"
        )
    try:
        logged = client.get_logged_model(ids[0])
    except mlflow_errors() as exc:
        raise mlflow_failure(f"MLflow logged model {ids[0]}", exc) from exc
    return ids[0], logged.artifact_location


def _download(artifact_uri: str, model_dir: Path, tracking_uri: str) -> None:
    """The files at ``artifact_uri`` into ``model_dir`` (a folder's contents, or one file)."""
    from mlflow.artifacts import download_artifacts

    if model_dir.exists() and any(model_dir.iterdir()):
        raise ConfigError(f"{model_dir} is not empty: the model's files are downloaded there")
    model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".mlflow-", dir=model_dir.parent) as scratch:
        try:
            local = Path(
                download_artifacts(
                    artifact_uri=artifact_uri, dst_path=scratch, tracking_uri=tracking_uri
                )
            )
        except mlflow_errors() as exc:
            raise mlflow_failure(f"downloading the model from {artifact_uri}", exc) from exc
        for child in list(local.iterdir()) if local.is_dir() else [local]:
            child.rename(model_dir / child.name)
    if not any(model_dir.iterdir()):
        raise ConfigError(f"the model at {artifact_uri} holds no files")


FRAMEWORKS = {"sklearn": "scikit-learn", "pytorch": "torch"}
"""MLflow flavour -> the framework name certificates use (others by the flavour's name)."""


def _framework(model_dir: Path) -> Framework | None:
    """The framework of an MLflow model: the first flavour of its MLmodel with a version."""
    mlmodel = model_dir / "MLmodel"
    if not mlmodel.is_file():
        return None
    import yaml

    try:
        flavors = (yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}).get("flavors")
    except (yaml.YAMLError, UnicodeDecodeError, AttributeError):
        return None
    for flavor, details in (flavors or {}).items() if isinstance(flavors, dict) else ():
        version = details.get(f"{flavor}_version") if isinstance(details, dict) else None
        if isinstance(version, str):
            return Framework(name=FRAMEWORKS.get(flavor, flavor), version=version)
    return None


# -- the rest ---------------------------------------------------------------------------------


def _time(milliseconds: int | None) -> str | None:
    if milliseconds is None:
        return None
    return timestamp(dt.datetime.fromtimestamp(milliseconds / 1000, dt.UTC))


def _source(tags: Mapping[str, str]) -> Source | None:
    commit = tags.get("mlflow.source.git.commit")
    if not commit or not re.fullmatch(r"[0-9a-f]{40,64}", commit):
        return None
    return Source(
        commit=commit,
        remote=tags.get("mlflow.source.git.repoURL"),
        branch=tags.get("mlflow.source.git.branch"),
    )


__all__ = ["ROLES", "Imported", "certificate_from_run"]
