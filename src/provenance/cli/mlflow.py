"""``provenance mlflow log|import``: certificates to and from MLflow runs (the ``mlflow`` extra).

The tracking store is ``--tracking-uri``, else MLflow's own (``MLFLOW_TRACKING_URI``, else
``./mlruns``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provenance.cli._common import (
    AsJson,
    IdOrCertificate,
    Parents,
    PasswordFile,
    err,
    out,
    say,
    shown,
)
from provenance.cli._common import session as _session
from provenance.errors import ConfigError

if TYPE_CHECKING:
    from mlflow import MlflowClient

app = typer.Typer(
    help="MLflow: log a certificate to a run, or build one from a run.", no_args_is_help=True
)

TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        metavar="URI",
        help="The MLflow tracking store (e.g. sqlite:///mlflow.db; else MLflow's default).",
    ),
]


@app.command("log")
def log_command(
    target: IdOrCertificate,
    run_id: Annotated[str, typer.Option("--run-id", metavar="RUN", help="The MLflow run.")],
    tracking_uri: TrackingUri = None,
    as_json: AsJson = False,
) -> None:
    """Log a certificate to an MLflow run: the certificate (and its signed envelope) as
    artifacts under provenance/, and the tags provenance.model_id, provenance.certificate_cid,
    provenance.certificate_digest and provenance.verify (the command that verifies it)."""
    from provenance.export.mlflow import log_certificate, mlflow_client
    from provenance.export.subject import subject_for

    client = mlflow_client(tracking_uri)  # MLflow missing: said before any chain is asked
    with _session() as clients:
        subject = subject_for(target, clients)
    logged = log_certificate(subject, run_id, client=client)
    if as_json:
        document = {"run_id": logged.run_id, "tags": logged.tags, "artifacts": logged.artifacts}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    say(f"logged the certificate to MLflow run {shown(run_id)}")
    for key, value in logged.tags.items():
        out.print(f"  {key:<30} {shown(value)}", highlight=False, soft_wrap=True)
    for path in logged.artifacts:
        out.print(f"  artifact {shown(path)}", highlight=False, soft_wrap=True)


@app.command("import")
def import_command(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The MLflow run.")],
    tracking_uri: TrackingUri = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="The certificate file to write (default provenance-runs/<name>/certificate.json)"
            "; the model's files go into a model/ folder beside it.",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="The model's name (default: the run's name).")
    ] = None,
    parent: Parents = None,
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            metavar="NAME=PATH",
            help="The source file of the run's dataset NAME, to commit to (repeatable; default: "
            "the local file MLflow names).",
        ),
    ] = None,
    model_path: Annotated[
        str | None,
        typer.Option(
            "--model-path",
            metavar="PATH",
            help="The model's artifact path in the run (default: the run's logged model).",
        ),
    ] = None,
    sign: Annotated[
        bool,
        typer.Option("--sign", help="Sign as the creator (the keystore, or the dev account)."),
    ] = False,
    keystore: Annotated[
        Path | None,
        typer.Option(help="Encrypted keyfile JSON of the creator (implies --sign)."),
    ] = None,
    password_file: PasswordFile = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing certificate file.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Build a certificate from an MLflow run: params, metrics, start and end times, dataset
    inputs committed to from their source files, and the logged model's files (downloaded and
    hashed). Signed by the creator with --sign or --keystore; register it afterwards with
    `provenance register`."""
    from provenance.capture.mlflow import certificate_from_run
    from provenance.capture.publish import publish
    from provenance.capture.tracker import parse_parent, slug
    from provenance.cli.verify import parse_sources
    from provenance.export.mlflow import mlflow_client

    parents = [parse_parent(p) for p in parent or []]
    sources = parse_sources(data or [])
    client = mlflow_client(tracking_uri)
    if output is None:
        label = name or _run_name(client, run_id)
        output = Path.cwd() / "provenance-runs" / slug(label) / "certificate.json"
    if output.exists() and not force:
        raise ConfigError(f"{output} exists: pass -o FILE for another, or --force to replace it")
    model_dir = output.parent / "model"
    if model_dir.exists() and any(model_dir.iterdir()):
        if not force:
            raise ConfigError(
                f"{model_dir} is not empty: the model's files are downloaded there (--force "
                "replaces them)"
            )
        _empty(model_dir)
    signer = None
    if sign or keystore is not None:
        with _session(keystore=keystore, password_file=password_file) as session:
            signer = session.signer
    imported = certificate_from_run(
        run_id,
        model_dir=model_dir,
        client=client,
        name=name,
        parents=parents,
        data=sources,
        model_path=model_path,
        creator=None if signer is None else str(signer.address),
    )
    done = publish(imported.certificate, signer=signer, register=False, path=output)
    certificate = done.certificate
    datasets = [d.name for d in certificate.data.datasets]
    summary = {
        "certificate": str(output),
        "certificate_digest": certificate.digest_text,
        "cid": done.cid,
        "model_id": None if certificate.creator is None else "0x" + certificate.model_id.hex(),
        "model_digest": certificate.model.digest,
        "model_files": str(model_dir),
        "data_commitment": certificate.data.commitment,
        "datasets": datasets,
        "signed_by": certificate.creator,
        "mlflow_run_id": run_id,
        "mlflow_model_id": imported.mlflow_model_id,
    }
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    say(f"certificate {shown(output)} ({certificate.digest_text})")
    rows = [
        ("model id", summary["model_id"] or "none (unsigned: an id binds its registrant)"),
        ("model", f"{model_dir} ({certificate.model.digest})"),
        ("data", f"{', '.join(datasets) or 'none'} ({certificate.data.commitment})"),
    ]
    for label, value in rows:
        out.print(f"  {label:<10} {shown(value)}", highlight=False, soft_wrap=True)
    for warning in certificate.warnings:
        err.print(f"[yellow]warning:[/] {shown(warning)}", highlight=False, soft_wrap=True)


def _run_name(client: MlflowClient, run_id: str) -> str:
    from provenance.export.mlflow import mlflow_errors, mlflow_failure

    try:
        run = client.get_run(run_id)
    except mlflow_errors() as exc:
        raise mlflow_failure(f"MLflow run {run_id!r}", exc) from exc
    return str(run.data.tags.get("mlflow.runName") or run_id)


def _empty(folder: Path) -> None:
    import shutil

    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


__all__ = ["app"]
