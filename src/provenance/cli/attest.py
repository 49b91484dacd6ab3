"""Commands for output attestation: verify-output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from provenance.attest import Receipt, verify_receipt_offline
from provenance.cli._common import config as _config
from provenance.cli._common import out
from provenance.errors import ConfigError
from provenance.untrusted import loads_json

app = typer.Typer()


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc}") from exc


@app.command("verify-output")
def verify_output(
    receipt_file: Annotated[
        Path,
        typer.Argument(
            metavar="RECEIPT.json",
            help="An output receipt, or the answer of `provenance serve`'s POST /predict.",
        ),
    ],
    input_file: Annotated[
        Path | None, typer.Option("--input", help="The input, to check its digest.")
    ] = None,
    output_file: Annotated[
        Path | None, typer.Option("--output", help="The output, to check its digest.")
    ] = None,
    offline: Annotated[bool, typer.Option(help="Check everything but the chain.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Check an output receipt: digests, Merkle proof, node signature, and (online) that the
    root is anchored on chain by an authorised node of a registered model. Given a /predict
    answer of `provenance serve` (with ?wait=true), its predictions are the output checked."""
    try:
        data = loads_json(
            receipt_file.read_bytes(), what=f"receipt {receipt_file}", error=ConfigError
        )
    except FileNotFoundError:
        raise ConfigError(f"receipt {receipt_file} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"receipt {receipt_file} is not readable: {exc.strerror}") from exc
    output_data = _read(output_file, "output")
    output_check = "pass" if output_file else "not given"
    if isinstance(data, dict) and "predictions" in data and "receipt" in data:
        from provenance.server.service import output_bytes

        if data["receipt"] is None:
            raise ConfigError(
                f"{receipt_file} is an answer without a receipt: ask with ?wait=true, or fetch "
                "its receipt_url once anchored"
            )
        if output_data is None:
            output_data = output_bytes(data["predictions"])
            output_check = "pass (the answer's predictions)"
        data = data["receipt"]
    receipt = Receipt.from_json(data)
    report: dict[str, Any] = {"receipt": str(receipt_file), "sequence": receipt.record.sequence}
    verify_receipt_offline(receipt, input_data=_read(input_file, "input"), output_data=output_data)
    checks = [
        ("input digest", "pass" if input_file else "not given"),
        ("output digest", output_check),
        ("record in batch (Merkle proof)", "pass"),
        (f"batch signed by node {receipt.node}", "pass"),
    ]
    if offline:
        checks.append(("anchored on chain", "not checked (offline)"))
    else:
        from provenance.chain.attestor import verify_receipt_on_chain
        from provenance.chain.client import connect

        facts = verify_receipt_on_chain(connect(_config().chain.rpc_url), receipt)
        report["chain"] = facts
        anchored = facts["anchored_in"]
        checks.append(
            (f"anchored in block {anchored['block']} (tx {anchored['transaction']})", "pass")
        )
        checks.append(
            (
                "node authorised for this model digest",
                "pass" if facts["node_still_authorised"] else "warn: authorisation withdrawn since",
            )
        )
        status = facts["model_status"]
        checks.append(
            (f"model status: {status}", "pass" if status == "active" else f"warn: {status}")
        )
    report["checks"] = dict(checks)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    for name, result in checks:
        colour = "green" if result.startswith("pass") else "yellow"
        out.print(f"[{colour}]{result:>8}[/]  {name}", highlight=False, soft_wrap=True)
