"""Docker images of models, moved through IPFS and checked by image id.

The only module that talks to Docker (through the Docker SDK for Python)::

    with DockerEngine(stack.docker_host()) as engine:
        ensure_base_image(engine, Path(".tools/images/base-bookworm.tar"))
        built = build_model_image(engine, run.output_dir / "model.pkl")
        record = push_to_ipfs(engine, built.id, storage)     # record.archive: the CID
        attach_image(run, record)                             # inside `with track(...)`
        ...
        pulled = pull_from_ipfs(engine, storage, record.archive, record.image_id)
        run_prediction(engine, pulled.id, [[5.1, 3.5, 1.4, 0.2]])

**Model images.** :func:`build_model_image` writes a Dockerfile ``FROM`` a base image that has
Python (by default :data:`BASE_IMAGE`, Debian bookworm's python3, made by
``scripts/base-image.sh`` and loaded by :func:`ensure_base_image`), which copies the model's
runtime packages, the inference entrypoint (:mod:`provenance.image_entrypoint`) and the model
files, and labels the image with the model digest (and, when built from a certificate, the
certificate digest). The image runs offline: predictions go from stdin to stdout.

**Which packages.** A pickle only loads reliably under the library versions that wrote it, and
Debian's scikit-learn is not the one the model was trained with. So the packages are not
installed from anywhere: the distributions the pickle refers to (its global references, mapped
to installed distributions, with their requirements) are copied, file by file as their
``RECORD`` lists them (test suites left out), from the environment that trained the model into
the image's ``/usr/local/lib/python3.X/dist-packages``. They must come from manylinux or
pure-Python wheels (no host libraries) and the base image must have the same Python minor
version (its ``provenance.python`` label). When a certificate is given, every copied version must equal the
one its environment records. No network is needed and the versions are exact by construction.

**Through IPFS.** :func:`push_to_ipfs` streams ``docker save`` of the image (saved by id, so
the archive carries no tags and one image has one archive) into the storage in constant memory
and returns an :class:`ImageRecord`: the image id (the SHA-256 of its config, which names every
layer by digest) and the archive's CID. :func:`pull_from_ipfs` streams the archive back (every
block checked against the CID by the storage) into ``docker load`` through a filter that hashes
the archive's files and reads its manifest, and, before the end of the archive reaches the
engine, refuses (:class:`~provenance.errors.IntegrityError`) an archive whose image is not the
expected one; the engine then has loaded nothing. Tags in the archive are dropped: only after
the check is the image tagged (``provenance/ipfs:<cid>`` unless told otherwise), so no archive
can move an existing tag.

**Where the image is recorded.** A certificate is content-addressed, so an image that names the
certificate cannot be named by it. Two ways, both verifiable:

- built inside the training run (``with track(...) as run``, after ``run.log_model``): the image
  carries the model digest; :func:`attach_image` adds the :class:`ImageRecord` (image id,
  archive CID, model digest) to the run as an attachment, so the certificate, and the chain
  through its digest, commits to the image id and the archive CID;
  :func:`image_record_of` reads it back, checked against the attachment digest;
- built after the certificate (``certificate=``): the image's labels name the certificate digest
  and model digest, so the image id (which covers its labels) commits to the certificate; the
  record (``provenance image push --json``) says where the archive is.

Either way :func:`verify_model_image` checks that the model files inside an image have the
certified model digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata as metadata
import io
import json
import os
import pickletools
import posixpath
import re
import shutil
import socket
import stat
import struct
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

import docker
import docker.errors
import requests
from pydantic import Field, ValidationError

from provenance.errors import (
    CertificateError,
    ImageError,
    IntegrityError,
    ServiceError,
    StorageError,
)
from provenance.hashing import format_digest
from provenance.manifest import Digest, Frozen, canonical_json, manifest_of
from provenance.untrusted import UntrustedInputError, loads_json

if TYPE_CHECKING:
    from provenance.certificate import Attachment, Certificate
    from provenance.storage.protocol import Progress, Storage

BASE_IMAGE = "provenance/base:bookworm"
"""The default base of model images: Debian bookworm with python3, nothing pulled."""

PULLED_REPOSITORY = "provenance/ipfs"
"""Images pulled from IPFS are tagged ``provenance/ipfs:<archive CID>`` unless told otherwise."""

LABEL_MODEL_DIGEST = "provenance.model.digest"
LABEL_MODEL_FORMAT = "provenance.model.format"
LABEL_CERTIFICATE = "provenance.certificate.digest"
LABEL_PACKAGES = "provenance.packages"
LABEL_PYTHON = "provenance.python"
"""On a base image: its Python's ``major.minor``; on a model image: the one packages need."""

RECORD_MEDIA_TYPE = "application/vnd.provenance.image-record+json"
ATTACHMENT_NAME = "docker-image"

APP_DIR = "/opt/provenance"
MODEL_DIR = f"{APP_DIR}/model"
ENTRYPOINT = f"{APP_DIR}/entrypoint.py"
MODEL_FILE = "model.pkl"

