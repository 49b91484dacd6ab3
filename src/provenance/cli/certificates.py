"""Commands for certificates and training data: ``provenance run``, ``provenance data
hash / verify / prove / check-proof``, ``provenance certificate show / verify / schema``."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

if TYPE_CHECKING:
    from provenance.certificate import Certificate
    from provenance.config import Config
    from provenance.hashing import Progress as Advance
    from provenance.manifest import DatasetOpening, DatasetRecord

from provenance.cli._common import AsJson, Parents, err, out, say, shown
from provenance.cli._common import config as _config
from provenance.cli._common import session as _session
from provenance.errors import CertificateError, ConfigError

app = typer.Typer()
data_app = typer.Typer(
    help="Training data: manifests, subset verification, row inclusion proofs.",
    no_args_is_help=True,
)
certificate_app = typer.Typer(
    help="Birth certificates: show, verify, the JSON Schema.", no_args_is_help=True
)

LARGE = 256 << 20
"""Hashing from this many bytes on shows a progress bar (on a terminal)."""

CertificateFile = Annotated[
    Path, typer.Option("--certificate", "-c", help="The certificate file (signed or not).")
]
DatasetName = Annotated[
    str | None,
    typer.Option("--dataset", help="The dataset's name in the certificate (when it has several)."),
]
OpeningFile = Annotated[
    Path | None,
    typer.Option("--opening", help="The owner's opening file of a confidential dataset."),
]


@contextmanager
def _progress(what: str, total: int) -> Iterator[Advance | None]:
    if not err.is_terminal or total < LARGE:
        yield None
        return
    columns = [
        TextColumn(what),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
    ]
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


def _emit(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


# -- provenance run -------------------------------------------------------------------------


def _registry_configured(config: Config) -> bool:
    from provenance.chain.deploy import Deployment

    if "ModelRegistry" in config.chain.contracts:
        return True
    deployment = Deployment.read(config.deployment_file)
    return deployment is not None and "ModelRegistry" in deployment.contracts


@app.command(
    context_settings={"allow_interspersed_args": False},
    no_args_is_help=True,
)
def run(
    command: Annotated[list[str], typer.Argument(help="The training command, after --.")],
    name: Annotated[str, typer.Option("--name", help="The model's name.")],
    parent: Parents = None,
    parent_from_card: Annotated[
        Path | None,
        typer.Option(
            "--parent-from-card",
            metavar="README.md",
            help="Parents from a Hugging Face model card: each base_model is a local folder "
            "whose model digest a registered model has (relation from base_model_relation).",
        ),
    ] = None,
    model: Annotated[
        list[Path] | None,
        typer.Option(
            "--model",
            help="The model file or folder (repeatable); default: the model files written "
            "(.joblib, .pkl, .safetensors, .onnx, .pt, ...).",
        ),
    ] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data", help="A training data file (repeatable); default: every non-code file read."
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir", help="Where certificate.json goes (default provenance-runs/<name>)."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace the certificate.json of an earlier run there."),
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="A capture failure is an error, not a warning.")
    ] = False,
    register: Annotated[
        bool | None,
        typer.Option(
            "--register/--no-register",
            help="Register on chain (default: when a ModelRegistry is deployed or configured).",
        ),
    ] = None,
    store: Annotated[
        bool | None,
        typer.Option(
            "--store/--no-store",
            help="Store model and certificate in IPFS (default: when registering).",
        ),
    ] = None,
    publish_data: Annotated[
        bool,
        typer.Option("--publish-data", help="Store the (public) training data in IPFS too."),
    ] = False,
    keystore: Annotated[
        Path | None,
        typer.Option(help="Encrypted keyfile JSON of the creator (else PROVENANCE_KEYSTORE)."),
    ] = None,
    password_file: Annotated[
        Path | None, typer.Option(help="File holding the keystore password.")
    ] = None,
    image_id: Annotated[
        str | None,
        typer.Option(envvar="PROVENANCE_IMAGE_ID", help="The container image id the job runs in."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Run a training command and certify it: every file its Python processes read or write is
    hashed, with the command, environment, git state and exit code.

    \b
    provenance run --name "Model Beta" --parent 0xID:fine-tune -- python train.py --epochs 3
    """
    from provenance.capture.environment import REPRODUCIBILITY_VARIABLES
    from provenance.capture.runner import certify_command, run_traced
    from provenance.capture.tracker import Run, parse_parent, slug

    config = _config()
    parents = [parse_parent(p) for p in parent or []]
    cwd = Path.cwd()
    output_dir = out_dir or cwd / "provenance-runs" / slug(name)
    target = output_dir / "certificate.json"
    if target.exists() and not force:
        raise ConfigError(
            f"{target} holds the certificate of an earlier run: pass --out-dir DIR for this "
            "run, or --force to replace it"
        )
    registering = _registry_configured(config) if register is None else register
    storing = (registering or publish_data) if store is None else store
    if publish_data and not storing:
        raise ConfigError("--publish-data stores the training data: it cannot go with --no-store")
    session = _session(keystore=keystore, password_file=password_file)
    if parent_from_card is not None:
        from provenance.export.hf_card import parents_from_card

        parents += parents_from_card(parent_from_card, session)
    account = None
    if registering or keystore or config.chain.keystore:
        account = session.signer
    registry = session.registry_for(account) if registering else None
    storage = session.storage if storing else None
    variables = {k: os.environ[k] for k in REPRODUCIBILITY_VARIABLES if k in os.environ}
    capture = Run(
        name,
        parents=parents,
        output_dir=output_dir,
        signer=account,
        storage=storage,
        registry=registry,
        source_dir=cwd,
        image_id=image_id,
        variables=variables,
        strict=strict,
    )
    with tempfile.TemporaryDirectory(prefix="provenance-run-") as scratch:
        traced = run_traced(
            command, cwd=cwd, env=dict(os.environ), events_file=Path(scratch) / "events.jsonl"
        )
    failed = traced.exit_code != 0
    if failed:
        capture.storage = capture.registry = None
    with session:
        certify_command(
            capture, traced, model=model or (), data=data, store_data=publish_data and not failed
        )
        certificate = capture.finish()
    model_files = [f.path for f in certificate.model.manifest.files]
    data_urls = [d.url for d in certificate.data.datasets if d.url is not None]
    summary = {
        "certificate": str(capture.path),
        "certificate_digest": certificate.digest_text,
        "cid": capture.cid,
        "model_id": _model_id(certificate),
        "model_digest": certificate.model.digest,
        "model_files": model_files,
        "data_commitment": certificate.data.commitment,
        "signed_by": certificate.creator,
        "stored": capture.storage is not None,
        "storage": session.storage_kind if capture.storage is not None else None,
        "data_urls": data_urls,
        "registered": capture.registered is not None,
        "transaction": capture.registered.transaction if capture.registered else None,
        "exit_code": traced.exit_code,
        "inputs": len(certificate.training.inputs.files) if certificate.training.inputs else 0,
        "outputs": len(certificate.training.outputs.files) if certificate.training.outputs else 0,
        "warnings": list(certificate.warnings),
    }
    if as_json:
        _emit(summary)
    else:
        say(f"certificate {capture.path} ({certificate.digest_text})")
        model_id = summary["model_id"] or "none (no creator: an id binds its registrant)"
        out.print(f"  model id   {model_id}", highlight=False, soft_wrap=True)
        out.print(
            f"  files      {summary['inputs']} read, {summary['outputs']} written",
            highlight=False,
            soft_wrap=True,
        )
        out.print(
            f"  model      {shown(', '.join(model_files))} ({certificate.model.digest})",
            highlight=False,
            soft_wrap=True,
        )
        if capture.storage is not None:
            out.print(
                f"  stored     ipfs://{capture.cid} ({summary['storage']})",
                highlight=False,
                soft_wrap=True,
            )
        for url in data_urls:
            out.print(f"  data       {url}", highlight=False, soft_wrap=True)
        if certificate.creator is None:
            out.print(
                "  unsigned   (no --keystore, not registering)", highlight=False, soft_wrap=True
            )
        if capture.registered is not None:
            out.print(
                f"  registered tx {capture.registered.transaction}", highlight=False, soft_wrap=True
            )
        for warning in certificate.warnings:
            err.print(f"[yellow]warning:[/] {shown(warning)}", highlight=False, soft_wrap=True)
    if failed:
        err.print(
            f"error: the command exited with code {traced.exit_code}; the certificate was "
            "written but not stored or registered",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(traced.exit_code)


# -- provenance data ------------------------------------------------------------------------


@data_app.command("hash")
def data_hash(
    path: Annotated[Path, typer.Argument(help="A file or directory, or a CSV/Parquet table.")],
    table: Annotated[
        bool, typer.Option("--table", help="Hash a CSV/Parquet file's rows (Merkle root).")
    ] = False,
    header: Annotated[
        bool | None,
        typer.Option(
            "--header/--no-header",
            help="A CSV table's first row is its column names, or it has no header row "
            "(recorded in the manifest); implies --table. Without either, a first row that "
            "reads as data is refused.",
        ),
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Hashing threads (default: CPUs).")] = None,
    as_json: AsJson = False,
) -> None:
    """The manifest of a file or directory (per-file SHA-256 and root), or of a table."""
    from provenance.hashing import total_size
    from provenance.manifest import (
        FileManifest,
        TableManifest,
        files_at,
        manifest_of_files,
        open_table,
    )

    manifest: FileManifest | TableManifest
    if table or header is not None:
        manifest = open_table(path, header=header).manifest()
    else:
        files = files_at(path)
        with _progress(f"hashing {path.name}", total_size(files)) as advance:
            manifest = manifest_of_files(files, workers=workers, progress=advance)
    if as_json:
        _emit(manifest.model_dump(mode="json", exclude_none=True))
        return
    if isinstance(manifest, TableManifest):
        out.print(
            f"{manifest.digest}  {path} ({manifest.rows} rows, root {manifest.root})",
            highlight=False,
            soft_wrap=True,
        )
    else:
        for entry in manifest.files:
            out.print(f"{entry.digest}  {entry.path}", highlight=False, soft_wrap=True)
        out.print(
            f"{manifest.root}  (root of {len(manifest.files)} files)",
            highlight=False,
            soft_wrap=True,
        )


def _dataset(certificate: Certificate, name: str | None) -> DatasetRecord:
    datasets = certificate.data.datasets
    if name is not None:
        for record in datasets:
            if record.name == name:
                return record
        known = ", ".join(d.name for d in datasets) or "none"
        raise ConfigError(f"the certificate has no dataset {name!r} (it has: {known})")
    if len(datasets) != 1:
        known = ", ".join(d.name for d in datasets) or "none"
        raise ConfigError(
            f"the certificate has {len(datasets)} datasets ({known}): pick one with --dataset"
        )
    return datasets[0]


def _opening(path: Path | None, record: DatasetRecord) -> DatasetOpening | None:
    from provenance.manifest import DatasetOpening, verify_opening

    if not record.confidential:
        return None
    if path is None:
        raise ConfigError(f"dataset {record.name!r} is confidential: pass its --opening file")
    try:
        opening = DatasetOpening.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read opening {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CertificateError(f"opening {path} is not a dataset opening: {exc}") from None
    verify_opening(record, opening)
    return opening


@data_app.command("verify")
def data_verify(
    source: Annotated[Path, typer.Argument(help="The source data: file, folder or table.")],
    certificate: CertificateFile,
    dataset: DatasetName = None,
    opening: OpeningFile = None,
) -> None:
    """Recompute a dataset of a certificate from its source: the files, the table's rows, or
    the subset (source root, selection, subset root)."""
    from provenance.certificate import body_of, load_certificate
    from provenance.manifest import recompute_dataset

    record = _dataset(body_of(load_certificate(certificate)), dataset)
    matched = recompute_dataset(record, source, _opening(opening, record))
    say(f"dataset {shown(record.name)}: {matched}")


@data_app.command("prove")
def data_prove(
    source: Annotated[Path, typer.Argument(help="The source table (CSV or Parquet).")],
    certificate: CertificateFile,
    row: Annotated[int, typer.Option("--row", help="Row number in the training data (from 0).")],
    source_row: Annotated[
        bool,
        typer.Option("--source-row", help="--row counts rows of the source, not of the subset."),
    ] = False,
    dataset: DatasetName = None,
    opening: OpeningFile = None,
    output: Annotated[
        Path | None, typer.Option("--out", help="Write the proof here, not to stdout.")
    ] = None,
) -> None:
    """An inclusion proof that a row was in a model's training data (checked before it is
    printed); verify it with `provenance data check-proof`."""
    from provenance.certificate import body_of, load_certificate
    from provenance.manifest import TableManifest, prove_row, source_table

    record = _dataset(body_of(load_certificate(certificate)), dataset)
    opened = _opening(opening, record)
    manifest = opened.manifest if opened else record.manifest
    subset = opened.subset if opened else record.subset
    if not isinstance(manifest, TableManifest):
        raise ConfigError(f"dataset {record.name!r} is not a table: rows cannot be proven")
    table = source_table(source, subset.source if subset else manifest)
    proof = prove_row(record, table, row, opening=opened, by_source_row=source_row)
    text = proof.model_dump_json(indent=2, exclude_none=True) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        say(f"row {proof.row} of dataset {shown(record.name)} proven: {output}")


@data_app.command("check-proof")
def data_check_proof(
    proof_file: Annotated[Path, typer.Argument(metavar="PROOF", help="A row proof JSON file.")],
    certificate: Annotated[
        Path | None, typer.Option("--certificate", "-c", help="Check against this certificate too.")
    ] = None,
) -> None:
    """Verify a row inclusion proof (alone, or against a certificate's dataset commitment)."""
    from provenance.certificate import body_of, load_certificate
    from provenance.manifest import RowProof, verify_row_proof

    try:
        proof = RowProof.model_validate_json(proof_file.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read proof {proof_file}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CertificateError(f"{proof_file} is not a row proof: {exc}") from None
    commitment = None
    if certificate is not None:
        commitment = _dataset(body_of(load_certificate(certificate)), proof.dataset).commitment
    verify_row_proof(proof, commitment)
    where = " of the certificate" if certificate is not None else ""
    say(
        f"row {proof.row} {shown(proof.cells)} is in dataset {shown(proof.dataset)}{where} "
        f"({proof.commitment})"
    )


# -- provenance certificate -----------------------------------------------------------------


def _model_id(certificate: Certificate) -> str | None:
    """The id under the certificate's creator; None when it names none (an id binds its
    registrant, so an unsigned body has no id until someone registers it)."""
    return None if certificate.creator is None else "0x" + certificate.model_id.hex()


@certificate_app.command("show")
def certificate_show(
    path: Annotated[Path, typer.Argument(help="Certificate file.")],
    as_json: AsJson = False,
) -> None:
    """The certificate's identity (digest, CID, model id) and a summary."""
    from provenance.certificate import SignedCertificate, body_of, load_certificate

    document = load_certificate(path)
    body = body_of(document)
    summary = {
        "model_name": body.model_name,
        "certificate_digest": body.digest_text,
        "cid": body.cid,
        "model_id": _model_id(body),
        "model_digest": body.model.digest,
        "data_commitment": body.data.commitment,
        "creator": body.creator,
        "signed": isinstance(document, SignedCertificate),
        "created_at": body.created_at,
        "parents": [p.model_dump(exclude_none=True) for p in body.parents],
        "datasets": [
            {
                "name": d.name,
                "role": d.role,
                "commitment": d.commitment,
                "confidential": d.confidential,
            }
            for d in body.data.datasets
        ],
        "steps": [s.name for s in body.preprocessing],
        "warnings": list(body.warnings),
    }
    if as_json:
        _emit(summary)
        return
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        if isinstance(value, list):
            value = (
                ", ".join(json.dumps(v) if isinstance(v, dict) else str(v) for v in value) or "-"
            )
        out.print(f"{key:<{width}}  {shown(value)}", highlight=False, soft_wrap=True)


@certificate_app.command("verify")
def certificate_verify(
    path: Annotated[Path, typer.Argument(help="Certificate file.")],
    model: Annotated[
        Path | None, typer.Option("--model", help="Check these model files against the manifest.")
    ] = None,
    unsigned_ok: Annotated[
        bool, typer.Option("--unsigned-ok", help="Accept a certificate without a signature.")
    ] = False,
) -> None:
    """Check a certificate: schema, self-consistency, the creator's signature, and optionally
    the model files."""
    from provenance.certificate import (
        SignedCertificate,
        body_of,
        load_certificate,
        verify_certificate_signature,
    )
    from provenance.manifest import verify_manifest

    document = load_certificate(path)
    if isinstance(document, SignedCertificate):
        verify_certificate_signature(document)
    elif not unsigned_ok:
        raise CertificateError(f"certificate {path} is not signed (use --unsigned-ok to accept)")
    body = body_of(document)
    if model is not None:
        verify_manifest(body.model.manifest, model)
    signer = f", signed by {body.creator}" if isinstance(document, SignedCertificate) else ""
    files = f", model files in {model} match" if model is not None else ""
    say(f"certificate {body.digest_text} is valid{signer}{files}")


@certificate_app.command("schema")
def certificate_schema() -> None:
    """Print the JSON Schema of certificate files (version 1)."""
    from provenance.certificate import certificate_json_schema

    sys.stdout.write(json.dumps(certificate_json_schema(), indent=2) + "\n")


__all__ = ["app", "certificate_app", "data_app"]
