"""The programs a stack starts: where to find them, their pid files and logs, free ports, and
the private folders and files of the state dir.

Nothing here knows anvil from kubo: a service hands :meth:`Processes.spawn` an argv and a
readiness probe, and :meth:`Processes.stop` later signals only a process whose pid file still
names that program.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from provenance.errors import PortInUseError, ProvenanceError, ServiceError

START_TIMEOUT = 60.0
"""Seconds a started program has to answer its readiness probe."""


@dataclass(frozen=True)
class Tools:
    """Where to look for anvil, ipfs and dockerd: these folders first, then PATH."""

    search_path: tuple[Path, ...] = ()
    path_env: str | None = None

    def find(self, name: str) -> Path:
        for folder in self.search_path:
            candidate = folder / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
        found = shutil.which(name, path=self.path_env)
        if found:
            return Path(found)
        looked = ", ".join(str(p) for p in self.search_path) or "nowhere else"
        raise ServiceError(f"{name} not found on PATH or in {looked}; run scripts/setup.sh")


class Processes:
    """The pid files (``<state>/run/<name>.json``) and logs (``<state>/logs/<name>.log``) of
    the programs one state dir's stack started."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.run_dir = state_dir / "run"
        self.log_dir = state_dir / "logs"

    def prepare(self) -> None:
        """Create the state, run and log folders, ours alone."""
        for folder in (self.state_dir, self.run_dir, self.log_dir):
            private_dir(folder)

    def pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def logfile(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def record(self, name: str) -> dict[str, Any] | None:
        """What the pid file of ``name`` says (pid, argv, start time), or None."""
        try:
            data: dict[str, Any] = json.loads(self.pidfile(name).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return data

    def running(self, name: str) -> bool:
        """True when the process recorded for ``name`` is alive and is that program (a stale
        pid file is removed)."""
        record = self.record(name)
        if record is None:
            return False
        if _alive(int(record["pid"]), record["argv"][0]):
            return True
        self.forget(name)
        return False

    def forget(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.pidfile(name).unlink()

    def stop(self, name: str, timeout: float = 30.0) -> bool:
        """SIGTERM (after ``timeout`` s SIGKILL) the recorded process; True when one ran."""
        record = self.record(name)
        if record is None:
            return False
        pid, program = int(record["pid"]), record["argv"][0]
        if not _alive(pid, program):
            self.forget(name)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid, program) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _alive(pid, program):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)
        self.forget(name)
        return True

    def spawn(
        self,
        name: str,
        argv: list[str],
        *,
        ready: Callable[[], bool],
        env: dict[str, str] | None = None,
        timeout: float = START_TIMEOUT,
    ) -> None:
        """Start ``argv`` in a session of its own, logging to its log file, and wait until
        ``ready()``; when it exits, does not answer in time or ``ready`` raises, nothing of it
        is left running and the error names the tail of its log."""
        logfile = self.logfile(name)
        with logfile.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                )
            except OSError as exc:
                raise ServiceError(f"cannot start {name} ({argv[0]}): {exc}") from exc
        self.pidfile(name).write_text(
            json.dumps({"pid": proc.pid, "argv": argv, "started": time.time()}), encoding="utf-8"
        )
        try:
            self._wait_ready(name, proc, ready, timeout)
        except BaseException:
            self.stop(name)
            proc.poll()
            raise

    def _wait_ready(
        self, name: str, proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            code = proc.poll()
            if code is not None:
                self.forget(name)
                raise ServiceError(
                    f"{name} exited with code {code} while starting; {log_tail(self.logfile(name))}"
                )
            try:
                if ready():
                    return
            except ProvenanceError:
                raise
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{name} did not answer within {timeout:.0f} s; {log_tail(self.logfile(name))}"
                )
            time.sleep(0.1)


# ------------------------------------------------------------------ ports
def bind_host(url: str) -> str:
    """The address to bind for ``url``'s host (``localhost`` is 127.0.0.1)."""
    host = urlsplit(url).hostname or "127.0.0.1"
    return "127.0.0.1" if host == "localhost" else host


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` (a TIME_WAIT leftover does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise ServiceError(f"cannot probe {host}:{port}: {exc}") from exc
    return True


def ensure_free(host: str, port: int, what: str, setting: str) -> None:
    """PortInUseError naming ``what`` wanted the port and the ``setting`` that moves it."""
    if not port_is_free(host, port):
        raise PortInUseError(
            f"port {port} on {host}, wanted for {what}, is taken by another program; "
            f"stop it or choose another port ({setting})"
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (for tests and throwaway stacks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# ------------------------------------------------------------------ private state
def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, readable by us alone (0600) from its first
    byte on: kubo's config holds the node's private key."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ServiceError(f"cannot write {path}: {exc}") from exc


def private_dir(path: Path) -> None:
    """Create ``path`` (and its parents) if missing, and make it ours alone (0700): the state
    dir holds keys, journals and logs."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    except OSError as exc:
        raise ServiceError(f"cannot create the private folder {path}: {exc}") from exc


# ------------------------------------------------------------------ processes
def log_tail(logfile: Path, lines: int = 5) -> str:
    """The last lines of a service log, folded onto one line for an error message."""
    try:
        text = logfile.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "no log"
    tail = [line.strip() for line in text.strip().splitlines()[-lines:] if line.strip()]
    return f"log {logfile} ends: " + " | ".join(tail)


def run_checked(argv: list[str], env: dict[str, str], what: str) -> None:
    """Run a short setup command (``ipfs init``); ServiceError with its last lines on failure."""
    try:
        subprocess.run(argv, env=env, check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or exc.stdout or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise ServiceError(f"{what} failed (exit {exc.returncode}): {' | '.join(tail)}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"{what} failed: {exc}") from exc


def _alive(pid: int, program: str) -> bool:
    """True when ``pid`` runs and its command line starts with ``program``'s name."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":  # a zombie is not running
        _reap(pid)
        return False
    first = cmdline.split(b"\0", 1)[0].decode(errors="replace")
    return Path(first).name == Path(program).name


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
