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


def _digest(text: str | None, option: str) -> bytes | None:
    from provenance.hashing import parse_digest

    return None if text is None else parse_digest(text.strip(), option)


def _model_id(text: str) -> bytes:
    """A full model id (offline: no chain to resolve a prefix on)."""
    raw = text.strip().lower().removeprefix("0x")
    if len(raw) != 64 or any(c not in "0123456789abcdef" for c in raw):
        raise ConfigError(f"--model-id {text!r}: offline, give the full id (0x and 64 hex digits)")
    return bytes.fromhex(raw)


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
        Path | None,
        typer.Option(
            "--input",
            "--input-file",
            help="The input (e.g. the request body sent), its raw bytes hashed to check the "
            "receipt's digest.",
        ),
    ] = None,
    output_file: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "--output-file",
            help="The output (e.g. the answer body received), its raw bytes hashed to check the "
            "receipt's digest.",
        ),
    ] = None,
    input_digest: Annotated[
        str | None,
        typer.Option(
            "--input-digest", metavar="sha256:HEX", help="The input's SHA-256, instead of the file."
        ),
    ] = None,
    output_digest: Annotated[
        str | None,
        typer.Option(
            "--output-digest",
            metavar="sha256:HEX",
            help="The output's SHA-256, instead of the file.",
        ),
    ] = None,
    model_id: Annotated[
        str | None,
        typer.Option(
            "--model-id",
            help="The model the output must come from (0x..., or a unique prefix of 8+ hex "
            "digits online); a receipt of another model fails.",
        ),
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
    ?wait=true), its predictions are the output checked. A bare receipt (e.g. from
    `provenance proxy`'s /_provenance/receipts/N) needs --output FILE, the raw answer bytes the
    client received, or --output-digest (or --receipt-only): without its output it proves
    nothing about which output was attested. Exit 1 with one line on failure."""
    from provenance.cli.verify import render
    from provenance.verify.verifier import Verifier, read_receipt_file

    for what, path, digest in (
        ("input", input_file, input_digest),
        ("output", output_file, output_digest),
    ):
        if path is not None and digest is not None:
            raise ConfigError(f"give the {what} file or its digest, not both")
    expected = {
        "input_digest": _digest(input_digest, "--input-digest"),
        "output_digest": _digest(output_digest, "--output-digest"),
    }
    with session(trust=trust, attestor=attestor, fetch_data=False) as clients:
        policy = clients.policy
        input_data = _read(input_file, "input")
        output_data = _read(output_file, "output")
        if model_id is not None:
            expected["model_id"] = _model_id(model_id) if offline else clients.resolve_id(model_id)
        # the file is read (bounded) before any service is asked: bad input needs no chain
        data = read_receipt_file(receipt_file, policy.max_receipt_bytes)
        verifier = Verifier(policy, registry=None, storage=None) if offline else clients.verifier()
        report = verifier.receipt(
            data,
            input_data,
            output_data,
            target=str(receipt_file),
            require_output=not receipt_only,
            **expected,
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
