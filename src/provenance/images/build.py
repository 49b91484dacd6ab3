"""Building a model image, and the record of where an image is.

:func:`build_model_image` writes a Dockerfile ``FROM`` a base image that has Python (see
:mod:`provenance.images.engine`), which copies the model's runtime packages (see
:mod:`provenance.images.packages`), the inference entrypoint
(:mod:`provenance.image_entrypoint`) and the model files, and labels the image with the model
digest (and, when built from a certificate, the certificate digest). The image runs offline:
predictions go from stdin to stdout. When a certificate is given, every copied package version
must equal the one its environment records.

**Where the image is recorded.** A certificate is content-addressed, so an image that names the
certificate cannot be named by it. Two ways, both verifiable:

- built inside the training run (``with track(...) as run``, after ``run.log_model``): the image
  carries the model digest; :func:`attach_image` adds the :class:`ImageRecord` (image id,
  archive CID, model digest) to the run as an attachment, so the certificate, and the chain
  through its digest, commits to the image id and the archive CID;
  :func:`image_record_of` reads it back, checked against the attachment digest;
- built after the certificate (``certificate=``): the image's labels name the certificate digest
  and model digest, but anyone can write labels, so they are no authority: the model's
  registrant binds the image on chain (:mod:`provenance.bound_image`, ``provenance image
  bind``: ``ModelRegistry.bindImage`` with the digest of the record, which says where the
  archive is), and verify and serve trust only that binding.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import io
import json
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

from pydantic import Field, ValidationError

from provenance.errors import CertificateError, ImageError, IntegrityError, StorageError
from provenance.hashing import format_digest
from provenance.manifest import manifest_of
from provenance.model_formats import (
    FORMATS,
    Detected,
    UnsupportedModelFormat,
    detect_format,
    format_named,
)
from provenance.schema import Digest, Frozen, canonical_json

from .archive import _MAX_MANIFEST
from .engine import BASE_IMAGE, TORCH_IMAGE, DockerEngine, LocalImage, _reason
from .labels import (
    ENTRYPOINT,
    LABEL_CERTIFICATE,
    LABEL_MODEL_DIGEST,
    LABEL_MODEL_FORMAT,
    LABEL_MODEL_PATH,
    LABEL_PACKAGES,
    LABEL_PYTHON,
    MODEL_DIR,
)
from .packages import _canonical, _check_copyable, _dist_files, distributions_for, pickle_globals

if TYPE_CHECKING:
    from provenance.certificate import Attachment, Certificate
    from provenance.storage.protocol import Storage

RECORD_MEDIA_TYPE = "application/vnd.provenance.image-record+json"
ATTACHMENT_NAME = "docker-image"


RUNTIME_MODULES: dict[str, tuple[str, ...]] = {
    "sklearn": ("numpy",),
    "onnxruntime": ("onnxruntime", "numpy"),
    "xgboost": ("xgboost", "numpy"),
    "lightgbm": ("lightgbm", "numpy"),
    "torch": (),
}
"""What each runtime of the entrypoint imports, copied with their requirements from this
environment (scikit-learn: and every module the pickle refers to). PyTorch is not copied: its
wheel brings gigabytes of CUDA libraries; :data:`TORCH_IMAGE` has Debian's CPU build."""

RUNTIME_BASES = {"torch": TORCH_IMAGE}
"""The base image of a runtime's model images, when not :data:`BASE_IMAGE`."""


def base_for(served: Detected) -> str:
    """The default base image of a model image serving ``served``."""
    return RUNTIME_BASES.get(served.format.runtime or "", BASE_IMAGE)


def served_format(model: Path, certificate: Certificate | None = None) -> Detected:
    """The format of the model at ``model`` and the entry its runtime loads (relative to the
    model folder, ``.`` for the folder itself; a file model's own name): what the
    certificate records (``model.format``) when it names a known format, else what the files
    are (:func:`provenance.model_formats.detect_format`; UnsupportedModelFormat names the
    supported ones). A certificate and files that disagree on the runtime: ImageError."""
    recorded = format_named(certificate.model.format) if certificate is not None else None
    try:
        detected = detect_format(model)
    except UnsupportedModelFormat:
        if recorded is None:
            raise
        return Detected(recorded, model.name if model.is_file() else ".")
    if recorded is None:
        return detected
    if recorded.runtime != detected.format.runtime:
        raise ImageError(
            f"the certificate records format {recorded.name}, {model} is in format "
            f"{detected.format.name}"
        )
    return Detected(recorded, detected.entry)


def _runtime_of(model: Path, served: Detected) -> str:
    runtime = served.format.runtime
    if runtime is None:
        raise ImageError(
            f"{model.name} is in format {served.format.name} ({served.format.title}): weights "
            "without the code that runs them; build an image of your own with --dockerfile PATH"
        )
    if runtime not in RUNTIME_MODULES:
        raise ImageError(
            f"no model image serves {served.format.title} (runtime {runtime}); they serve: "
            + ", ".join(f.title for f in FORMATS.values() if f.runtime in RUNTIME_MODULES)
        )
    return runtime


