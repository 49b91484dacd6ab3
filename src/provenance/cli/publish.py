"""``provenance publish CERT``: put a certificate (and on request its model and public training
data) into IPFS, so anyone can fetch and verify them by the registered model's id."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from provenance.cli._common import out, say, shown
from provenance.cli._common import session as _session

app = typer.Typer()


@app.command("publish")
def publish_command(
    certificate: Annotated[Path, typer.Argument(metavar="CERT", help="Certificate JSON file.")],
    model_files: Annotated[
        Path | None,
        typer.Option(
            "--model-files",
            help="The model file or folder; stored after checking it is the certified model.",
        ),
    ] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            help="A public training data file (repeatable); stored after checking it "
            "recomputes one of the certificate's datasets.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Store a certificate in IPFS (the body, and the signed envelope when it is signed);
    with --model-files and --data also the model and public training data. Prints the CIDs.
    Nothing is changed in the certificate: a signed one keeps its digest and model id."""
    from provenance.capture.publish import publish
    from provenance.certificate import body_of, load_certificate

    document = load_certificate(certificate)
    with _session() as session:
        done = publish(
            document,
            storage=session.storage,
            register=False,
            model_files=model_files,
            data=data or (),
        )
        kind = session.storage_kind
    body = body_of(document)
    result = {
        "certificate": str(certificate),
        "certificate_digest": body.digest_text,
        "cid": done.cid,
        "envelope_cid": done.envelope_cid,
        "model_cid": done.model_cid,
        "data_cids": dict(done.data_cids),
        "storage": kind,
    }
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    say(f"published {shown(certificate)} ({kind})")
    rows = [("certificate", done.cid), ("envelope", done.envelope_cid)]
    rows += [("model", done.model_cid)]
    rows += [(f"data {name}", cid) for name, cid in done.data_cids.items()]
    for label, cid in rows:
        if cid is not None:
            out.print(f"  {shown(label):<12} ipfs://{cid}", highlight=False, soft_wrap=True)
