"""A model's anchoring on chain and the checks of one model: registered, status, certificate
(:mod:`provenance.verify.certificate`), registrant and trust, training data
(:mod:`provenance.verify.data`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from eth_utils.address import to_checksum_address

from provenance.chain.types import Status
from provenance.errors import ChainError, ConfigError, IntegrityError, PolicyError
from provenance.verify.certificate import (
    anchored_values_checks,
    certificate_checks,
    signature_check,
)
from provenance.verify.data import data_checks
from provenance.verify.report import Check, CheckName, Checks, digest_text, subject_of

if TYPE_CHECKING:
    from provenance.certificate import Certificate, SignedCertificate
    from provenance.chain.index import LineageIndex
    from provenance.verify.context import Context, RegistryView


@dataclass(frozen=True)
class Anchor:
    """What the chain says about a registered model."""

    id: bytes
    registrant: str
    certificate_digest: bytes
    model_digest: bytes
    data_commitment: bytes
    block: int
    transaction: str
    status: Status
    revoked_parent_acknowledged: bool


def _derived_id(body: Certificate, registrant: str | None) -> bytes | None:
    """The model id a certificate body derives when ``registrant`` registers it (None: by its
    creator; None back when the body names no creator). The id binds its registrant, so this
    is the one place verification derives an id from a certificate."""
    if registrant is not None:
        return body.model_id_for(registrant)
    return None if body.creator is None else body.model_id


def certificate_model_id(body: Certificate, ctx: Context) -> bytes | None:
    """The id under the certificate's creator; for a body naming no creator, its first
    registration found by certificate digest; None when there is none."""
    derived = _derived_id(body, None)
    if derived is not None:
        return derived
    found = find_models(ctx.registry, certificate_digest=body.digest, index=ctx.index)
    return found[0] if found else None


def anchor_of(registry: RegistryView, model_id: bytes) -> Anchor | None:
    """The chain's facts about ``model_id``; None when it is not registered."""
    status = registry.status(model_id)
    if status is Status.NONE:
        return None
    record = registry.record(model_id)
    event = registry.registration_event(model_id)
    if event is None:
        raise ChainError(
            f"model 0x{model_id.hex()} is registered in {registry.address} but its "
            "ModelRegistered event was not found (is the registry's first block right?)"
        )
    a = event.args
    return Anchor(
        id=model_id,
        registrant=record.registrant,
        certificate_digest=bytes(a["certificateDigest"]),
        model_digest=bytes(a["modelDigest"]),
        data_commitment=bytes(a["dataCommitment"]),
        block=event.block,
        transaction=event.transaction,
        status=record.status,
        revoked_parent_acknowledged=record.revoked_parent_acknowledged,
    )


def find_models(
    registry: RegistryView,
    *,
    model_digest: bytes | None = None,
    certificate_digest: bytes | None = None,
    index: LineageIndex | None = None,
) -> list[bytes]:
    """The ids registered with this model digest (or certificate digest), in registration
    order: from a synced :class:`~provenance.chain.index.LineageIndex` when given (it is synced
    first), else by reading the registry's ModelRegistered events."""
    if (model_digest is None) == (certificate_digest is None):
        raise ConfigError("find_models needs exactly one of model_digest, certificate_digest")
    if index is not None:
        from provenance.chain.registry import Registry

        if isinstance(registry, Registry):
            index.sync(registry)
        found = (
            index.by_model_digest(model_digest)
            if model_digest is not None
            else index.by_certificate(certificate_digest or b"")
        )

        def block(model_id: bytes) -> int:
            entry = index.get(model_id)
            return 0 if entry is None else entry.block

        return sorted(found, key=lambda m: (block(m), m))
    key, wanted = (
        ("modelDigest", model_digest)
        if model_digest is not None
        else ("certificateDigest", certificate_digest)
    )
    return [
        bytes(e.args["id"])
        for e in registry.events()
        if e.name == "ModelRegistered" and bytes(e.args[key]) == wanted
    ]


