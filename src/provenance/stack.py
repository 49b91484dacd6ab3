"""The local stack: anvil, a kubo daemon and a Docker engine on loopback, and the contracts.

``Stack.up`` starts what is not running (pid files in ``<state>/run``), deploys the contracts
when their recorded addresses hold no code, and leaves nothing half-started when a step fails.
``Stack.down`` stops only what ``up`` started. ``Stack.status`` probes every service.

Remote endpoints (a testnet RPC, a remote kubo or IPFS Cluster proxy, a remote Docker engine)
are never started or stopped, only probed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from eth_account.signers.local import LocalAccount
from web3 import Web3

from provenance.chain.client import connect
from provenance.chain.deploy import Deployment, ensure_deployed, has_code
from provenance.chain.keys import dev_account
from provenance.config import Config, is_loopback_url, url_port
from provenance.errors import PortInUseError, ProvenanceError, ServiceError
from provenance.images import engine_version
from provenance.storage.kubo import Kubo

SYSTEM_DOCKER = "unix:///var/run/docker.sock"
START_TIMEOUT = 60.0

Notify = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


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


@dataclass
class _Started:
    """What one ``up`` call started, so a failure can stop exactly that."""

    names: list[str] = field(default_factory=list)


class Stack:
    """The local stack described by ``config``."""

    def __init__(self, config: Config, tools: Tools) -> None:
        self.config = config
        self.tools = tools
        self.state_dir = config.state_dir
        self.run_dir = self.state_dir / "run"
        self.log_dir = self.state_dir / "logs"

    # ------------------------------------------------------------------ paths
    def pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def logfile(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    @property
    def ipfs_repo(self) -> Path:
        return self.state_dir / "ipfs"

    @property
    def anvil_state(self) -> Path:
        return self.state_dir / "anvil" / "state.json"

    @property
    def docker_run_dir(self) -> Path:
        """Short runtime folder of our dockerd: its exec root and socket.

        containerd's sockets live under the exec root and a unix socket path is limited to
        107 bytes, so this is ``/run/provenance-<digest of the state dir>``, not a folder
        under a possibly long state dir.
        """
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
        base = Path("/run") if os.access("/run", os.W_OK) else Path("/tmp")
        return base / f"provenance-{digest}"

    @property
    def own_docker_host(self) -> str:
        return f"unix://{self.docker_run_dir / 'docker.sock'}"

    # ------------------------------------------------------------------- up
    def up(
        self,
        notify: Notify = _quiet,
        deployer: Callable[[Web3], LocalAccount] = dev_account,
    ) -> None:
        """Start what is not running, deploy what is missing; on failure stop what this started."""
        for folder in (self.state_dir, self.run_dir, self.log_dir):
            private_dir(folder)
        started = _Started()
        try:
            self._up_anvil(started, notify)
            self._up_kubo(started, notify)
            self._up_docker(started, notify)
            self._up_contracts(notify, deployer)
        except BaseException:
            for name in reversed(started.names):
                self._stop(name)
            raise

    def _up_anvil(self, started: _Started, notify: Notify) -> None:
        url = self.config.chain.rpc_url
        if not is_loopback_url(url):
            connect(url)
            notify(f"chain: remote RPC {url} answers (not managed here)")
            return
        if self._running("anvil"):
            notify(f"chain: anvil already running at {url}")
            return
        host, port = _bind_host(url), url_port(url)
        _ensure_free(host, port, "the chain RPC (anvil)", "PROVENANCE_RPC_URL")
        private_dir(self.anvil_state.parent)
        argv = [
            str(self.tools.find("anvil")),
            "--host", host,
            "--port", str(port),
            "--chain-id", str(self.config.chain.chain_id),
            "--state", str(self.anvil_state),
            "--state-interval", str(self.config.chain.state_interval),
            "--hardfork", "prague",
            # its dev accounts are unlocked: no web page may drive them from a browser
            "--no-cors",
        ]  # fmt: skip
        self._spawn("anvil", argv, started, ready=lambda: self._chain_ready(url))
        notify(f"chain: anvil started at {url} (chain {self.config.chain.chain_id})")

    def _chain_ready(self, url: str) -> bool:
        try:
            w3 = connect(url, timeout=2)
        except ServiceError:
            return False
        chain_id = w3.eth.chain_id
        if chain_id != self.config.chain.chain_id:
            raise ServiceError(
                f"anvil at {url} reports chain {chain_id}, expected {self.config.chain.chain_id}"
            )
        return True

    def _up_kubo(self, started: _Started, notify: Notify) -> None:
        ipfs = self.config.ipfs
        if not is_loopback_url(ipfs.api):
            version = self._kubo().version()
            notify(f"ipfs: remote API {ipfs.api} answers, kubo {version} (not managed here)")
            return
        if self._running("ipfs"):
            notify(f"ipfs: kubo already running, API {ipfs.api}")
            return
        binary = self.tools.find("ipfs")
        api_host, api_port = _bind_host(ipfs.api), url_port(ipfs.api)
        gw_host, gw_port = _bind_host(ipfs.gateway), url_port(ipfs.gateway)
        _ensure_free(api_host, api_port, "the IPFS API (kubo)", "PROVENANCE_IPFS_API")
        _ensure_free(gw_host, gw_port, "the IPFS gateway (kubo)", "PROVENANCE_IPFS_GATEWAY")
        if ipfs.swarm_port:
            _ensure_free("127.0.0.1", ipfs.swarm_port, "the IPFS swarm (kubo)", "[ipfs] swarm_port")
        env = {**os.environ, "IPFS_PATH": str(self.ipfs_repo)}
        if not (self.ipfs_repo / "config").exists():
            private_dir(self.ipfs_repo)
            _run([str(binary), "init", "--empty-repo"], env, "ipfs init")
        configure_kubo_repo(
            self.ipfs_repo,
            api=f"/ip4/{api_host}/tcp/{api_port}",
            gateway=f"/ip4/{gw_host}/tcp/{gw_port}",
            swarm_port=ipfs.swarm_port,
        )
        argv = [str(binary), "daemon", "--migrate=false"]
        self._spawn("ipfs", argv, started, ready=self._kubo_ready, env=env)
        notify(
            f"ipfs: kubo {self._kubo().version()} started, API {ipfs.api}, gateway {ipfs.gateway}"
        )

    def _kubo(self) -> Kubo:
        return Kubo(self.config.ipfs.api, auth=self.config.ipfs.auth, timeout=10, retries=0)

    def _kubo_ready(self) -> bool:
        try:
            with self._kubo() as kubo:
                kubo.version()
        except ServiceError:
            return False
        return True

    def docker_host(self) -> str:
        """The engine to use: configured, else the one ``up`` started, else the system's."""
        if self.config.docker.host:
            return self.config.docker.host
        if self._running("dockerd"):
            return self.own_docker_host
        return SYSTEM_DOCKER

    def _up_docker(self, started: _Started, notify: Notify) -> None:
        configured = self.config.docker.host
        if configured:
            version = engine_version(configured)
            notify(f"docker: engine {version} at {configured} (configured, not managed here)")
            return
        if self._running("dockerd"):
            notify(f"docker: dockerd already running at {self.own_docker_host}")
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
        root = self.state_dir / "docker"
        (root / "data").mkdir(parents=True, exist_ok=True)
        run = self.docker_run_dir
        run.mkdir(mode=0o700, parents=True, exist_ok=True)
        sock = run / "docker.sock"
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        argv = [
            str(binary),
            "--data-root", str(root / "data"),
            "--exec-root", str(run / "exec"),
            "--pidfile", str(run / "dockerd.pid"),
            "--host", f"unix://{sock}",
            # loopback only: no bridge, no iptables rules on the host
            "--bridge=none", "--iptables=false", "--ip6tables=false",
        ]  # fmt: skip
        host = self.own_docker_host

        def ready() -> bool:
            try:
                engine_version(host, timeout=3)
            except ServiceError:
                return False
            return True

        self._spawn("dockerd", argv, started, ready=ready)
        notify(f"docker: dockerd {engine_version(host)} started at {host}")

    def _up_contracts(self, notify: Notify, deployer: Callable[[Web3], LocalAccount]) -> None:
        chain = self.config.chain
        w3 = connect(chain.rpc_url)
        if not self._running("anvil"):
            for name, address in chain.contracts.items():
                if not has_code(w3, address):
                    raise ServiceError(
                        f"configured {name} address {address} holds no code on {chain.rpc_url}"
                    )
            notify(
                "contracts: not deploying on a chain this stack does not run (see `provenance deploy`)"
            )
            return
        deployment, now = ensure_deployed(
            w3,
            deployer(w3),
            self.config.deployment_file,
            open_registration=chain.open_registration,
            configured=chain.contracts,
        )
        for name, record in deployment.contracts.items():
            verb = "deployed" if name in now else "found"
            notify(f"contracts: {name} {verb} at {record.address}")

    # ------------------------------------------------------------- processes
    def _spawn(
        self,
        name: str,
        argv: list[str],
        started: _Started,
        *,
        ready: Callable[[], bool],
        env: dict[str, str] | None = None,
    ) -> None:
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
        started.names.append(name)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            code = proc.poll()
            if code is not None:
                self._forget(name)
                started.names.remove(name)
                raise ServiceError(
                    f"{name} exited with code {code} while starting; {log_tail(logfile)}"
                )
            try:
                if ready():
                    return
            except ProvenanceError:
                raise
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{name} did not answer within {START_TIMEOUT:.0f} s; {log_tail(logfile)}"
                )
            time.sleep(0.1)

    def _record(self, name: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.pidfile(name).read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None
        return data

    def is_running(self, name: str) -> bool:
        """True when ``up`` started ``name`` (anvil, ipfs, dockerd) and it still runs."""
        return self._running(name)

    def _running(self, name: str) -> bool:
        """True when the process recorded for ``name`` is alive and is that program."""
        record = self._record(name)
        if record is None:
            return False
        if _alive(int(record["pid"]), record["argv"][0]):
            return True
        self._forget(name)
        return False

    def _forget(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.pidfile(name).unlink()

    def _stop(self, name: str, timeout: float = 30.0) -> bool:
        record = self._record(name)
        if record is None:
            return False
        pid = int(record["pid"])
        if not _alive(pid, record["argv"][0]):
            self._forget(name)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid, record["argv"][0]) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _alive(pid, record["argv"][0]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)
        self._forget(name)
        return True

    # ------------------------------------------------------------------ down
    def down(self, notify: Notify = _quiet) -> list[str]:
        """Stop what ``up`` started (and nothing else); return the names stopped."""
        stopped = []
        for name in ("dockerd", "ipfs", "anvil"):
            if self._stop(name):
                stopped.append(name)
                notify(f"stopped {name}")
                if name == "dockerd":
                    self._release_docker_dirs()
        return stopped

    def _release_docker_dirs(self) -> None:
        """dockerd bind-mounts its data root onto itself and leaves that mount behind when it
        exits; undo it, and remove the runtime folder (ours alone), so down leaves no trace."""
        data = self.state_dir / "docker" / "data"
        if os.path.ismount(data):
            subprocess.run(["umount", str(data)], capture_output=True, check=False, timeout=30)
        shutil.rmtree(self.docker_run_dir, ignore_errors=True)

    # ---------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """One probe per service; each part carries ``ok`` and its endpoint and version."""
        return {
            "config": str(self.config.source) if self.config.source else None,
            "state_dir": str(self.state_dir),
            "chain": self._chain_status(),
            "ipfs": self._ipfs_status(),
            "docker": self._docker_status(),
            "contracts": self._contracts_status(),
        }

    def _chain_status(self) -> dict[str, Any]:
        chain = self.config.chain
        out: dict[str, Any] = {
            "ok": False,
            "rpc_url": chain.rpc_url,
            "managed": self._running("anvil"),
        }
        try:
            w3 = connect(chain.rpc_url, timeout=5)
            out.update(
                chain_id=w3.eth.chain_id, block=w3.eth.block_number, client=w3.client_version
            )
        except ServiceError as exc:
            out["error"] = str(exc)
            return out
        if out["chain_id"] != chain.chain_id:
            out["error"] = (
                f"chain id {out['chain_id']} differs from the configured {chain.chain_id}"
            )
            return out
        out["ok"] = True
        return out

    def _ipfs_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": False,
            "api": self.config.ipfs.api,
            "gateway": self.config.ipfs.gateway,
            "managed": self._running("ipfs"),
        }
        try:
            with self._kubo() as kubo:
                out.update(version=kubo.version(), peer_id=kubo.id())
        except ServiceError as exc:
            out["error"] = str(exc)
            return out
        out["ok"] = True
        return out

    def _docker_status(self) -> dict[str, Any]:
        host = self.docker_host()
        out: dict[str, Any] = {"ok": False, "host": host, "managed": self._running("dockerd")}
        try:
            out["version"] = engine_version(host, timeout=5)
        except ServiceError as exc:
            out["error"] = str(exc)
            return out
        out["ok"] = True
        return out

    def _contracts_status(self) -> dict[str, Any]:
        chain = self.config.chain
        out: dict[str, Any] = {"ok": False, "deployment_file": str(self.config.deployment_file)}
        try:
            deployment = Deployment.read(self.config.deployment_file)
            addresses = (
                {k: v.address for k, v in deployment.contracts.items()} if deployment else {}
            )
            addresses.update(chain.contracts)
            if not addresses:
                out["error"] = (
                    "no contracts deployed or configured (run `provenance up` or `provenance deploy`)"
                )
                return out
            w3 = connect(chain.rpc_url, timeout=5)
            if deployment is not None and deployment.chain_id != w3.eth.chain_id:
                out["error"] = (
                    f"deployment file is for chain {deployment.chain_id}, the RPC serves "
                    f"chain {w3.eth.chain_id}"
                )
                return out
            missing = []
            for name, address in sorted(addresses.items()):
                code = has_code(w3, address)
                out[name] = {"address": address, "has_code": code}
                if not code:
                    missing.append(f"{name} at {address} holds no code")
        except ProvenanceError as exc:
            out["error"] = str(exc)
            return out
        if missing:
            out["error"] = "; ".join(missing)
            return out
        out["ok"] = True
        return out