CHUNK = 1 << 20
_BLOCK = tarfile.BLOCKSIZE
_MAX_MANIFEST = 1 << 20

# -- the engine ---------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


class DockerEngine:
    """A Docker engine: the SDK client and the URL it talks to (``unix://...``, ``tcp://...``).

    Connecting checks that the engine answers; a missing socket or a silent engine is a
    :class:`~provenance.errors.ServiceError` naming the URL.
    """

    def __init__(self, host: str, *, timeout: float = 600.0) -> None:
        self.host = host
        parsed = urlparse(host)
        if parsed.scheme == "unix" and not Path(parsed.path).exists():
            raise ServiceError(f"no Docker engine at {host}: {parsed.path} does not exist")
        try:
            self.client = docker.DockerClient(base_url=host, timeout=int(timeout))
            self.client.ping()
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            raise ServiceError(f"Docker engine at {host} does not answer: {_reason(exc)}") from exc

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> DockerEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def api(self) -> Any:
        """The SDK's low-level client."""
        return self.client.api

    def version(self) -> str:
        with self.calls("asking the engine's version"):
            return str(self.client.version()["Version"])

    @contextlib.contextmanager
    def calls(self, what: str) -> Iterator[None]:
        """Wrap the SDK's errors: the engine refused (ImageError) or went away (ServiceError)."""
        try:
            yield
        except docker.errors.APIError as exc:
            reason = exc.explanation if exc.explanation else _reason(exc)
            raise ImageError(f"{what} failed: {_reason(Exception(reason))}") from exc
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            raise ServiceError(
                f"Docker engine at {self.host} failed while {what}: {_reason(exc)}"
            ) from exc

    def image(self, name: str) -> LocalImage:
        """An image of the engine by tag or id; ImageError when it has none."""
        try:
            found = self.client.images.get(name)
        except docker.errors.ImageNotFound:
            raise ImageError(f"no image {name} in the Docker engine at {self.host}") from None
        except docker.errors.APIError as exc:
            raise ImageError(
                f"cannot look up image {name} in the Docker engine at {self.host}: "
                f"{_reason(Exception(exc.explanation or exc))}"
            ) from exc
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            raise ServiceError(
                f"Docker engine at {self.host} failed while looking up {name}: {_reason(exc)}"
            ) from exc
        return LocalImage(
            id=str(found.id),
            tags=tuple(str(t) for t in found.tags),
            labels=dict(found.labels or {}),
        )

    def has(self, name: str) -> bool:
        try:
            self.image(name)
        except ImageError:
            return False
        return True


def engine_version(host: str, *, timeout: float = 10.0) -> str:
    """The version of the Docker engine at ``host``; ServiceError when it does not answer."""
    with DockerEngine(host, timeout=timeout) as engine:
        return engine.version()


@dataclass(frozen=True)
class LocalImage:
    """An image in an engine: id (``sha256:`` of its config), tags and labels."""

    id: str
    tags: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.tags[0] if self.tags else None


# -- streams ------------------------------------------------------------------------------------