def dockerfile(
    base: str, python: str, entry: str, labels: Mapping[str, str], model_format: str = "pickle"
) -> str:
    """The generated Dockerfile (its context: ``packages/`` (the packages' folder as a path
    from the root, every folder with a fixed mtime, so the layer is the same byte for byte
    whenever the packages are), ``app/`` and ``model/`` (the entrypoint and the model,
    likewise)). Packages come first, so models with the same packages share that layer, in the
    engine and in IPFS. ``entry``: what the runtime loads, relative to MODEL_DIR (``.``: the
    folder); ``--format`` is passed for every format but the entrypoint's default, pickle."""
    label_lines = "".join(
        f"LABEL {json.dumps(k)}={json.dumps(v)}\n" for k, v in sorted(labels.items())
    )
    path = MODEL_DIR if entry == "." else f"{MODEL_DIR}/{entry}"
    command = ["python3", "-I", ENTRYPOINT, "--model", path]
    if model_format != "pickle":
        command += ["--format", model_format]
    return (
        f"FROM {base}\n"
        f"COPY packages/ /\n"
        "COPY app/ /\n"
        "COPY model/ /\n"
        f"{label_lines}"
        "USER 65534:65534\n"
        f"ENTRYPOINT {json.dumps(command)}\n"
    )


def _entrypoint_source() -> Path:
    from provenance import image_entrypoint

    return Path(str(image_entrypoint.__file__))


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _check_versions(
    dists: Mapping[str, metadata.Distribution], certificate: Certificate | None
) -> None:
    environment = certificate.environment if certificate is not None else None
    if environment is None or not environment.packages:
        return
    recorded = {_canonical(p.name): p.version for p in environment.packages}
    for key, dist in dists.items():
        want = recorded.get(key)
        if want is not None and want != dist.version:
            raise ImageError(
                f"the certificate records {dist.metadata['Name']} {want}, this environment has "
                f"{dist.version}: build the image where the model was trained"
            )


def build_model_image(
    engine: DockerEngine,
    model: Path,
    *,
    certificate: Certificate | None = None,
    tag: str | None = None,
    base: str | None = None,
    name: str | None = None,
    modules: Iterable[str] | None = None,
    tests: bool = False,
) -> LocalImage:
    """Build an image that serves the model at ``model`` (a file, or a folder: every file of
    it is copied) with the entrypoint's runtime for its format (:func:`served_format`). See the
    module docstring.

    ``certificate``: the model's certificate; the model files must have its model digest
    (IntegrityError), the copied package versions must be the recorded ones (ImageError), and
    the image is labelled with its digest. ``base``: by default :func:`base_for` the format
    (:data:`TORCH_IMAGE` for TorchScript, else :data:`BASE_IMAGE`). ``modules``: more modules
    the model needs (for a pickle: when scanning it is not enough). ``tests``: copy the
    packages' test suites too (by default their ``tests`` folders, about half of numpy, scipy
    and scikit-learn, are left out). ``tag``: by default
    ``provenance/model:<12 hex of the model digest>``. Weights without a runtime (a state dict,
    safetensors, npz, a Hugging Face folder): ImageError; see
    :func:`provenance.images.own.build_own_image`.
    """
    digest = manifest_of(model).root
    if certificate is not None and certificate.model.digest != digest:
        raise IntegrityError(
            f"{model} has model digest {digest}, the certificate names {certificate.model.digest}"
        )
    served = served_format(model, certificate)
    runtime = _runtime_of(model, served)
    needed = set(RUNTIME_MODULES[runtime]) | set(modules or ())
    if runtime == "sklearn":
        needed |= {m for m, _ in pickle_globals(model if model.is_file() else model / served.entry)}
    dists = distributions_for(needed)
    _check_versions(dists, certificate)
    compiled = [key for key, dist in dists.items() if _check_copyable(dist)]
    base = base or base_for(served)
    base_image = engine.image(base)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    python = base_image.labels.get(LABEL_PYTHON, here)
    if compiled and python != here:
        raise ImageError(
            f"{', '.join(compiled)} were installed for Python {here}, the base image {base} "
            f"has Python {python}"
        )
    labels = {
        "org.opencontainers.image.title": name
        or (certificate.model_name if certificate is not None else model.stem),
        LABEL_MODEL_DIGEST: digest,
        LABEL_MODEL_FORMAT: served.format.name,
        LABEL_MODEL_PATH: MODEL_DIR,
        LABEL_PACKAGES: " ".join(f"{d.metadata['Name']}=={d.version}" for d in dists.values()),
        LABEL_PYTHON: python,
    }
    if certificate is not None:
        labels[LABEL_CERTIFICATE] = certificate.digest_text
    tag = tag or f"provenance/model:{digest.removeprefix('sha256:')[:12]}"
    text = dockerfile(base, python, served.entry, labels, served.format.name)
    with tempfile.TemporaryDirectory(prefix="provenance-image-") as scratch:
        context = Path(scratch) / "context.tar"
        with tarfile.open(context, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "Dockerfile", text.encode())
            app = PurePosixPath("app", ENTRYPOINT.lstrip("/"))
            for folder in reversed([str(p) for p in app.parents if str(p) != "."]):
                _add_folder(tar, folder)
            entrypoint = tar.gettarinfo(_entrypoint_source(), str(app))
            entrypoint.mtime = 0
            with open(_entrypoint_source(), "rb") as f:
                tar.addfile(_root_owned(entrypoint), f)
            place = PurePosixPath("model", MODEL_DIR.lstrip("/"))
            for folder in reversed([str(p) for p in place.parents if str(p) != "."]):
                _add_folder(tar, folder)
            if model.is_dir():
                tar.add(model, str(place), filter=_root_owned)
            else:
                _add_folder(tar, str(place))
                tar.add(model, str(place / model.name), filter=_root_owned)
            files: dict[str, Path] = {}
            for dist in dists.values():
                for rel, path in _dist_files(dist, tests):
                    files.setdefault(rel, path)
            # Folders with a fixed mtime: otherwise the engine makes them at build time and the
            # package layer differs between uncached builds, so it would not deduplicate in IPFS.
            packages = PurePosixPath("packages", _SITE.format(python=python).lstrip("/"))
            for folder in sorted(
                {str(packages / p) for rel in files for p in PurePosixPath(rel).parents}
                | {str(p) for p in packages.parents if str(p) != "."}
            ):
                _add_folder(tar, folder)
            for rel, path in files.items():
                tar.add(path, str(packages / rel), recursive=False, filter=_root_owned)
        image_id = _build(engine, context, tag)
    image = engine.image(image_id)
    return LocalImage(id=image.id, tags=(tag,), labels=image.labels)


