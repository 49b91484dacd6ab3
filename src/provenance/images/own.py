"""Model images of your own: your Dockerfile, checked to hold the certified model.

For weights without a runtime in provenance's images (a PyTorch state dict, safetensors, npz,
a Hugging Face folder), or any model you serve your own way::

    FROM provenance/base:bookworm
    COPY model/ /srv/model/
    ...

    image = build_own_image(engine, Path("model"), Path("Dockerfile"), model_path="/srv/model")

The engine builds the Dockerfile (``context``: by default its folder) with the image's
provenance labels passed to the build (model digest, format, model path, and the certificate
digest when given), so the image id covers them whatever the Dockerfile labels. Then the files
at ``model_path`` inside the built image are copied out and hashed: an image whose files there
are not the model (say a ``RUN`` that changed them after the ``COPY``) is refused, and removed.

What this proves is that the image holds the certified files at the labelled path; what the
image runs is its Dockerfile's business. Trust in it comes from whoever binds the image to the
model (the registrant), not from the image.
"""

from __future__ import annotations

import contextlib
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import docker.errors
import requests

from provenance.errors import ImageError, IntegrityError
from provenance.manifest import manifest_of
from provenance.model_formats import UnsupportedModelFormat

from .build import served_format
from .engine import DockerEngine, LocalImage, _reason
from .labels import (
    LABEL_CERTIFICATE,
    LABEL_MODEL_DIGEST,
    LABEL_MODEL_FORMAT,
    LABEL_MODEL_PATH,
    MODEL_DIR,
)
from .serve import model_digest_in_image

if TYPE_CHECKING:
    from provenance.certificate import Certificate

UNDETECTED_FORMAT = "files"
"""The format label of an image of your own whose model files are in none of the known
formats (what certificates record for a model captured without detection)."""


def build_own_image(
    engine: DockerEngine,
    model: Path,
    dockerfile: Path,
    *,
    context: Path | None = None,
    model_path: str = MODEL_DIR,
    certificate: Certificate | None = None,
    tag: str | None = None,
) -> LocalImage:
    """Build ``dockerfile`` (context: ``context``, by default the Dockerfile's folder) as the
    image of the model at ``model``, whose files the Dockerfile puts at ``model_path`` (an
    absolute path in the image: the model's folder, or its one file); see the module docstring.

    ``certificate``: the model files must have its model digest (IntegrityError) and the image
    is labelled with its digest. ``tag``: by default ``provenance/model:<12 hex of the model
    digest>``. IntegrityError when the built image's files at ``model_path`` are not the model
    (the image is removed); ImageError when the build fails (its last message)."""
    if not PurePosixPath(model_path).is_absolute():
        raise ImageError(f"the model path in the image must be absolute, not {model_path}")
    if not dockerfile.is_file():
        raise ImageError(f"no Dockerfile at {dockerfile}")
    context = context or dockerfile.parent
    if not context.is_dir():
        raise ImageError(f"the build context {context} is not a folder")
    digest = manifest_of(model).root
    if certificate is not None and certificate.model.digest != digest:
        raise IntegrityError(
            f"{model} has model digest {digest}, the certificate names {certificate.model.digest}"
        )
    try:
        model_format = served_format(model, certificate).format.name
    except UnsupportedModelFormat:
        model_format = UNDETECTED_FORMAT
    labels = {
        LABEL_MODEL_DIGEST: digest,
        LABEL_MODEL_FORMAT: model_format,
        LABEL_MODEL_PATH: model_path,
    }
    if certificate is not None:
        labels[LABEL_CERTIFICATE] = certificate.digest_text
    tag = tag or f"provenance/model:{digest.removeprefix('sha256:')[:12]}"
    image_id = _build(engine, context, dockerfile, tag, labels)
    try:
        found = model_digest_in_image(engine, image_id, model_path)
        if found != digest:
            raise IntegrityError(
                f"the image built from {dockerfile.name} holds files at {model_path} with model "
                f"digest {found}, not the model's {digest}: refused"
            )
    except IntegrityError:
        with contextlib.suppress(docker.errors.DockerException, requests.RequestException):
            engine.client.images.remove(image_id, force=True)
        raise
    return engine.image(image_id)


def _build(
    engine: DockerEngine, context: Path, dockerfile: Path, tag: str, labels: dict[str, str]
) -> str:
    """Build with the SDK (it sends ``context`` as a tar, honouring its .dockerignore, and adds
    a Dockerfile from outside the context to it); the image id."""
    image_id: str | None = None
    with engine.calls(f"building {tag} from {dockerfile}"):
        events = engine.api.build(
            path=str(context),
            dockerfile=str(dockerfile.resolve()),
            tag=tag,
            labels=labels,
            rm=True,
            forcerm=True,
            pull=False,
            decode=True,
        )
        for event in events:
            if "error" in event:
                detail = str(event.get("errorDetail", {}).get("message") or event["error"])
                raise ImageError(
                    f"building {tag} from {dockerfile} failed: {_reason(Exception(detail.strip()))}"
                )
            aux = event.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = str(aux["ID"])
    return image_id or engine.image(tag).id