class ChunkReader(io.RawIOBase):
    """A read-only binary file over an iterator of byte chunks (counts what it hands out)."""

    def __init__(self, chunks: Iterable[bytes], name: str = "a stream") -> None:
        self._chunks = iter(chunks)
        self._buffer = memoryview(b"")
        self.name = name
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        view = memoryview(target).cast("B")
        while not self._buffer:
            try:
                self._buffer = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(view), len(self._buffer))
        view[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        self.count += n
        return n


def _padding(size: int) -> bytes:
    return b"\0" * (-size % _BLOCK)


def _member(name: str, size: int, *, mtime: int = 0, mode: int = 0o644) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, mode
    return info.tobuf(tarfile.PAX_FORMAT)


def _file(name: str, data: bytes, *, mtime: int = 0) -> bytes:
    return _member(name, len(data), mtime=mtime) + data + _padding(len(data))


_END = b"\0" * (2 * _BLOCK)


@dataclass
class ArchiveCheck:
    """What :func:`verified_archive` found: the id of the archive's one image."""

    image_id: str | None = None


def verified_archive(
    chunks: Iterable[bytes],
    expected_id: str | None,
    found: ArchiveCheck,
    *,
    what: str = "the archive",
) -> Iterator[bytes]:
    """Re-emit a ``docker save`` archive for ``docker load`` in constant memory, checking it.

    Members pass through as they come, except ``manifest.json`` (held back) and ``repositories``
    (dropped: tags are not taken from archives). Every regular file is hashed. At the end the manifest must list exactly one image whose config was seen and whose
    SHA-256 (the image id) is ``expected_id`` (any, when None); only then is the manifest,
    without its ``RepoTags``, emitted with the end of the archive. Otherwise IntegrityError is
    raised before that: an archive without a manifest loads nothing.
    """
    source = ChunkReader(chunks, name=what)
    digests: dict[str, str] = {}
    manifest: bytes | None = None
    try:
        with tarfile.open(fileobj=source, mode="r|", bufsize=CHUNK) as archive:
            for member in archive:
                name = posixpath.normpath(member.name.lstrip("/"))
                if name.startswith("../") or name == "..":
                    raise IntegrityError(f"{what} has a member outside the archive: {member.name}")
                if name in ("manifest.json", "repositories"):
                    data = _read_small(archive, member, what)
                    if name == "manifest.json":
                        manifest = data
                    continue
                digests.pop(name, None)
                yield member.tobuf(tarfile.PAX_FORMAT)
                if not member.isreg():
                    continue
                hasher = hashlib.sha256()
                stream = archive.extractfile(member)
                if stream is None:  # pragma: no cover - regular members always have data
                    continue
                while block := stream.read(CHUNK):
                    hasher.update(block)
                    yield block
                yield _padding(member.size)
                digests[name] = "sha256:" + hasher.hexdigest()
    except tarfile.TarError as exc:
        raise IntegrityError(f"{what} is not a valid image archive: {exc}") from exc
    image_id = _check_manifest(manifest, digests, expected_id, what)
    found.image_id = image_id
    yield _file("manifest.json", _untagged(manifest))
    yield _END


def _read_small(archive: tarfile.TarFile, member: tarfile.TarInfo, what: str) -> bytes:
    if not member.isreg() or member.size > _MAX_MANIFEST:
        raise IntegrityError(f"{what} has an unexpected {member.name}")
    stream = archive.extractfile(member)
    return stream.read() if stream is not None else b""


def _parse_manifest(manifest: bytes | None, what: str) -> list[dict[str, Any]]:
    if manifest is None:
        raise IntegrityError(f"{what} has no manifest.json: it is not a docker save archive")
    try:
        entries = loads_json(manifest, what="manifest.json", max_bytes=_MAX_MANIFEST)
    except UntrustedInputError as exc:
        raise IntegrityError(f"{what} has a malformed manifest.json: {exc}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise IntegrityError(f"{what} has a malformed manifest.json")
    return entries


def _check_manifest(
    manifest: bytes | None, digests: Mapping[str, str], expected_id: str | None, what: str
) -> str:
    entries = _parse_manifest(manifest, what)
    if len(entries) != 1:
        raise IntegrityError(f"{what} holds {len(entries)} images; expected one")
    config = entries[0].get("Config")
    if not isinstance(config, str):
        raise IntegrityError(f"{what} has a malformed manifest.json")
    image_id = digests.get(posixpath.normpath(config))
    if image_id is None:
        raise IntegrityError(f"{what} does not contain the image config {config}")
    if expected_id is not None and image_id != expected_id:
        raise IntegrityError(f"{what} holds image {image_id}, expected {expected_id}")
    return image_id


def _untagged(manifest: bytes | None) -> bytes:
    entries = _parse_manifest(manifest or b"[]", "the archive")
    for entry in entries:
        entry["RepoTags"] = None
    return json.dumps(entries, separators=(",", ":")).encode()


def _load(engine: DockerEngine, body: Iterable[bytes], what: str) -> None:
    """``docker load`` of a streamed archive; ImageError with the engine's reason."""
    with engine.calls(f"loading {what}"):
        for event in engine.api.load_image(body):
            if isinstance(event, dict) and "errorDetail" in event:
                message = event["errorDetail"].get("message", "unknown error")
                raise ImageError(f"the engine could not load {what}: {_reason(Exception(message))}")


# -- the base image -----------------------------------------------------------------------------

_PYTHON_DIR = re.compile(r"^(?:\./)?usr/lib/python(3\.\d+)/$")


def _rootfs_facts(rootfs: Path) -> tuple[str | None, int]:
    """The Python minor version a root file system has (from ``usr/lib/python3.X/``) and its
    newest mtime (mmdebstrap clamps every mtime to SOURCE_DATE_EPOCH)."""
    python: str | None = None
    newest = 0
    try:
        with tarfile.open(rootfs, mode="r:") as tar:
            for member in tar:
                newest = max(newest, int(member.mtime))
                if member.isdir() and (match := _PYTHON_DIR.match(member.name + "/")):
                    python = match.group(1)
    except (OSError, tarfile.TarError) as exc:
        raise ImageError(f"cannot read the root file system {rootfs}: {_reason(exc)}") from exc
    return python, newest


def rootfs_archive(
    rootfs: Path, tag: str, found: ArchiveCheck, *, labels: Mapping[str, str] | None = None
) -> Iterator[bytes]:
    """A ``docker load`` archive of one image whose only layer is the tarball ``rootfs``.

    Unlike ``docker import`` (which stamps the current time), the config depends only on the
    tarball: same bytes, same image id (mmdebstrap with SOURCE_DATE_EPOCH is reproducible).
    """
    python, created_at = _rootfs_facts(rootfs)
    size = rootfs.stat().st_size
    yield _member("layer/layer.tar", size, mtime=created_at)
    hasher = hashlib.sha256()
    with open(rootfs, "rb") as f:
        while block := f.read(CHUNK):
            hasher.update(block)
            yield block
    yield _padding(size)
    created = _rfc3339(created_at)
    all_labels = dict(labels or {})
    if python is not None:
        all_labels[LABEL_PYTHON] = python
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["python3"] if python else ["bash"],
            "Labels": all_labels,
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hasher.hexdigest()]},
        "history": [{"created": created, "created_by": f"root file system {rootfs.name}"}],
    }
    data = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    found.image_id = "sha256:" + hashlib.sha256(data).hexdigest()
    manifest = [{"Config": "config.json", "RepoTags": [tag], "Layers": ["layer/layer.tar"]}]
    yield _file("config.json", data, mtime=created_at)
    yield _file("manifest.json", json.dumps(manifest).encode(), mtime=created_at)
    yield _END