# ---------------------------------------------------------------- helpers
def configure_kubo_repo(repo: Path, *, api: str, gateway: str, swarm_port: int) -> None:
    """Pin a kubo repo to loopback: API, gateway and swarm on 127.0.0.1, no bootstrap peers,
    no DHT or delegated routing, no mDNS, no NAT port mapping, no relays, nothing announced.

    Edits the repo's JSON config directly (allowed while the daemon is stopped); this is what
    a dozen ``ipfs config`` calls would do, without a process each.
    """
    path = repo / "config"
    cfg: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    swarm = [f"/ip4/127.0.0.1/tcp/{swarm_port}"] if swarm_port else []
    cfg["Addresses"].update(API=api, Gateway=gateway, Swarm=swarm, Announce=[], AppendAnnounce=[])
    cfg["Addresses"]["NoAnnounce"] = ["/ip4/0.0.0.0/ipcidr/0", "/ip6/::/ipcidr/0"]
    cfg["Bootstrap"] = []
    cfg.setdefault("AutoConf", {})["Enabled"] = False
    cfg.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    routing = cfg.setdefault("Routing", {})
    routing["Type"] = "none"
    routing["DelegatedRouters"] = []
    cfg.setdefault("Ipns", {})["DelegatedPublishers"] = []
    cfg.setdefault("DNS", {})["Resolvers"] = {}
    swarm_cfg = cfg.setdefault("Swarm", {})
    swarm_cfg["DisableNatPortMap"] = True
    swarm_cfg.setdefault("RelayClient", {})["Enabled"] = False
    swarm_cfg.setdefault("RelayService", {})["Enabled"] = False
    cfg.setdefault("AutoNAT", {})["ServiceMode"] = "disabled"
    write_private(path, json.dumps(cfg, indent=2).encode())


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


