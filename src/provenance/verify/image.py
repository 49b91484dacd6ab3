"""The checks of a Docker image: it is a model image (labelled with a model digest), the model
files inside hash to that digest, and the image is the certified one (its labels name the
registered certificate, or the certificate's image record names it)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from provenance.errors import ImageError, IntegrityError, ProvenanceError
from provenance.verify.context import bounded
from provenance.verify.report import CheckName, Checks, digest_text

if TYPE_CHECKING:
    from provenance.certificate import Certificate
    from provenance.images import DockerEngine, LocalImage
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
    elif certificate_label and anchor is not None:
        c.ok(
            CheckName.IMAGE_CERTIFIED,
            f"labelled with the registered certificate {certificate_label}",
        )
    elif body is not None and any(a.media_type == RECORD_MEDIA_TYPE for a in body.attachments):
        try:
            with bounded(ctx.storage, ctx.fetch_timeout) as limited:
                record = image_record_of(body, limited)
        except ProvenanceError as exc:
            c.fail(CheckName.IMAGE_CERTIFIED, f"the certificate's image record: {exc}", type(exc))
        else:
            if record.image_id == found.id:
                c.ok(
                    CheckName.IMAGE_CERTIFIED,
                    f"the certificate's image record names image {found.id}",
                )
            else:
                c.fail(
                    CheckName.IMAGE_CERTIFIED,
                    f"the certificate's image record names image {record.image_id}, not {found.id}",
                    IntegrityError,
                )
    else:
        c.warn(
            CheckName.IMAGE_CERTIFIED,
            "neither the image's labels nor the certificate name this image: only its model "
            "files are certified",
        )


__all__ = ["image_content_checks", "image_label_checks"]
