"""``provenance export``: a certificate in another ecosystem's format."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provenance.cli._common import PasswordFile, password, say, session
from provenance.export.formats import FORMATS

if TYPE_CHECKING:
    from provenance.export.subject import Subject

app = typer.Typer()

_HELP = "Export a certificate in another ecosystem's format.\n\n\b\nFormats:\n" + "\n".join(
    f"  {name:<10} {FORMATS[name][1]}" for name in sorted(FORMATS)
)


@app.command("export", help=_HELP)
def export_command(
    target: Annotated[
        str,
        typer.Argument(
            metavar="ID|CERT",
            help="A registered model id (or a unique prefix of 8+ hex digits), or a certificate "
            "file (signed or not).",
        ),
    ],
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
    subject = _subject(target, model_files)
    document = export(subject, fmt, signing_key=key)
    if output is None:
        sys.stdout.buffer.write(document)
        return
    output.write_bytes(document)
    say(f"wrote {output} ({fmt})")


def _subject(target: str, model_files: Path | None) -> Subject:
    from provenance.certificate import load_certificate
    from provenance.export import Subject

    path = Path(target)
    if path.is_file():
        return Subject.of(load_certificate(path), model_files=model_files)
    with session() as clients:
        model_id = clients.resolve_id(target)
        return Subject(
            clients.certificate(model_id),
            model_id=model_id,
            chain_id=clients.chain_id,
            registry=clients.registry.address,
            model_files=model_files,
        )


__all__ = ["app"]