def revocation(registry: RegistryView, anchor: Anchor) -> tuple[str, int | None]:
    """Who revoked the model, when and why; and the block (None when the event is missing)."""
    for event in registry.events(anchor.block):
        if event.name == "ModelRevoked" and bytes(event.args["id"]) == anchor.id:
            reason = digest_text(bytes(event.args["reasonDigest"]))
            by = to_checksum_address(event.args["revokedBy"])
            return f"revoked by {by} in block {event.block} (reason {reason})", event.block
    return "revoked", None


def status_check(c: Checks, anchor: Anchor, ctx: Context) -> None:
    if anchor.status is Status.REVOKED:
        c.fail(CheckName.STATUS, revocation(ctx.registry, anchor)[0], PolicyError)
    else:
        c.ok(CheckName.STATUS, "active (not revoked)")


def registrant_checks(
    c: Checks, anchor: Anchor, body: Certificate | None, ctx: Context, *, strict_trust: bool
) -> None:
    registrant = anchor.registrant
    policy = ctx.policy
    if body is not None:
        if body.creator is None:
            c.warn(
                CheckName.REGISTRANT,
                f"the certificate names no creator; only the registrant {registrant} vouches for it",
            )
        elif to_checksum_address(body.creator) != registrant:
            c.fail(
                CheckName.REGISTRANT,
                f"registered by {registrant}, but the certificate names creator {body.creator}",
                PolicyError,
            )
        else:
            c.ok(CheckName.REGISTRANT, f"registered by its creator {registrant}")
        if policy.creators and (
            body.creator is None or to_checksum_address(body.creator) not in policy.creators
        ):
            line = f"the certificate's creator {body.creator} is not a trusted creator"
            if strict_trust:
                c.fail(CheckName.TRUSTED, line, PolicyError)
            else:
                c.warn(CheckName.TRUSTED, line)
            return
    if policy.registrants is not None:
        if registrant in policy.registrants:
            c.ok(CheckName.TRUSTED, f"registrant {registrant} is in the trust list")
        elif strict_trust:
            c.fail(
                CheckName.TRUSTED, f"registrant {registrant} is not in the trust list", PolicyError
            )
        else:
            c.warn(CheckName.TRUSTED, f"registrant {registrant} is not in the trust list")
        return
    if ctx.registry.is_open():
        c.warn(CheckName.TRUSTED, "open registry: registrant not vouched for")
    elif ctx.registry.has_role("registrant", registrant):
        c.ok(
            CheckName.TRUSTED,
            f"registrant {registrant} holds REGISTRANT_ROLE in an allowlisted registry",
        )
    elif strict_trust:
        c.fail(
            CheckName.TRUSTED,
            f"registrant {registrant} no longer holds REGISTRANT_ROLE in the allowlisted registry",
            PolicyError,
        )
    else:
        c.warn(CheckName.TRUSTED, f"registrant {registrant} no longer holds REGISTRANT_ROLE")


def model_checks(
    model_id: bytes,
    ctx: Context,
    *,
    role: str | None = None,
    envelope: SignedCertificate | None = None,
    ancestor: bool = False,
    signature: bool = True,
) -> tuple[list[Check], Anchor | None, Certificate | None]:
    """The checks of one model (an ancestor's: no data, trust a warning)."""
    c = Checks(subject_of(model_id, role))
    anchor = anchor_of(ctx.registry, model_id)
    if anchor is None:
        c.fail(
            CheckName.REGISTERED,
            f"model 0x{model_id.hex()} is not registered in the registry {ctx.registry.address}",
            IntegrityError,
        )
        return c.items, None, None
    c.ok(
        CheckName.REGISTERED,
        f"registered by {anchor.registrant} in block {anchor.block} (tx {anchor.transaction})",
    )
    status_check(c, anchor, ctx)
    body = certificate_checks(c, anchor, ctx)
    if body is not None:
        anchored_values_checks(c, anchor, body, ctx)
        if signature:
            signature_check(c, anchor, body, envelope)
    registrant_checks(c, anchor, body, ctx, strict_trust=not ancestor)
    if body is not None and not ancestor:
        c.items.extend(data_checks(body, ctx))
    return c.items, anchor, body


__all__ = [
    "Anchor",
    "anchor_of",
    "find_models",
    "model_checks",
    "registrant_checks",
    "revocation",
    "status_check",
]