def _bind_host(url: str) -> str:
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


def _ensure_free(host: str, port: int, what: str, setting: str) -> None:
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


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    try:
        subprocess.run(argv, env=env, check=True, capture_output=True, timeout=120)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or exc.stdout or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise ServiceError(f"{what} failed (exit {exc.returncode}): {' | '.join(tail)}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"{what} failed: {exc}") from exc


def log_tail(logfile: Path, lines: int = 5) -> str:
    """The last lines of a service log, folded onto one line for an error message."""
    try:
        text = logfile.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "no log"
    tail = [line.strip() for line in text.strip().splitlines()[-lines:] if line.strip()]
    return f"log {logfile} ends: " + " | ".join(tail)


@contextlib.contextmanager
def running_stack(stack: Stack, notify: Notify = _quiet) -> Iterator[Stack]:
    """``up`` on enter, ``down`` on exit: the fixture shape tests and scripts use."""
    stack.up(notify)
    try:
        yield stack
    finally:
        stack.down()


@contextlib.contextmanager
def ephemeral_anvil(
    tools: Tools, *, chain_id: int = 31337, hardfork: str = "prague", timeout: float = 30.0
) -> Iterator[str]:
    """A throwaway anvil on a free loopback port, no state file; yields its RPC URL.

    For benchmarks and tests that want a chain of their own; the stack's anvil is `Stack.up`.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        str(tools.find("anvil")), "--host", "127.0.0.1", "--port", str(port),
        "--chain-id", str(chain_id), "--hardfork", hardfork, "--silent", "--no-cors",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                message = (
                    (proc.stderr.read() if proc.stderr else b"").decode(errors="replace").strip()
                )
                raise ServiceError(
                    f"anvil exited with code {proc.returncode} while starting: {message}"
                )
            try:
                connect(url, timeout=2)
                break
            except ServiceError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
