"""``provenance export``: a certificate in another ecosystem's format."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provenance.cli._common import IdOrCertificate, PasswordFile, password, say, session
from provenance.export.formats import FORMATS

if TYPE_CHECKING:
    pass

app = typer.Typer()

_HELP = "Export a certificate in another ecosystem's format.\n\n\b\nFormats:\n" + "\n".join(
    f"  {name:<10} {FORMATS[name][1]}" for name in sorted(FORMATS)
)


@app.command("export", help=_HELP)
def export_command(
    target: IdOrCertificate,
    fmt: Annotated[
        str, typer.Option("--format", "-f", metavar="FORMAT", help="The format (listed above).")
    ],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="The file to write (else stdout).")
    ] = None,
    model_files: Annotated[
        Path | None,
        typer.Option(help="The model's files (a file or folder), for formats that cover them."),
    ] = None,
    signing_key: Annotated[
        Path | None,
        typer.Option(help="An ECDSA P-256/P-384 key (PEM) for formats that are signed."),
    ] = None,
    password_file: PasswordFile = None,
) -> None:
    from provenance.export import export
    from provenance.export.signing_keys import load_signing_key

    key = None
    if signing_key is not None:
        key = load_signing_key(signing_key, password(password_file))
    from provenance.export.subject import subject_for

    with session() as clients:
        subject = subject_for(target, clients, model_files=model_files)
    document = export(subject, fmt, signing_key=key)
    if output is None:
        sys.stdout.buffer.write(document)
        return
    output.write_bytes(document)
    say(f"wrote {output} ({fmt})")


__all__ = ["app"]
