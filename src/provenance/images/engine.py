"""The Docker engine (through the Docker SDK for Python), and the base image of model images.

:class:`DockerEngine` wraps the SDK's errors: the engine refused (ImageError) or went away
(ServiceError). The other modules of :mod:`provenance.images` that talk to Docker take one.

**The base images.** Model images are built ``FROM`` a base image that has Python (by default
:data:`BASE_IMAGE`, Debian bookworm's python3; for TorchScript models :data:`TORCH_IMAGE`, which
adds Debian's CPU build of PyTorch), made by ``scripts/base-image.sh`` (:func:`make_rootfs`) and
loaded by :func:`ensure_base_image` from a root file system tarball; :func:`rootfs_archive`
makes its ``docker load`` archive deterministic.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import subprocess
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import docker
import docker.errors
import requests

from provenance.errors import ImageError, IntegrityError, ServiceError

from .archive import _END, CHUNK, ArchiveCheck, _file, _member, _padding
from .labels import LABEL_PYTHON

BASE_IMAGE = "provenance/base:bookworm"
"""The default base of model images: Debian bookworm with python3, nothing pulled."""
TORCH_IMAGE = "provenance/torch:bookworm"
"""The base of TorchScript model images: :data:`BASE_IMAGE` and Debian's ``python3-torch``."""
_ROOTFS = {BASE_IMAGE: ("base-bookworm.tar", ()), TORCH_IMAGE: ("torch-bookworm.tar", ("--torch",))}
"""The root file system tarball of each base image and the flags of ``scripts/base-image.sh``
that make it."""

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
    (``scripts/setup.sh`` builds ``.tools/images/base-bookworm.tar``, and with
    ``--with-torch-image`` ``torch-bookworm.tar``; see :func:`make_rootfs`)."""
    if engine.has(tag):
        return engine.image(tag)
    if rootfs is None or not rootfs.is_file():
        where = f"no root file system at {rootfs}" if rootfs else "no root file system was given"
        raise ImageError(
            f"the base image {tag} is not in the Docker engine at {engine.host} and there is "
            f"{where}: run scripts/setup.sh{' --with-torch-image' if tag == TORCH_IMAGE else ''}, "
            "which builds it from Debian packages"
        )
    return import_rootfs(engine, rootfs, tag)


def default_rootfs(prefix: Path, tag: str = BASE_IMAGE) -> Path:
    """Where ``scripts/base-image.sh`` (run by ``scripts/setup.sh``) leaves the root file system
    of the base image ``tag`` for the environment at ``prefix`` (the checkout's ``.venv``):
    ``<checkout>/.tools/images/base-bookworm.tar`` (``torch-bookworm.tar``)."""
    name = _ROOTFS[tag][0] if tag in _ROOTFS else f"{tag.replace('/', '-')}.tar"
    return prefix.parent / ".tools" / "images" / name


def make_rootfs(prefix: Path, tag: str = BASE_IMAGE) -> Path:
    """Build the root file system of the base image ``tag`` from Debian packages with the
    checkout's ``scripts/base-image.sh`` (minutes: mmdebstrap; cached by the script), where
    :func:`default_rootfs` expects it; returns its path. ImageError when there is no such
    script or it fails (with its last line)."""
    if tag not in _ROOTFS:
        raise ImageError(f"no recipe for a base image {tag}; known: {', '.join(sorted(_ROOTFS))}")
    script = prefix.parent / "scripts" / "base-image.sh"
    if not script.is_file():
        raise ImageError(
            f"the base image {tag} needs scripts/base-image.sh of a provenance checkout, and "
            f"{script} does not exist"
        )
    out = default_rootfs(prefix, tag)
    try:
        done = subprocess.run(
            ["bash", str(script), *_ROOTFS[tag][1], str(out.parent)],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise ImageError(f"cannot run {script}: {_reason(exc)}") from exc
    if done.returncode != 0 or not out.is_file():
        lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
        raise ImageError(f"building the base image {tag} failed: {lines[-1][:300]}")
    return out
