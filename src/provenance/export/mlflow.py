"""MLflow (the optional ``mlflow`` extra): a certificate logged to an MLflow run.

The certificate (and its signed envelope, when at hand) become artifacts of the run under
``provenance/``, and four tags say what it is and how to check it::

    provenance.model_id            0x<64 hex>  (the creator's id; absent when unknown)
    provenance.certificate_cid     the body's CIDv1 (one raw IPFS block)
    provenance.certificate_digest  sha256:<hex> of the body's canonical bytes
    provenance.verify              the command that verifies it

>>> logged = log_certificate(Subject.of(load_certificate(path)), run_id)   # doctest: +SKIP

The tracking store is ``tracking_uri`` or MLflow's own default (its ``MLFLOW_TRACKING_URI``,
else ``./mlruns``); MLflow is imported only here, and a missing one is a one-line
:class:`~provenance.errors.ConfigError`. The other way, a certificate built from an MLflow run,
is :mod:`provenance.capture.mlflow`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provenance.certificate import to_json
from provenance.errors import ConfigError, ProvenanceError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from provenance.export.subject import Subject

ARTIFACT_PATH = "provenance"
"""Where in a run's artifacts the certificate goes."""
CERTIFICATE_FILE = "certificate.json"
ENVELOPE_FILE = "certificate.signed.json"

TAG_MODEL_ID = "provenance.model_id"
TAG_CID = "provenance.certificate_cid"
TAG_DIGEST = "provenance.certificate_digest"
TAG_VERIFY = "provenance.verify"

MISSING = "MLflow is not installed: install the 'mlflow' extra (provenance[mlflow])"


class MlflowError(ProvenanceError):
    """MLflow refused or failed: an unknown run, an unreachable or unreadable tracking store."""


def mlflow_client(tracking_uri: str | None = None) -> MlflowClient:
    """An ``MlflowClient`` of ``tracking_uri`` (else MLflow's default); ConfigError when MLflow
    is not installed."""
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise ConfigError(MISSING) from None
    if tracking_uri is not None and tracking_uri.startswith("sqlite:///"):
        database = tracking_uri.removeprefix("sqlite:///").partition("?")[0]
        if database not in ("", ":memory:") and not Path(database).is_file():
            # MLflow would make an empty store there; the runs asked for are in an existing one
            raise MlflowError(f"MLflow tracking store {tracking_uri}: {database} does not exist")
    try:
        return MlflowClient(tracking_uri=tracking_uri)
    except mlflow_errors() as exc:
        raise MlflowError(f"cannot open the MLflow tracking store {tracking_uri!r}: {exc}") from exc


def mlflow_errors() -> tuple[type[Exception], ...]:
    """What MLflow raises for a store or a request it cannot serve (``except`` these)."""
    from mlflow.exceptions import MlflowException

    return (MlflowException, OSError)


def mlflow_failure(what: str, exc: Exception) -> MlflowError:
    """An MLflow exception as one line (its message, without MLflow's error-code prefix)."""
    message = getattr(exc, "message", None) or str(exc)
    lines = str(message).strip().splitlines()
    return MlflowError(f"{what}: {lines[0] if lines else type(exc).__name__}")


def verify_command(subject: Subject) -> str:
    """How to verify the certificate: by its model id when it has one, else its file."""
    if subject.model_id_hex is not None:
        return f"provenance verify {subject.model_id_hex}"
    return f"provenance certificate verify {CERTIFICATE_FILE}"


def certificate_tags(subject: Subject) -> dict[str, str]:
    """The tags :func:`log_certificate` sets."""
    tags = {
        TAG_CID: subject.cid,
        TAG_DIGEST: subject.certificate.digest_text,
        TAG_VERIFY: verify_command(subject),
    }
    if subject.model_id_hex is not None:
        tags[TAG_MODEL_ID] = subject.model_id_hex
    return tags


@dataclass(frozen=True)
class Logged:
    """What :func:`log_certificate` put on the run: tags, and artifact paths in the run."""

    run_id: str
    tags: dict[str, str]
    artifacts: tuple[str, ...]


def log_certificate(
    subject: Subject,
    run_id: str,
    *,
    tracking_uri: str | None = None,
    client: MlflowClient | None = None,
) -> Logged:
    """Log ``subject``'s certificate to MLflow run ``run_id``: the body (and the signed
    envelope) as artifacts under ``provenance/``, and the tags of :func:`certificate_tags`."""
    client = client or mlflow_client(tracking_uri)
    try:
        client.get_run(run_id)
    except mlflow_errors() as exc:
        raise mlflow_failure(f"MLflow run {run_id!r}", exc) from exc
    files = {CERTIFICATE_FILE: to_json(subject.certificate)}
    if subject.envelope is not None:
        files[ENVELOPE_FILE] = to_json(subject.envelope)
    tags = certificate_tags(subject)
    try:
        with tempfile.TemporaryDirectory(prefix="provenance-mlflow-") as scratch:
            for name, text in files.items():
                path = Path(scratch) / name
                path.write_text(text, encoding="utf-8")
                client.log_artifact(run_id, str(path), artifact_path=ARTIFACT_PATH)
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
    except mlflow_errors() as exc:
        raise mlflow_failure(f"logging to MLflow run {run_id!r}", exc) from exc
    return Logged(run_id, tags, tuple(f"{ARTIFACT_PATH}/{name}" for name in files))


__all__ = [
    "ARTIFACT_PATH",
    "CERTIFICATE_FILE",
    "ENVELOPE_FILE",
    "TAG_CID",
    "TAG_DIGEST",
    "TAG_MODEL_ID",
    "TAG_VERIFY",
    "Logged",
    "MlflowError",
    "certificate_tags",
    "log_certificate",
    "mlflow_client",
    "mlflow_errors",
    "mlflow_failure",
    "verify_command",
]
