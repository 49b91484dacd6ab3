"""The signing keys of the ecosystem's formats: OMS model signatures and DSSE envelopes use
ECDSA on NIST P-256 or P-384, which our Ethereum (secp256k1) keys are not. Such a key is kept
beside the keystores as an encrypted PKCS#8 PEM file (mode 0600, never overwritten), made and
read with ``cryptography``."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provenance.errors import ConfigError, KeyLoadError

CURVES = {"p256": ec.SECP256R1, "p384": ec.SECP384R1}
CURVE_NAMES = frozenset(curve().name for curve in CURVES.values())
"""The curves OMS and our DSSE envelopes accept, by cryptography's name (secp256r1, secp384r1)."""


def new_signing_key(path: Path, password: str, curve: str = "p256") -> ec.EllipticCurvePrivateKey:
    """Make a key on ``curve`` and write it encrypted with ``password`` to ``path`` (which must
    not exist); the public key goes beside it as ``<path>.pub`` (PEM)."""
    if curve not in CURVES:
        raise ConfigError(f"unknown curve {curve!r}; use one of {', '.join(CURVES)}")
    if len(password) < 8:
        raise ConfigError("a signing key's password needs at least 8 characters")
    key = ec.generate_private_key(CURVES[curve]())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode()),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; a signing key is never overwritten") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    Path(f"{path}.pub").write_bytes(public_pem(key))
    return key


def load_signing_key(path: Path, password: str | None) -> ec.EllipticCurvePrivateKey:
    """The EC private key in PEM file ``path`` (encrypted with ``password``, or not)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyLoadError(f"cannot read signing key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(
            data, password.encode() if password is not None else None
        )
    except (ValueError, TypeError) as exc:
        raise KeyLoadError(f"signing key {path} cannot be opened: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in CURVE_NAMES:
        raise KeyLoadError(f"signing key {path} is not an ECDSA P-256 or P-384 key")
    return key


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


__all__ = ["CURVES", "CURVE_NAMES", "load_signing_key", "new_signing_key", "public_pem"]