_SITE = "/usr/local/lib/python{python}/dist-packages"
"""Where the packages of a model image go (the base's python3 looks there)."""


def _add_folder(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    tar.addfile(_root_owned(info))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def _build(engine: DockerEngine, context: Path, tag: str) -> str:
    image_id: str | None = None
    with engine.calls(f"building {tag}"), open(context, "rb") as body:
        events = engine.api.build(
            fileobj=body,
            custom_context=True,
            tag=tag,
            rm=True,
            forcerm=True,
            pull=False,
            network_mode="none",
            decode=True,
        )
        for event in events:
            if "error" in event:
                detail = str(event.get("errorDetail", {}).get("message") or event["error"])
                raise ImageError(f"building {tag} failed: {_reason(Exception(detail.strip()))}")
            aux = event.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = str(aux["ID"])
    return image_id or tag


# -- records ------------------------------------------------------------------------------------


class ImageRecord(Frozen):
    """Where an image is and what it is: the image id (``sha256:`` of its config), the CID and
    size of its OCI image layout (records made before layouts: of its ``docker save`` archive),
    and what its labels say it holds."""

    image_id: Digest
    archive: str
    size: int = Field(ge=0)
    model_digest: Digest | None = None
    certificate: Digest | None = None

    def to_bytes(self) -> bytes:
        """RFC 8785 canonical JSON (what an attachment digests)."""
        return canonical_json(self)


class Attaching(Protocol):
    """What :func:`attach_image` needs of a run (:class:`provenance.capture.Run` has it)."""

    def attach(
        self, name: str, data: bytes, media_type: str = "application/octet-stream"
    ) -> Attachment: ...


def attach_image(run: Attaching, record: ImageRecord) -> Attachment:
    """Record the image in the run's certificate: an attachment holding the record (stored with
    the run's storage, when it has one), whose digest the certificate covers."""
    return run.attach(ATTACHMENT_NAME, record.to_bytes(), RECORD_MEDIA_TYPE)


def image_record_of(certificate: Certificate, storage: Storage) -> ImageRecord:
    """The image record attached to ``certificate``, fetched from ``storage`` and checked
    against the attachment digest and the certificate's model digest."""
    found = [a for a in certificate.attachments if a.media_type == RECORD_MEDIA_TYPE]
    if not found:
        raise CertificateError("the certificate has no image record attached")
    attachment = found[-1]
    if attachment.url is None or not attachment.url.startswith("ipfs://"):
        raise StorageError("the certificate's image record was not stored in IPFS")
    data = storage.get_bytes(attachment.url.removeprefix("ipfs://"), max_size=_MAX_MANIFEST)
    if format_digest(hashlib.sha256(data).digest()) != attachment.digest:
        raise IntegrityError(
            f"the image record at {attachment.url} does not match its digest {attachment.digest}"
        )
    try:
        record = ImageRecord.model_validate_json(data)
    except ValidationError as exc:
        raise CertificateError(f"the image record at {attachment.url} is malformed") from exc
    if record.model_digest is not None and record.model_digest != certificate.model.digest:
        raise IntegrityError(
            f"the image record names model digest {record.model_digest}, the certificate "
            f"{certificate.model.digest}"
        )
    return record
