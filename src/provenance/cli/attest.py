"""Commands for output attestation: verify-output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from provenance.cli._common import err, session
from provenance.errors import ConfigError

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
    trust: Annotated[
        list[str] | None,
        typer.Option(
            "--trust",
            metavar="ADDRESS",
            help="A trusted registrant (repeatable; with [trust] registrants of the config).",
        ),
    ] = None,
    attestor: Annotated[
        str | None,
        typer.Option(
            "--attestor",
            metavar="ADDRESS",
            help="The trusted OutputAttestor (default: [chain.contracts] or the deployment file).",
        ),
    ] = None,
    offline: Annotated[
        bool, typer.Option(help="Check everything but the chain (and the model's certificate).")
    ] = False,
    receipt_only: Annotated[
        bool,
        typer.Option(
            "--receipt-only",
            help="Check a bare receipt without its output (it then shows that some output of "
            "the model was attested, not which).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Check an output receipt against the trusted chain id and OutputAttestor: digests, Merkle
    proof, node signature, and (online) that the batch is anchored on that attestor exactly as
    the receipt states, by a node authorised for that model and digest when it was anchored,
    and the model's own checks. Given a /predict answer of `provenance serve` (with
    ?wait=true), its predictions are the output checked. A bare receipt needs --output FILE
    (or --receipt-only): without its output it proves nothing about which output was
    attested. Exit 1 with one line on failure."""
    from provenance.cli.verify import render
    from provenance.verify.verifier import Verifier, read_receipt_file

    with session(trust=trust, attestor=attestor, fetch_data=False) as clients:
        policy = clients.policy
        input_data = _read(input_file, "input")
        output_data = _read(output_file, "output")
        # the file is read (bounded) before any service is asked: bad input needs no chain
        data = read_receipt_file(receipt_file, policy.max_receipt_bytes)
        verifier = Verifier(policy, registry=None, storage=None) if offline else clients.verifier()
        report = verifier.receipt(
            data,
            input_data,
            output_data,
            target=str(receipt_file),
            require_output=not receipt_only,
        )
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        render(report)
    failure = report.first_failure()
    if failure is not None:
        err.print(
            f"[red]error:[/] {escape(f'{failure.name}: {failure.detail}')}",
            soft_wrap=True,
            highlight=False,
        )
        raise typer.Exit(1)
