"""The sidecar API's pure parts: its bearer token and its request, parsed as untrusted input.

    token = Token.of("a long random secret")          # the CLI reads it from a file or env var
    token.admits(b"Bearer a long random secret")      # True; compared in constant time
    parse_attestation(b'{"input_digest": "sha256:..", "output_digest": "sha256:.."}')

A service that answers by itself (the proxy does not see its traffic) hashes the request and
the answer it sent and posts the two digests with ``Authorization: Bearer TOKEN``; the node
journals them like an answer it passed on (:meth:`provenance.attest.Attestor.record_digests`).
Each post is one record: the same digests posted twice are two records (a model answers the
same input the same way twice), and what a replay can attest was attested already.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from provenance.errors import ConfigError, ProvenanceError
from provenance.untrusted import UntrustedInputError, loads_json

MAX_ATTESTATION_BYTES = 4096
"""The largest sidecar request body accepted (two digests take 160 bytes)."""
MIN_TOKEN_LENGTH = 16
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
FIELDS = ("input_digest", "output_digest")


class AttestationRefused(ProvenanceError):
    """A sidecar request that is not two well-formed digests: a 400 with this reason."""


@dataclass(frozen=True, repr=False)
class Token:
    """The sidecar's bearer token (never printed: ``repr`` hides it)."""

    secret: bytes

    @classmethod
    def of(cls, text: str, *, source: str = "the token") -> Token:
        """The token in ``text`` (surrounding whitespace, such as a file's final newline,
        removed); ConfigError when it is shorter than :data:`MIN_TOKEN_LENGTH` characters or
        holds whitespace or control characters (it travels in an HTTP header)."""
        secret = text.strip()
        if len(secret) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"{source} has {len(secret)} characters; a sidecar token needs at least "
                f"{MIN_TOKEN_LENGTH} (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
            )
        if not secret.isascii() or not secret.isprintable() or any(c.isspace() for c in secret):
            raise ConfigError(f"{source} must be printable ASCII without spaces")
        return cls(secret.encode("ascii"))

    def admits(self, authorization: bytes | None) -> bool:
        """Whether an ``Authorization`` header value is ``Bearer <this token>`` (the token
        compared in constant time)."""
        if authorization is None:
            return False
        scheme, _, given = authorization.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(given.strip(), self.secret)

    def __repr__(self) -> str:
        return "Token(***)"


def parse_digest_field(value: object, name: str) -> bytes:
    """The 32 bytes of ``sha256:<64 lower-case hex digits>``; AttestationRefused otherwise."""
    if not isinstance(value, str):
        raise AttestationRefused(
            f"{name} must be a string sha256:<64 hex digits>, not {type(value).__name__}"
        )
    if not _DIGEST.fullmatch(value):
        raise AttestationRefused(
            f"{name} {value[:80]!r} is not of the form sha256:<64 lower-case hex digits>"
        )
    return bytes.fromhex(value[7:])


def parse_attestation(body: bytes) -> tuple[bytes, bytes]:
    """(input digest, output digest) of a sidecar request body: a JSON object with exactly
    ``input_digest`` and ``output_digest`` (bounded and depth-checked before it is decoded).
    AttestationRefused with the reason otherwise."""
    try:
        data = loads_json(body, what="the request body", max_bytes=MAX_ATTESTATION_BYTES)
    except UntrustedInputError as exc:
        raise AttestationRefused(str(exc)) from None
    if not isinstance(data, dict):
        raise AttestationRefused(
            "the request body must be a JSON object with input_digest and output_digest"
        )
    missing = [f for f in FIELDS if f not in data]
    if missing:
        raise AttestationRefused(f"{' and '.join(missing)} missing")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise AttestationRefused(f"unknown field(s): {', '.join(unknown)[:200]}")
    return (
        parse_digest_field(data["input_digest"], "input_digest"),
        parse_digest_field(data["output_digest"], "output_digest"),
    )


__all__ = [
    "MAX_ATTESTATION_BYTES",
    "MIN_TOKEN_LENGTH",
    "AttestationRefused",
    "Token",
    "parse_attestation",
    "parse_digest_field",
]
