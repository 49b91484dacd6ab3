"""``provenance oms key new|sign|verify``: OpenSSF model signing (OMS v1.0) signatures of a
model's files, with an ECDSA P-256/P-384 key kept beside the keystores."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from provenance.cli._common import AsJson, PasswordFile, password, say, shown

app = typer.Typer(
    help="OpenSSF model signing (OMS v1.0): sign model files, verify signatures.",
    no_args_is_help=True,
)
key_app = typer.Typer(help="P-256/P-384 signing keys for OMS.", no_args_is_help=True)
app.add_typer(key_app, name="key")


@key_app.command("new")
def key_new(
    path: Annotated[Path, typer.Argument(help="Where to write the key (never overwritten).")],
    p384: Annotated[bool, typer.Option("--p384", help="NIST P-384 instead of P-256.")] = False,
    password_file: PasswordFile = None,
) -> None:
    """A new encrypted ECDSA key (PKCS#8 PEM, mode 0600); its public key goes to FILE.pub."""
    from provenance.cli.keys import new_password
    from provenance.errors import ConfigError
    from provenance.export.signing_keys import new_signing_key

    if path.exists():  # before asking for a password
        raise ConfigError(f"{path} already exists; a signing key is never overwritten")
    new_signing_key(path, new_password(password_file), "p384" if p384 else "p256")
    say(f"new {'P-384' if p384 else 'P-256'} key in {shown(path)}, public key {shown(path)}.pub")


@app.command("sign")
def sign(
    model: Annotated[Path, typer.Argument(help="The model: a file or a folder.")],
    key: Annotated[Path, typer.Option("--key", help="The P-256/P-384 private key (PEM).")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="The bundle (default: MODEL.sig).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing bundle.")] = False,
    password_file: PasswordFile = None,
) -> None:
    """Sign the model's files as model_signing does (SHA-256 per file; git files skipped)."""
    from provenance.export.oms import write_bundle
    from provenance.export.signing_keys import load_signing_key

    private = load_signing_key(key, password(password_file))
    written = write_bundle(model, private, output, overwrite=force)
    say(f"signed {shown(model)}: {shown(written)}")


@app.command("verify")
def verify(
    model: Annotated[Path, typer.Argument(help="The model: a file or a folder.")],
    public_key: Annotated[
        list[Path],
        typer.Option("--public-key", help="A trusted public key (PEM; repeatable)."),
    ],
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="The OMS bundle (default: MODEL.sig).")
    ] = None,
    certificate: Annotated[
        Path | None,
        typer.Option(help="A certificate file: the bundle must cover exactly its model files."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Check the signature with a trusted key over exactly the files as they are now (and,
    with --certificate, over exactly the certified files). Exit 1 otherwise."""
    from provenance.export.oms import (
        bundle_beside,
        load_public_key,
        verify_covers,
        verify_model_signature,
    )

    keys = [load_public_key(p) for p in public_key]
    where = bundle if bundle is not None else bundle_beside(model)
    signed = verify_model_signature(model, where, keys)
    if certificate is not None:
        from provenance.certificate import body_of, load_certificate
        from provenance.manifest import verify_manifest

        certified = body_of(load_certificate(certificate)).model.manifest
        verify_covers(signed, certified, model, where)
        verify_manifest(certified, model)
    if as_json:
        report = {
            "model": str(model),
            "bundle": str(where),
            "key_hint": signed.key_hint,
            "files": signed.files,
            "certificate": None if certificate is None else str(certificate),
        }
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    covered = f", covering exactly the files of {shown(certificate)}" if certificate else ""
    say(
        f"{shown(where)}: {len(signed.files)} file(s) of {shown(model)} signed by a trusted key"
        f"{covered}"
    )


__all__ = ["app"]