def _rfc3339(epoch: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def import_rootfs(engine: DockerEngine, rootfs: Path, tag: str = BASE_IMAGE) -> LocalImage:
    """Load a root file system tarball as a one-layer image tagged ``tag``; see
    :func:`rootfs_archive`. The base image of model images is made this way."""
    if not rootfs.is_file():
        raise ImageError(f"root file system {rootfs} does not exist")
    found = ArchiveCheck()
    _load(engine, rootfs_archive(rootfs, tag, found), str(rootfs))
    image = engine.image(tag)
    if image.id != found.image_id:
        raise IntegrityError(f"the engine loaded {rootfs} as {image.id}, not {found.image_id}")
    return image


def ensure_base_image(
    engine: DockerEngine, rootfs: Path | None = None, tag: str = BASE_IMAGE
) -> LocalImage:
    """The image ``tag``; when the engine lacks it, loaded from the tarball ``rootfs``
    (``scripts/setup.sh`` builds ``.tools/images/base-bookworm.tar``)."""
    if engine.has(tag):
        return engine.image(tag)
    if rootfs is None or not rootfs.is_file():
        where = f"no root file system at {rootfs}" if rootfs else "no root file system was given"
        raise ImageError(
            f"the base image {tag} is not in the Docker engine at {engine.host} and there is "
            f"{where}: run scripts/setup.sh, which builds it from Debian packages"
        )
    return import_rootfs(engine, rootfs, tag)


# -- which packages a pickle needs --------------------------------------------------------------

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING"}
_STRING_OPS |= {"BINSTRING", "SHORT_BINSTRING"}


def pickle_globals(path: Path) -> set[tuple[str, str]]:
    """The ``(module, name)`` pairs a pickle refers to (its GLOBAL / STACK_GLOBAL opcodes);
    nothing is unpickled. Opcode arguments are read one at a time, so memory peaks at the
    largest buffer in the pickle."""
    found: set[tuple[str, str]] = set()
    memo: dict[int, Any] = {}
    recent: list[Any] = []
    try:
        with open(path, "rb") as f:
            for opcode, arg, _ in pickletools.genops(f):
                name = opcode.name
                if name == "GLOBAL":
                    module, _, attribute = str(arg).partition(" ")
                    found.add((module, attribute))
                    recent.append(None)
                elif name == "STACK_GLOBAL":
                    if len(recent) >= 2 and isinstance(recent[-2], str):
                        found.add((recent[-2], str(recent[-1])))
                    recent.append(None)
                elif name in _STRING_OPS:
                    recent.append(arg if isinstance(arg, str) else None)
                elif name == "MEMOIZE":
                    memo[len(memo)] = recent[-1] if recent else None
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[int(str(arg))] = recent[-1] if recent else None
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    recent.append(memo.get(int(str(arg))))
                else:
                    recent.append(None)
                del recent[:-2]
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot read the pickle {path}: {_reason(exc)}") from exc
    return found


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _requirements(dist: metadata.Distribution) -> list[str]:
    """Names of the distributions ``dist`` requires outside of extras (markers other than
    extras are not evaluated: a requirement is kept when it is installed)."""
    names = []
    for line in dist.requires or ():
        _, _, marker = line.partition(";")
        if "extra" in marker:
            continue
        if match := _REQUIREMENT.match(line):
            names.append(match.group(1))
    return names


def distributions_for(modules: Iterable[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions that provide ``modules``, with everything they require,
    by canonical name. Standard-library modules need none; a module no distribution provides
    (``__main__``, a local file) is an ImageError: the image could not import it."""
    providers = metadata.packages_distributions()
    wanted: list[str] = []
    for module in sorted(set(modules)):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top in sys.builtin_module_names:
            continue
        if top not in providers:
            raise ImageError(
                f"the model refers to module {module}, which no installed distribution "
                "provides: define what the model pickles in an installed package"
            )
        wanted.extend(providers[top])
    found: dict[str, metadata.Distribution] = {}
    while wanted:
        name = wanted.pop()
        key = _canonical(name)
        if key in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found[key] = dist
        wanted.extend(_requirements(dist))
    return dict(sorted(found.items()))


def _wheel_tags(dist: metadata.Distribution) -> list[str]:
    text = dist.read_text("WHEEL") or ""
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]


def _check_copyable(dist: metadata.Distribution) -> bool:
    """True when ``dist`` has compiled code (then the Python minor version must match)."""
    label = f"{dist.metadata['Name']} {dist.version}"
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except json.JSONDecodeError:
        direct = {}
    if isinstance(direct, dict) and direct.get("dir_info", {}).get("editable"):
        raise ImageError(f"{label} is installed in editable mode: install it normally first")
    if dist.files is None:
        raise ImageError(f"{label} lists no installed files (no RECORD): it cannot be copied")
    tags = _wheel_tags(dist)
    if not tags:
        raise ImageError(f"{label} was not installed from a wheel: it cannot be copied")
    platforms = {tag.rsplit("-", 1)[-1] for tag in tags}
    if platforms == {"any"}:
        return False
    if not all(p.startswith("manylinux") for p in platforms):
        raise ImageError(
            f"{label} was built for {', '.join(sorted(platforms))}, not from a manylinux wheel: "
            "its compiled code may need libraries the image lacks"
        )
    return True


def _dist_files(dist: metadata.Distribution, tests: bool) -> Iterator[tuple[str, Path]]:
    """The installed files of ``dist`` under site-packages (by their path there), without the
    test suites (files in ``tests`` folders) unless ``tests``."""
    for item in dist.files or ():
        if ".." in item.parts:
            continue  # scripts and data outside site-packages
        if not tests and "tests" in item.parts[:-1]:
            continue
        path = Path(str(dist.locate_file(item)))
        if path.is_file():
            yield item.as_posix(), path


# -- building -----------------------------------------------------------------------------------


def _model_file(model: Path) -> tuple[str, Path]:
    """The pickle to serve: ``model`` itself or ``model/model.pkl``; and its name in the image."""
    if model.is_file():
        return model.name, model
    if model.is_dir() and (model / MODEL_FILE).is_file():
        return MODEL_FILE, model / MODEL_FILE
    raise ImageError(
        f"{model} is not a pickled model: give a pickle file or a folder with {MODEL_FILE}"
    )


def dockerfile(base: str, python: str, pickle_name: str, labels: Mapping[str, str]) -> str:
    """The generated Dockerfile (its context: ``site-packages/``, ``entrypoint.py``,
    ``model/``). Packages come first, so models with the same packages share that layer."""
    label_lines = "".join(
        f"LABEL {json.dumps(k)}={json.dumps(v)}\n" for k, v in sorted(labels.items())
    )
    command = ["python3", "-I", ENTRYPOINT, "--model", f"{MODEL_DIR}/{pickle_name}"]
    return (
        f"FROM {base}\n"
        f"COPY site-packages/ /usr/local/lib/python{python}/dist-packages/\n"
        f"COPY entrypoint.py {ENTRYPOINT}\n"
        f"COPY model/ {MODEL_DIR}/\n"
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
    base: str = BASE_IMAGE,
    name: str | None = None,
    modules: Iterable[str] | None = None,
    tests: bool = False,
) -> LocalImage:
    """Build an image that serves the pickled model at ``model`` (a file, or a folder with
    ``model.pkl``; every file of a folder is copied). See the module docstring.

    ``certificate``: the model's certificate; the model files must have its model digest
    (IntegrityError), the copied package versions must be the recorded ones (ImageError), and
    the image is labelled with its digest. ``modules``: the modules the model needs, when
    scanning the pickle is not enough. ``tests``: copy the packages' test suites too (by default
    their ``tests`` folders, about half of numpy, scipy and scikit-learn, are left out).
    ``tag``: by default ``provenance/model:<12 hex of the model digest>``.
    """
    pickle_name, pickle_path = _model_file(model)
    digest = manifest_of(model).root
    if certificate is not None and certificate.model.digest != digest:
        raise IntegrityError(
            f"{model} has model digest {digest}, the certificate names {certificate.model.digest}"
        )
    needed = {m for m, _ in pickle_globals(pickle_path)} | set(modules or ())
    dists = distributions_for(needed)
    _check_versions(dists, certificate)
    compiled = [key for key, dist in dists.items() if _check_copyable(dist)]
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
        LABEL_MODEL_FORMAT: (certificate.model.format if certificate else None) or "pickle",
        LABEL_PACKAGES: " ".join(f"{d.metadata['Name']}=={d.version}" for d in dists.values()),
        LABEL_PYTHON: python,
    }
    if certificate is not None:
        labels[LABEL_CERTIFICATE] = certificate.digest_text
    tag = tag or f"provenance/model:{digest.removeprefix('sha256:')[:12]}"
    text = dockerfile(base, python, pickle_name, labels)
    with tempfile.TemporaryDirectory(prefix="provenance-image-") as scratch:
        context = Path(scratch) / "context.tar"
        with tarfile.open(context, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "Dockerfile", text.encode())
            tar.add(_entrypoint_source(), "entrypoint.py", filter=_root_owned)
            if model.is_dir():
                tar.add(model, "model", filter=_root_owned)
            else:
                tar.add(model, f"model/{model.name}", filter=_root_owned)
            seen: set[str] = set()
            for dist in dists.values():
                for rel, path in _dist_files(dist, tests):
                    if rel not in seen:
                        seen.add(rel)
                        tar.add(path, f"site-packages/{rel}", recursive=False, filter=_root_owned)
        image_id = _build(engine, context, tag)
    image = engine.image(image_id)
    return LocalImage(id=image.id, tags=(tag,), labels=image.labels)


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
    size of its ``docker save`` archive, and what its labels say it holds."""

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


# -- through IPFS -------------------------------------------------------------------------------


def push_to_ipfs(
    engine: DockerEngine,
    image: str,
    storage: Storage,
    *,
    pin: bool = True,
    progress: Progress | None = None,
) -> ImageRecord:
    """Stream ``docker save`` of ``image`` (a tag or id; any image) into ``storage``; the
    record names the image id and the archive CID."""
    found = engine.image(image)
    with engine.calls(f"saving {image}"):
        chunks = engine.api.get_image(found.id, chunk_size=CHUNK)
        reader = ChunkReader(chunks, name=f"image {found.id}")
        cid = storage.put_stream(reader, pin=pin, progress=progress)  # type: ignore[arg-type]
    return ImageRecord(
        image_id=found.id,
        archive=cid,
        size=reader.count,
        model_digest=found.labels.get(LABEL_MODEL_DIGEST),
        certificate=found.labels.get(LABEL_CERTIFICATE),
    )


def pull_from_ipfs(
    engine: DockerEngine,
    storage: Storage,
    cid: str,
    expected_image_id: str | None = None,
    *,
    tag: str | None = None,
    progress: Progress | None = None,
) -> LocalImage:
    """Fetch the archive at ``cid`` (each block checked against it), ``docker load`` it and
    tag it (``provenance/ipfs:<cid>`` by default) once it proved to be ``expected_image_id``
    (any single image, when None). A wrong image raises IntegrityError and is not loaded."""
    if expected_image_id is not None and not re.fullmatch(
        r"sha256:[0-9a-f]{64}", expected_image_id
    ):
        raise ImageError(f"{expected_image_id!r} is not an image id (sha256:<64 hex digits>)")
    what = f"the archive {cid}"
    found = ArchiveCheck()
    chunks = storage.cat(cid, progress=progress)
    _load(engine, verified_archive(chunks, expected_image_id, found, what=what), what)
    if found.image_id is None:  # pragma: no cover - verified_archive sets it or raises
        raise IntegrityError(f"{what} was not checked")
    image = engine.image(found.image_id)
    tag = tag or f"{PULLED_REPOSITORY}:{cid}"
    with engine.calls(f"tagging {found.image_id}"):
        engine.client.images.get(found.image_id).tag(tag)
    return LocalImage(id=image.id, tags=(tag,), labels=image.labels)


# -- checking and running -----------------------------------------------------------------------


@contextlib.contextmanager
def _container(
    engine: DockerEngine, image: str, command: Sequence[str], what: str
) -> Iterator[Any]:
    with engine.calls(what):
        container = engine.client.containers.create(
            image, command=list(command), network_mode="none", detach=True
        )
    try:
        yield container
    finally:
        with contextlib.suppress(docker.errors.DockerException, requests.RequestException):
            container.remove(force=True)


def _extract_files(stream: ChunkReader, dest: Path, what: str) -> None:
    """Write the regular files and folders of a tar stream under ``dest`` (nothing else: no
    links, devices, or paths leaving ``dest``), streaming each file."""
    try:
        with tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK) as tar:
            for member in tar:
                name = posixpath.normpath(member.name)
                if name.startswith(("/", "../")) or name == "..":
                    raise IntegrityError(f"{what} has a path outside it: {member.name}")
                target = dest / name
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.isreg() and (data := tar.extractfile(member)) is not None:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with open(target, "wb") as out:
                        while block := data.read(CHUNK):
                            out.write(block)
                else:
                    raise IntegrityError(f"{what} holds {member.name}, which is not a file")
    except tarfile.TarError as exc:
        raise ImageError(f"{what} came back malformed: {exc}") from exc


def verify_model_image(engine: DockerEngine, image: str, model_digest: str) -> None:
    """Check that ``image`` says it holds the model ``model_digest`` (label) and that the files
    in its model folder have that digest (copied out and hashed); IntegrityError otherwise."""
    found = engine.image(image)
    label = found.labels.get(LABEL_MODEL_DIGEST)
    if label != model_digest:
        raise IntegrityError(f"image {found.id} is labelled model {label}, expected {model_digest}")
    with (
        _container(engine, found.id, [], f"reading the model of {image}") as container,
        tempfile.TemporaryDirectory(prefix="provenance-model-") as scratch,
    ):
        with engine.calls(f"copying the model out of {image}"):
            stream, _ = container.get_archive(MODEL_DIR)
            _extract_files(ChunkReader(stream), Path(scratch), f"the model folder of {image}")
        digest = manifest_of(Path(scratch) / posixpath.basename(MODEL_DIR)).root
    if digest != model_digest:
        raise IntegrityError(
            f"the model in image {found.id} has digest {digest}, not {model_digest}"
        )


def run_prediction(
    engine: DockerEngine,
    image: str,
    request: Any,
    *,
    method: str = "predict",
    timeout: float = 300.0,
) -> Any:
    """Run one prediction in a new container of ``image`` (no network): ``request`` is a list
    of rows or ``{"instances": rows, "method": ...}``; returns the predictions (JSON values)."""
    body = json.dumps(request).encode()
    command = ["--input", "/tmp/request.json", "--method", method]
    with _container(engine, image, command, f"running {image}") as container:
        payload = io.BytesIO()
        with tarfile.open(fileobj=payload, mode="w") as tar:
            info = tarfile.TarInfo("request.json")
            info.size, info.mode = len(body), 0o644
            tar.addfile(info, io.BytesIO(body))
        with engine.calls(f"running {image}"):
            container.put_archive("/tmp", payload.getvalue())
            container.start()
            try:
                status = container.wait(timeout=timeout)
            except requests.exceptions.ReadTimeout:
                raise ImageError(
                    f"the prediction in {image} did not finish within {timeout:g} s"
                ) from None
            out = container.logs(stdout=True, stderr=False)
            errors = container.logs(stdout=False, stderr=True)
    code = int(status.get("StatusCode", -1))
    if code != 0:
        lines = errors.decode(errors="replace").strip().splitlines() or ["no message"]
        raise ImageError(f"the prediction in {image} failed (exit {code}): {lines[-1][:300]}")
    try:
        return json.loads(out)["predictions"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ImageError(f"the prediction in {image} printed no predictions") from exc


class ModelServer:
    """A container of a model image answering predictions over HTTP on a Unix socket in a
    folder of the host mounted into it (the entrypoint's ``--serve unix:PATH``): the container
    has no network at all. :func:`start_model_server` starts it; :meth:`stop` removes the
    container and the folder.

    The socket's folder sits in a private folder (``home``: ours, mode 0700), so no other local
    user can reach the socket, let alone replace it; :meth:`check_peer` makes sure the process
    behind the socket is the container's, and every request first checks that ``home`` is still
    private and the socket is the one checked (same inode): a swapped socket is refused."""

    def __init__(
        self, container: Any, home: Path, timeout: float, *, folder: Path | None = None
    ) -> None:
        import httpx

        self.container = container
        self.home = home
        self.folder = folder or home
        self.socket = self.folder / SERVE_SOCKET
        self.url = f"unix:{self.socket}"
        self._identity: tuple[int, int] | None = None
        self.client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)),
            base_url="http://model",
            timeout=timeout,
        )

    def check_peer(self, pid: int, uid: int | None = None) -> None:
        """Refuse (ImageError) unless the process listening on the socket is ``pid`` (the
        container's, as the host sees it; and runs as ``uid`` when given); then remember the
        socket, so a replaced one is refused."""
        self._check_home()
        before = _socket_identity(self.socket)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(5)
            try:
                probe.connect(str(self.socket))
                raw = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            except OSError as exc:
                raise ImageError(f"cannot reach the model socket {self.socket}: {exc}") from exc
        peer_pid, peer_uid, _ = struct.unpack("3i", raw)
        if peer_pid != pid or (uid is not None and peer_uid != uid):
            raise ImageError(
                f"the model socket {self.socket} is served by process {peer_pid} (uid "
                f"{peer_uid}), not by the model's container (process {pid}); refusing it"
            )
        if _socket_identity(self.socket) != before:
            raise ImageError(f"the model socket {self.socket} was replaced; refusing it")
        self._identity = before

    def _check_home(self) -> None:
        try:
            info = os.lstat(self.home)
        except OSError as exc:
            raise ImageError(f"the model socket folder {self.home} is gone: {exc}") from exc
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise ImageError(
                f"the model socket folder {self.home} is not private (mode "
                f"{stat.filemode(info.st_mode)}, owner uid {info.st_uid}); refusing its socket"
            )

    def _check_socket(self) -> None:
        self._check_home()
        if self._identity is None or _socket_identity(self.socket) != self._identity:
            raise ImageError(
                f"the model socket {self.socket} is not the one checked at start; refusing it"
            )

    def predict(self, rows: list[Any], method: str = "predict") -> list[Any]:
        """The predictions; ValueError for a request the model refuses (HTTP 400)."""
        import httpx

        self._check_socket()
        try:
            answer = self.client.post("/predict", json={"instances": rows, "method": method})
        except httpx.HTTPError as exc:
            raise ImageError(f"the model container at {self.url} failed: {exc}") from exc
        try:
            body = answer.json()
        except ValueError as exc:
            raise ImageError(
                f"the model container at {self.url} answered HTTP {answer.status_code} "
                "that is not JSON"
            ) from exc
        if not isinstance(body, dict):
            raise ImageError(f"the model container at {self.url} answered no JSON object")
        if answer.status_code == 400:
            raise ValueError(str(body.get("error", "bad request")))
        if answer.status_code != 200 or not isinstance(body.get("predictions"), list):
            raise ImageError(
                f"the model container at {self.url} answered HTTP {answer.status_code}"
            )
        return list(body["predictions"])

    def stop(self) -> None:
        self.client.close()
        with contextlib.suppress(docker.errors.DockerException, requests.RequestException):
            self.container.remove(force=True)
        shutil.rmtree(self.home, ignore_errors=True)


