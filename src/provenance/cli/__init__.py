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
from rich.markup import escape

from provenance import __version__
from provenance.deferred_imports import defer_bls
from provenance.untrusted import keep_recursion_limit, printable

keep_recursion_limit()  # whichever command imports eth_account (py_ecc) first
defer_bls()  # eth_keyfile's BLS import: 0.2 s of every chain command, never used

from provenance.cli import (  # noqa: E402
    attest,
    certificates,
    demo,
    explorer,
    export,
    images,
    ipfs,
    keys,
    mlflow,
    nodes,
    oms,
    proxy,
    publish,
    registry,
    roles,
    serve,
    stack,
    verify,
)
from provenance.cli._common import err, out, state  # noqa: E402
from provenance.errors import ProvenanceError  # noqa: E402

app = typer.Typer(
    name="provenance",
    help="Verifiable birth certificates and family trees for ML models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: no <bool> metavars, paragraphs wrapped as written
)
for _group in (
    stack.app,
    registry.app,
    certificates.app,
    publish.app,
    attest.app,
    serve.app,
    proxy.app,
    explorer.app,
    export.app,
    demo.app,
    verify.app,
):
    for _command in _group.registered_commands:
        app.registered_commands.append(_command)
app.add_typer(ipfs.app, name="ipfs")
app.add_typer(images.app, name="image")
app.add_typer(certificates.data_app, name="data")
app.add_typer(certificates.certificate_app, name="certificate")
app.add_typer(keys.app, name="key")
app.add_typer(roles.app, name="role")
app.add_typer(nodes.app, name="node")
app.add_typer(oms.app, name="oms")
app.add_typer(mlflow.app, name="mlflow")


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

    Usage errors are Typer's (exit 2); anything else is a bug and keeps its traceback, except
    input that is too deeply nested for the interpreter (RecursionError) or holds an integer
    too long to convert (Python's int limit), which are reported as one line too. The message
    is printed with control characters and markup escaped: it may quote untrusted input.
    """
    try:
        app()
    except ProvenanceError as exc:
        _fail(str(exc))
    except RecursionError:
        _fail("the input is nested too deeply")
    except UnicodeDecodeError as exc:  # a file read as text somewhere without its own check
        _fail(f"the input is not UTF-8: {exc}")
    except _input_errors() as exc:
        _fail(f"invalid input: {exc}")
    except ValueError as exc:
        if "Exceeds the limit" not in str(exc) or "integer" not in str(exc):
            raise
        _fail(f"the input holds an integer that is too long: {exc}")


def _input_errors() -> tuple[type[Exception], ...]:
    """Third-party exceptions that mean "this value cannot be encoded or checked" (an ABI
    value out of range, an address that is not one, a signature that recovers nothing): bad
    input, reported in one line like a ProvenanceError.

    Only those of modules already imported: a command that never imported web3 cannot raise
    them, and importing web3 here (on every exit, ``--version`` included) costs half a second.
    """
    return tuple(
        getattr(sys.modules[module], name)
        for module, name in _INPUT_ERRORS
        if module in sys.modules and hasattr(sys.modules[module], name)
    )


_INPUT_ERRORS = (
    ("eth_abi.exceptions", "EncodingError"),
    ("eth_keys.exceptions", "BadSignature"),
    ("web3.exceptions", "InvalidAddress"),
    ("web3.exceptions", "Web3ValidationError"),
)


def _fail(message: str) -> None:
    err.print(
        f"[red]error:[/] {escape(printable(message, one_line=True))}",
        soft_wrap=True,
        highlight=False,
    )
    sys.exit(1)


if __name__ == "__main__":
    main()
