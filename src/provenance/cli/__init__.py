"""The ``provenance`` command line: parse, build clients, call the API, print.

Each command group lives in a module of this package and registers on ``app``. Errors: every
ProvenanceError is caught in :func:`main`, printed as one line, exit code 1. Nothing imports
this package.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from provenance import __version__
from provenance.cli import (
    attest,
    certificates,
    demo,
    explorer,
    images,
    ipfs,
    registry,
    serve,
    stack,
    verify,
)
from provenance.cli._common import err, out, state
from provenance.errors import ProvenanceError

app = typer.Typer(
    name="provenance",
    help="Verifiable birth certificates and family trees for ML models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _group in (
    stack.app,
    registry.app,
    certificates.app,
    attest.app,
    serve.app,
    explorer.app,
    demo.app,
    verify.app,
):
    for _command in _group.registered_commands:
        app.registered_commands.append(_command)
app.add_typer(ipfs.app, name="ipfs")
app.add_typer(images.app, name="image")
app.add_typer(certificates.data_app, name="data")
app.add_typer(certificates.certificate_app, name="certificate")


def _version(value: bool) -> None:
    if value:
        out.print(f"provenance {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML config file (else PROVENANCE_CONFIG, ./provenance.toml, user config)",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    state.config_path = config


def main() -> None:
    """Console-script entry point: one line and exit 1 for every ProvenanceError.

    Usage errors are Typer's (exit 2); anything else is a bug and keeps its traceback.
    """
    try:
        app()
    except ProvenanceError as exc:
        err.print(f"[red]error:[/] {exc}", soft_wrap=True, highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