def _socket_identity(path: Path) -> tuple[int, int]:
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise ImageError(f"the model socket {path} is gone: {exc}") from exc
    if not stat.S_ISSOCK(info.st_mode):
        raise ImageError(f"{path} is not a socket; refusing it")
    return info.st_dev, info.st_ino


SERVE_SOCKET = "model.sock"
_SERVE_DIR = "/run/provenance"
_NOBODY = 65534


def _image_user(engine: DockerEngine, image: str) -> tuple[int, int]:
    """The numeric uid and gid an image's processes run as (``USER``; nobody when not numeric)."""
    with engine.calls(f"inspecting {image}"):
        user = str(engine.client.images.get(image).attrs.get("Config", {}).get("User") or "0")
    name, _, group = user.partition(":")
    uid = int(name) if name.isdigit() else _NOBODY
    return uid, int(group) if group.isdigit() else uid


def start_model_server(engine: DockerEngine, image: str, *, timeout: float = 60.0) -> ModelServer:
    """Run ``image``'s entrypoint as an HTTP server on a Unix socket, in a container without
    network (the socket's folder is the only thing shared), and wait until it answers
    ``/health``; ImageError (with its last log line) when it does not. The socket's folder is
    private (see :class:`ModelServer`) and the process behind the socket is checked to be the
    container's before the server is returned."""
    import httpx

    uid, gid = _image_user(engine, image)
    home = Path(tempfile.mkdtemp(prefix="provenance-serve-"))  # mode 0700, ours
    folder = home / "socket"
    try:
        folder.mkdir(mode=0o700)
        if os.geteuid() == 0:
            os.chown(folder, uid, gid)  # the container's user alone may create the socket
        else:
            folder.chmod(0o777)  # unreachable to others: home is 0700
    except OSError as exc:
        shutil.rmtree(home, ignore_errors=True)
        raise ImageError(f"cannot prepare the model socket folder {folder}: {exc}") from exc
    try:
        with engine.calls(f"starting {image}"):
            container = engine.client.containers.run(
                image,
                command=["--serve", f"unix:{_SERVE_DIR}/{SERVE_SOCKET}"],
                network_mode="none",
                volumes={str(folder): {"bind": _SERVE_DIR, "mode": "rw"}},
                detach=True,
            )
    except ImageError:
        shutil.rmtree(home, ignore_errors=True)
        raise
    server = ModelServer(container, home, timeout, folder=folder)
    deadline = time.monotonic() + timeout
    while True:
        try:
            if server.socket.exists() and server.client.get("/health").status_code == 200:
                break
        except httpx.TransportError:
            pass
        with engine.calls(f"watching {image}"):
            container.reload()
        if container.status == "exited" or time.monotonic() > deadline:
            with engine.calls(f"reading the log of {image}"):
                lines = container.logs().decode(errors="replace").strip().splitlines()
            server.stop()
            raise ImageError(
                f"the model image {image} did not start serving: "
                f"{(lines or ['no output'])[-1][:300]}"
            )
        time.sleep(0.2)
    try:
        with engine.calls(f"watching {image}"):
            container.reload()
        server.check_peer(int(container.attrs["State"]["Pid"]))
    except BaseException:
        server.stop()
        raise
    return server


