"""`provenance key new|list|show`: encrypted keystores for a testnet or a private chain.

A new key is written as eth-account's scrypt keyfile, readable by its owner only; the private
key is never printed. Keystores without ``--out`` go to ``<state dir>/keys/<address>.json``.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from provenance.cli._common import AsJson, out, password, say, shown
from provenance.cli._common import config as _config
from provenance.errors import ConfigError

app = typer.Typer(help="Encrypted keystores: create, list, show.", no_args_is_help=True)

PasswordFile = Annotated[
    Path | None,
    typer.Option(
        help="File holding the keystore password (else PROVENANCE_KEYSTORE_PASSWORD, else a "
        "prompt)."
    ),
]


def new_password(password_file: Path | None) -> str:
    """A new keystore's password: a file, else PROVENANCE_KEYSTORE_PASSWORD, else asked twice."""
    if password_file is not None or "PROVENANCE_KEYSTORE_PASSWORD" in os.environ:
        return password(password_file)
    if not sys.stdin.isatty():
        raise ConfigError(
            "a new keystore needs a password: --password-file or PROVENANCE_KEYSTORE_PASSWORD"
        )
    first = getpass.getpass("new keystore password: ")
    if getpass.getpass("repeat the password: ") != first:
        raise ConfigError("the passwords differ; nothing was written")
    return first


def keys_folder() -> Path:
    return _config().state_dir / "keys"


@app.command("new")
def new(
    out_file: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write it (default: <state dir>/keys/ADDRESS.json)."),
    ] = None,
    password_file: PasswordFile = None,
    as_json: AsJson = False,
) -> None:
    """Create a new account in an encrypted keystore (never overwrites a file)."""
    from provenance.chain.keys import new_keystore

    if out_file is not None and out_file.exists():  # before asking for a password
        raise ConfigError(f"{out_file} already exists; a keystore is never overwritten")
    secret = new_password(password_file)
    folder = None if out_file is not None else keys_folder()
    created = new_keystore(secret, path=out_file, folder=folder)
    if as_json:
        sys.stdout.write(json.dumps({"address": created.address, "path": str(created.path)}) + "\n")
        return
    say(f"new key {created.address} in {shown(created.path)} (encrypted, mode 0600)")
    out.print(
        "  keep the file and its password: without both the key is lost; fund the address "
        "before it sends transactions",
        highlight=False,
        soft_wrap=True,
    )


@app.command("list")
def list_keys(
    folder: Annotated[
        Path | None, typer.Option(help="Folder of keystores (default: <state dir>/keys).")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """The keystores in the state folder: address and path."""
    from provenance.chain.keys import list_keystores

    where = folder or keys_folder()
    found = list_keystores(where)
    if as_json:
        rows = [{"address": k.address, "path": str(k.path)} for k in found]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not found:
        out.print(f"no keystores in {shown(where)}", highlight=False, soft_wrap=True)
        return
    for key in found:
        out.print(f"{key.address}  {shown(key.path)}", highlight=False, soft_wrap=True)


@app.command("show")
def show(
    keystore: Annotated[Path, typer.Argument(help="A keystore file.")],
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Decrypt it (asks for the password) and check it holds that address."
        ),
    ] = False,
    password_file: PasswordFile = None,
    as_json: AsJson = False,
) -> None:
    """The address of a keystore (no password needed, except with --check)."""
    from provenance.chain.keys import keystore_address, verify_keystore_address

    address = keystore_address(keystore)
    if check:
        verify_keystore_address(keystore, password(password_file))
    if as_json:
        report = {"address": address, "path": str(keystore), "checked": check}
        sys.stdout.write(json.dumps(report) + "\n")
        return
    out.print(address, highlight=False)
    if check:
        say("the password decrypts it and the key is that address")


__all__ = ["app", "new_password"]
