"""Containers of model images: checking the model inside an image, one prediction in a
network-less container (:func:`run_prediction`), and a model server answering over a Unix
socket (:func:`start_model_server`).

:func:`verify_model_image` checks that the model files inside an image have the certified
model digest.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import shutil
import socket
import stat
import struct
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import docker.errors
import requests

from provenance.errors import ImageError, IntegrityError
from provenance.manifest import manifest_of

from .archive import CHUNK, ChunkReader
from .engine import DockerEngine
from .labels import LABEL_MODEL_DIGEST, LABEL_MODEL_PATH, MODEL_DIR


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


def model_digest_in_image(engine: DockerEngine, image: str, path: str = MODEL_DIR) -> str:
    """The model digest of the files at ``path`` inside ``image`` (a folder, or one file),
    copied out of a container that never starts and hashed; IntegrityError when there is no
    such path or it holds anything but regular files and folders."""
    with (
        _container(engine, image, [], f"reading the model of {image}") as container,
        tempfile.TemporaryDirectory(prefix="provenance-model-") as scratch,
    ):
        with engine.calls(f"copying the model out of {image}"):
            try:
                stream, _ = container.get_archive(path)
            except docker.errors.NotFound:
                raise IntegrityError(f"image {image} has nothing at {path}") from None
            _extract_files(ChunkReader(stream), Path(scratch), f"the model at {path} in {image}")
        return manifest_of(Path(scratch) / posixpath.basename(path.rstrip("/"))).root


def verify_model_image(engine: DockerEngine, image: str, model_digest: str) -> None:
    """Check that ``image`` says it holds the model ``model_digest`` (label) and that the files
    where it says they are (label ``provenance.model.path``, by default MODEL_DIR) have that
    digest (copied out and hashed); IntegrityError otherwise."""
    found = engine.image(image)
    label = found.labels.get(LABEL_MODEL_DIGEST)
    if label != model_digest:
        raise IntegrityError(f"image {found.id} is labelled model {label}, expected {model_digest}")
    path = found.labels.get(LABEL_MODEL_PATH) or MODEL_DIR
    if not posixpath.isabs(path) or posixpath.normpath(path) == "/":
        raise IntegrityError(f"image {found.id} labels its model path {path!r}: not a model path")
    digest = model_digest_in_image(engine, found.id, path)
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
