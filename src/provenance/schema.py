"""The schema base every record model builds on: :class:`Frozen` (immutable, no unknown fields),
the :data:`Digest` and :data:`HexBytes` string types, and RFC 8785 canonical JSON (the bytes
that are hashed and signed).

Pure: no network, no chain.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

import rfc8785
from pydantic import BaseModel, ConfigDict, JsonValue, StringConstraints

from provenance.errors import CertificateError
from provenance.hashing import format_digest

Digest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
"""``sha256:<64 lower-case hex digits>``."""

HexBytes = Annotated[str, StringConstraints(pattern=r"^0x([0-9a-f]{2})*$")]


class Frozen(BaseModel):
    """Base of every schema model: immutable, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def canonical_json(value: BaseModel | JsonValue) -> bytes:
    """RFC 8785 (JCS) bytes of a model (``None`` fields omitted) or a JSON value."""
    data = (
        value.model_dump(mode="json", exclude_none=True) if isinstance(value, BaseModel) else value
    )
    try:
        return rfc8785.dumps(data)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CertificateError(f"not canonicalisable as RFC 8785 JSON: {exc}") from exc


def digest_of(value: BaseModel | JsonValue) -> str:
    """``sha256:`` of the canonical JSON."""
    return format_digest(hashlib.sha256(canonical_json(value)).digest())


__all__ = ["Digest", "Frozen", "HexBytes", "canonical_json", "digest_of"]
