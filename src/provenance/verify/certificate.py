"""The checks of a model's certificate: fetched from IPFS by the digest on chain, that digest,
schema v1 in canonical form, the values the chain anchored, and the creator's signature."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from provenance.certificate import (
    Certificate,
    SignedCertificate,
    parse_certificate,
    raw_block_cid,
    verify_certificate_signature,
)
from provenance.errors import (
    CertificateError,
    IntegrityError,
    ProvenanceError,
    SignatureError,
    StorageError,
)
from provenance.verify.context import fetch_bytes
from provenance.verify.report import CheckName, Checks, digest_text, model_format_text

if TYPE_CHECKING:
    from provenance.verify.context import Context
    from provenance.verify.registration import Anchor


def certificate_checks(c: Checks, anchor: Anchor, ctx: Context) -> Certificate | None:
    """Fetch, digest, schema. The body (None when a check failed)."""
    digest = digest_text(anchor.certificate_digest)
    cid = raw_block_cid(anchor.certificate_digest)
    try:
        data = fetch_bytes(
            ctx.storage,
            cid,
            timeout=ctx.policy.fetch_timeout,
            max_size=ctx.policy.max_certificate_bytes,
        )
    except IntegrityError as exc:
        c.fail(
            CheckName.CERTIFICATE_DIGEST,
            f"the block {cid} from IPFS is not its content: {exc}",
            IntegrityError,
        )
        return None
    except ProvenanceError as exc:
        c.fail(
            CheckName.CERTIFICATE_FETCHED,
            f"certificate {digest} (CID {cid}) is not retrievable from IPFS at "
            f"{ctx.storage.location}: {exc}",
            StorageError,
        )
        return None
    c.ok(
        CheckName.CERTIFICATE_FETCHED,
        f"certificate {cid} fetched from {ctx.storage.location} ({len(data)} bytes)",
    )
    found = hashlib.sha256(data).digest()
    if found != anchor.certificate_digest:
        c.fail(
            CheckName.CERTIFICATE_DIGEST,
            f"the certificate bytes hash to {digest_text(found)}, the chain anchors {digest}",
            IntegrityError,
        )
        return None
    c.ok(
        CheckName.CERTIFICATE_DIGEST, f"the certificate bytes hash to the anchored digest {digest}"
    )
    try:
        parsed = parse_certificate(data, f"certificate {cid}")
    except CertificateError as exc:
        c.fail(CheckName.CERTIFICATE_SCHEMA, str(exc), CertificateError)
        return None
    if isinstance(parsed, SignedCertificate):
        c.fail(
            CheckName.CERTIFICATE_SCHEMA,
            "the anchored bytes are a signed envelope, not a certificate body",
            CertificateError,
        )
        return None
    if parsed.canonical_bytes() != data:
        c.fail(
            CheckName.CERTIFICATE_SCHEMA,
            "the anchored bytes are not the canonical (RFC 8785) form of the certificate they "
            f"hold, whose digest is {parsed.digest_text}",
            CertificateError,
        )
        return None
    c.ok(
        CheckName.CERTIFICATE_SCHEMA,
        f"schema v1 certificate of {parsed.model_name!r}, canonical form; model: "
        + model_format_text(parsed.model),
    )
    return parsed


def anchored_values_checks(c: Checks, anchor: Anchor, body: Certificate, ctx: Context) -> None:
    """The certificate states what the chain anchored: model digest, data commitment, parents
    (the contract cannot check this: anyone can register a genuine certificate's digest with
    another model digest)."""
    model = digest_text(anchor.model_digest)
    if body.model.digest != model:
        c.fail(
            CheckName.MODEL_DIGEST,
            f"the certificate's model digest {body.model.digest} is not the anchored {model}",
            IntegrityError,
        )
    else:
        c.ok(CheckName.MODEL_DIGEST, f"the certificate's model digest is the anchored {model}")
    data = digest_text(anchor.data_commitment)
    if body.data.commitment != data:
        c.fail(
            CheckName.DATA_COMMITMENT,
            f"the certificate's data commitment {body.data.commitment} is not the anchored {data}",
            IntegrityError,
        )
    else:
        c.ok(CheckName.DATA_COMMITMENT, f"the certificate's data commitment is the anchored {data}")
    on_chain: list[tuple[bytes, str]] = sorted(
        (p.id, p.relation.label) for p in ctx.registry.parents(anchor.id)
    )
    stated: list[tuple[bytes, str]] = sorted(
        (bytes.fromhex(p.id[2:]), str(p.relation)) for p in body.parents
    )
    if on_chain != stated:

        def show(items: list[tuple[bytes, str]]) -> str:
            return ", ".join(f"0x{i.hex()}:{r}" for i, r in items) or "none"

        c.fail(
            CheckName.PARENTS,
            f"the certificate names parents {show(stated)}, the chain links {show(on_chain)}",
            IntegrityError,
        )
    elif stated:
        c.ok(CheckName.PARENTS, f"the certificate's {len(stated)} parent link(s) are the chain's")
    else:
        c.ok(CheckName.PARENTS, "a root model: no parents in the certificate or on chain")


def signature_check(
    c: Checks, anchor: Anchor, body: Certificate, envelope: SignedCertificate | None
) -> None:
    """The creator's EIP-712 signature, when the signed envelope is at hand. The chain anchors
    the body's digest only, so from a model id alone this is a warning, and the registration
    by the registrant stands for the creator (the ``registrant`` check)."""
    if envelope is not None and envelope.certificate.digest != anchor.certificate_digest:
        c.fail(
            CheckName.SIGNATURE,
            f"the signed certificate given ({envelope.certificate.digest_text}) is not the "
            f"registered one ({digest_text(anchor.certificate_digest)})",
            IntegrityError,
        )
        return
    if body.creator is None:
        c.skip(CheckName.SIGNATURE, "the certificate is unsigned: it names no creator")
        return
    if envelope is None:
        c.warn(
            CheckName.SIGNATURE,
            "not checked: the chain anchors the certificate body only, not its signed "
            "envelope (verify the signed certificate file to check it); the registration "
            "by the registrant stands in for it",
        )
        return
    envelope_signature_check(c, envelope)


def envelope_signature_check(c: Checks, envelope: SignedCertificate) -> None:
    try:
        verify_certificate_signature(envelope)
    except SignatureError as exc:
        c.fail(CheckName.SIGNATURE, str(exc), SignatureError)
        return
    c.ok(CheckName.SIGNATURE, f"EIP-712 signature by the creator {envelope.certificate.creator}")


__all__ = [
    "anchored_values_checks",
    "certificate_checks",
    "envelope_signature_check",
    "signature_check",
]
