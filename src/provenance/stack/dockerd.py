"""The Docker engine: the configured one, else the system's, else a dockerd of this stack's
own (root only) with its own data root, no bridge and no iptables rules."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from provenance.config import Config
from provenance.errors import ServiceError
from provenance.images import engine_version
from provenance.stack.process import Processes, Tools
from provenance.stack.service import Notify, ServiceStatus

SYSTEM_DOCKER = "unix:///var/run/docker.sock"

NOT_REQUIRED = (
    "not required: registering and verifying need no engine; building, pushing and serving "
    "images do (start one, or set DOCKER_HOST)"
)


class Dockerd:
    """The engine images are built, pushed and served with.

    It is *required* (``status`` fails without it) when ``[docker] host`` / ``DOCKER_HOST``
    names one, or when ``provenance up`` of this state dir runs any part (a local stack
    promises an engine); a configuration that only talks to a chain and storage elsewhere (a
    testnet registrant, an auditor) needs none. ``local_stack`` says whether the stack runs.
    """

    name = "dockerd"

    def __init__(
        self,
        config: Config,
        tools: Tools,
        processes: Processes,
        local_stack: Callable[[], bool] = lambda: False,
    ) -> None:
        self.config = config
        self.tools = tools
        self.processes = processes
        self.local_stack = local_stack

    @property
    def run_dir(self) -> Path:
        """Short runtime folder of our dockerd: its exec root and socket.

        containerd's sockets live under the exec root and a unix socket path is limited to
        107 bytes, so this is ``/run/provenance-<digest of the state dir>``, not a folder
        under a possibly long state dir.
        """
        digest = hashlib.sha256(str(self.config.state_dir.resolve()).encode()).hexdigest()[:12]
        base = Path("/run") if os.access("/run", os.W_OK) else Path("/tmp")
        return base / f"provenance-{digest}"

    @property
    def own_host(self) -> str:
        return f"unix://{self.run_dir / 'docker.sock'}"

    @property
    def data_root(self) -> Path:
        return self.config.state_dir / "docker" / "data"

    def host(self) -> str:
        """The engine to use: configured, else the one ``up`` started, else the system's."""
        if self.config.docker.host:
            return self.config.docker.host
        if self.is_running():
            return self.own_host
        return SYSTEM_DOCKER

    def is_running(self) -> bool:
        return self.processes.running(self.name)

    def stop(self) -> bool:
        if not self.processes.stop(self.name):
            return False
        self._release_dirs()
        return True

    def _release_dirs(self) -> None:
        """dockerd bind-mounts its data root onto itself and leaves that mount behind when it
        exits; undo it, and remove the runtime folder (ours alone), so down leaves no trace."""
        if os.path.ismount(self.data_root):
            subprocess.run(
                ["umount", str(self.data_root)], capture_output=True, check=False, timeout=30
            )
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def up(self, notify: Notify) -> None:
        configured = self.config.docker.host
        if configured:
            version = engine_version(configured)
            notify(f"docker: engine {version} at {configured} (configured, not managed here)")
            return
        if self.is_running():
            notify(f"docker: dockerd already running at {self.own_host}")
            return
        with contextlib.suppress(ServiceError):
            version = engine_version(SYSTEM_DOCKER, timeout=5)
            notify(f"docker: using the system engine {version} at {SYSTEM_DOCKER}")
            return
        binary = self.tools.find("dockerd")
        if os.geteuid() != 0:
            raise ServiceError(
                "no Docker engine answers and starting dockerd needs root; start an engine "
                "or set DOCKER_HOST"
            )
        self.data_root.mkdir(parents=True, exist_ok=True)
        run = self.run_dir
        run.mkdir(mode=0o700, parents=True, exist_ok=True)
        sock = run / "docker.sock"
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        argv = [
            str(binary),
            "--data-root", str(self.data_root),
            "--exec-root", str(run / "exec"),
            "--pidfile", str(run / "dockerd.pid"),
            "--host", f"unix://{sock}",
            # loopback only: no bridge, no iptables rules on the host
            "--bridge=none", "--iptables=false", "--ip6tables=false",
        ]  # fmt: skip
        host = self.own_host

        def ready() -> bool:
            try:
                engine_version(host, timeout=3)
            except ServiceError:
                return False
            return True

        self.processes.spawn(self.name, argv, ready=ready)
        notify(f"docker: dockerd {engine_version(host)} started at {host}")

    def required(self) -> bool:
        return bool(self.config.docker.host) or self.local_stack()

    def status(self) -> ServiceStatus:
        host = self.host()
        managed = self.is_running()
        required = self.required()
        facts = {"host": host}
        try:
            version = engine_version(host, timeout=5)
        except ServiceError as exc:
            note = None if required else NOT_REQUIRED
            return ServiceStatus(
                "docker", False, host, required, managed, error=str(exc), note=note, facts=facts
            )
        return ServiceStatus(
            "docker", True, host, required, managed, version, f"engine {version}", facts=facts
        )
