"""The checks of a Docker image: it is a model image (labelled with a model digest), the model
files inside hash to that digest, and the image is the certified one: the certificate's image
record names it, or the model's registrant bound it on chain (:mod:`provenance.bound_image`).
Labels naming the certificate are no authority (anyone can build such an image): an image
that only its labels tie to the model is reported unbound.

For a model id, :func:`bound_image_checks` checks the image bound to it, if any: the record
from IPFS hashes to the digest on chain and names the bound image and the model's digest, its
OCI layout holds that image id, and (with a Docker engine) the model files inside the image
have the model digest."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from provenance.errors import ImageError, IntegrityError, ProvenanceError
from provenance.verify.context import bounded
from provenance.verify.report import CheckName, Checks, digest_text

if TYPE_CHECKING:
    from provenance.certificate import Certificate
    from provenance.chain.types import ImageBinding
    from provenance.images import DockerEngine, ImageRecord, LocalImage
    from provenance.verify.context import Context
    from provenance.verify.registration import Anchor

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def image_label_checks(
    c: Checks, image: str, engine: DockerEngine
) -> tuple[LocalImage, str, str | None] | None:
    """``image``: found, and labelled as a model image. (image, model digest label,
    certificate label) or None."""
    from provenance.images import LABEL_CERTIFICATE, LABEL_MODEL_DIGEST

    try:
        found = engine.image(image)
    except ImageError as exc:
        c.fail(CheckName.IMAGE, str(exc), ImageError)
        return None
    label = found.labels.get(LABEL_MODEL_DIGEST)
    certificate_label = found.labels.get(LABEL_CERTIFICATE)
    if not label or not _DIGEST.fullmatch(label):
        c.fail(
            CheckName.IMAGE,
            f"image {found.id} has no {LABEL_MODEL_DIGEST} label: not a model image",
            ImageError,
        )
        return None
    c.ok(CheckName.IMAGE, f"image {found.id} is labelled model {label}")
    if certificate_label and not _DIGEST.fullmatch(certificate_label):
        certificate_label = None
    return found, label, certificate_label


def image_content_checks(
    c: Checks,
    found: LocalImage,
    label: str,
    certificate_label: str | None,
    anchor: Anchor | None,
    body: Certificate | None,
    engine: DockerEngine,
    ctx: Context,
) -> None:
    """``image-model`` and ``image-certified``."""
    from provenance.images import RECORD_MEDIA_TYPE, image_record_of, verify_model_image

    try:
        verify_model_image(engine, found.id, label)
    except IntegrityError as exc:
        c.fail(CheckName.IMAGE_MODEL, str(exc), IntegrityError)
    else:
        c.ok(CheckName.IMAGE_MODEL, f"the model files inside the image hash to {label}")
    anchored_model = digest_text(anchor.model_digest) if anchor else None
    if anchored_model is not None and anchored_model != label:
        c.fail(
            CheckName.IMAGE_CERTIFIED,
            f"the image holds model {label}, the registered model is {anchored_model}",
            IntegrityError,
        )
        return
    attached: str | None = None  # why the certificate's image record does not name it
    if body is not None and any(a.media_type == RECORD_MEDIA_TYPE for a in body.attachments):
        try:
            with bounded(ctx.storage, ctx.fetch_timeout) as limited:
                record = image_record_of(body, limited)
        except ProvenanceError as exc:
            c.fail(CheckName.IMAGE_CERTIFIED, f"the certificate's image record: {exc}", type(exc))
            return
        if record.image_id == found.id:
            c.ok(
                CheckName.IMAGE_CERTIFIED, f"the certificate's image record names image {found.id}"
            )
            return
        attached = f"the certificate's image record names image {record.image_id}, not {found.id}"
    binding = ctx.registry.image_binding(anchor.id) if anchor is not None else None
    if anchor is not None and binding is not None:
        try:
            bound = _bound_record(binding, ctx, anchored_model or label)
        except ProvenanceError as exc:
            c.fail(CheckName.IMAGE_CERTIFIED, f"the image bound on chain: {exc}", type(exc))
            return
        if bound.image_id == found.id:
            c.ok(CheckName.IMAGE_CERTIFIED, _bound_line(found.id, anchor))
            return
        if attached is None:
            c.fail(
                CheckName.IMAGE_CERTIFIED,
                f"image {found.id} is not the image bound to model 0x{anchor.id.hex()}: its "
                f"registrant {anchor.registrant} bound image {bound.image_id}",
                IntegrityError,
            )
            return
    if attached is not None:
        c.fail(CheckName.IMAGE_CERTIFIED, attached, IntegrityError)
    elif certificate_label and anchor is not None:
        c.fail(
            CheckName.IMAGE_CERTIFIED,
            f"image {found.id} is unbound: its labels name certificate {certificate_label}, but "
            f"the registrant {anchor.registrant} bound no image to model 0x{anchor.id.hex()} "
            "and the certificate records none; labels are no authority (anyone can build such "
            "an image), so it is not trusted",
            IntegrityError,
        )
    else:
        c.warn(
            CheckName.IMAGE_CERTIFIED,
            "neither the certificate nor a binding on chain names this image: only its model "
            "files are certified",
        )


def _bound_record(binding: ImageBinding, ctx: Context, model_digest: str) -> ImageRecord:
    from provenance.bound_image import fetch_bound_record

    with bounded(ctx.storage, ctx.fetch_timeout) as limited:
        return fetch_bound_record(binding, limited, model_digest)


def _bound_line(image_id: str, anchor: Anchor) -> str:
    return (
        f"image {image_id} is bound to model 0x{anchor.id.hex()} by its registrant "
        f"{anchor.registrant} on chain"
    )


def bound_image_checks(
    c: Checks, anchor: Anchor, engine: DockerEngine | None, ctx: Context
) -> None:
    """``image`` and ``image-model`` of a model id: the image its registrant bound to it, if
    any (skipped when none). Without a Docker engine the model files inside the image are not
    read (``image-model`` skipped, saying so); with one, an image the engine lacks is pulled
    from IPFS by its record (checked against the image id before it is loaded)."""
    from provenance.bound_image import check_record_layout
    from provenance.certificate import raw_block_cid

    binding = ctx.registry.image_binding(anchor.id)
    if binding is None:
        c.skip(CheckName.IMAGE, f"no image is bound to model 0x{anchor.id.hex()} on chain")
        return
    model_digest = digest_text(anchor.model_digest)
    try:
        record = _bound_record(binding, ctx, model_digest)
        with bounded(ctx.storage, ctx.fetch_timeout) as limited:
            check_record_layout(limited, record)
    except ProvenanceError as exc:
        c.fail(CheckName.IMAGE, f"the image bound on chain: {exc}", type(exc))
        return
    c.ok(
        CheckName.IMAGE,
        f"{_bound_line(record.image_id, anchor)} (record {raw_block_cid(binding.record_digest)}); "
        f"its layout {record.archive} holds that image",
    )
    if engine is None:
        c.skip(
            CheckName.IMAGE_MODEL,
            f"no Docker engine: the model files inside image {record.image_id} were not read",
        )
        return
    from provenance.images import pull_from_ipfs, verify_model_image

    try:
        if not engine.has(record.image_id):
            with bounded(ctx.storage, ctx.fetch_timeout) as limited:
                pull_from_ipfs(engine, limited, record.archive, record.image_id)
        verify_model_image(engine, record.image_id, model_digest)
    except ProvenanceError as exc:
        c.fail(CheckName.IMAGE_MODEL, str(exc), type(exc))
    else:
        c.ok(CheckName.IMAGE_MODEL, f"the model files inside the image hash to {model_digest}")


__all__ = ["bound_image_checks", "image_content_checks", "image_label_checks"]