# -- helpers for callers ------------------------------------------------------------------------


def default_rootfs(prefix: Path) -> Path:
    """Where ``scripts/setup.sh`` leaves the base root file system for the environment at
    ``prefix`` (the checkout's ``.venv``): ``<checkout>/.tools/images/base-bookworm.tar``."""
    return prefix.parent / ".tools" / "images" / "base-bookworm.tar"


__all__ = [
    "ATTACHMENT_NAME",
    "BASE_IMAGE",
    "LABEL_CERTIFICATE",
    "LABEL_MODEL_DIGEST",
    "LABEL_PACKAGES",
    "LABEL_PYTHON",
    "PULLED_REPOSITORY",
    "RECORD_MEDIA_TYPE",
    "ArchiveCheck",
    "ChunkReader",
    "DockerEngine",
    "ImageRecord",
    "LocalImage",
    "ModelServer",
    "attach_image",
    "build_model_image",
    "default_rootfs",
    "distributions_for",
    "dockerfile",
    "engine_version",
    "ensure_base_image",
    "image_record_of",
    "import_rootfs",
    "pickle_globals",
    "pull_from_ipfs",
    "push_to_ipfs",
    "rootfs_archive",
    "run_prediction",
    "start_model_server",
    "verified_archive",
    "verify_model_image",
]
