"""The chain: anvil on loopback with its state in ``<state>/anvil/state.json``, or a remote
RPC that is only probed; and :func:`ephemeral_anvil`, a throwaway chain for tests."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from provenance.chain.client import connect
from provenance.config import Config, is_loopback_url, url_port
from provenance.errors import ServiceError
from provenance.stack.process import (
    Processes,
    Tools,
    bind_host,
    ensure_free,
    free_port,
    private_dir,
)
from provenance.stack.service import Notify, ServiceStatus


class Anvil:
    """``[chain] rpc_url``: an anvil of this stack's own when the URL is loopback."""

    name = "anvil"

    def __init__(self, config: Config, tools: Tools, processes: Processes) -> None:
        self.config = config
        self.tools = tools
        self.processes = processes

    @property
    def state_file(self) -> Path:
        return self.config.state_dir / "anvil" / "state.json"

    def is_running(self) -> bool:
        return self.processes.running(self.name)

    def stop(self) -> bool:
        return self.processes.stop(self.name)

    def up(self, notify: Notify) -> None:
        chain = self.config.chain
        url = chain.rpc_url
        if not is_loopback_url(url):
            connect(url)
            notify(f"chain: remote RPC {url} answers (not managed here)")
            return
        if self.is_running():
            notify(f"chain: anvil already running at {url}")
            return
        host, port = bind_host(url), url_port(url)
        ensure_free(host, port, "the chain RPC (anvil)", "PROVENANCE_RPC_URL")
        private_dir(self.state_file.parent)
        argv = [
            str(self.tools.find("anvil")),
            "--host", host,
            "--port", str(port),
            "--chain-id", str(chain.chain_id),
            "--state", str(self.state_file),
            "--state-interval", str(chain.state_interval),
            "--hardfork", "prague",
            # its dev accounts are unlocked: no web page may drive them from a browser
            "--no-cors",
        ]  # fmt: skip
        self.processes.spawn(self.name, argv, ready=self._ready)
        notify(f"chain: anvil started at {url} (chain {chain.chain_id})")

    def _ready(self) -> bool:
        url, expected = self.config.chain.rpc_url, self.config.chain.chain_id
        try:
            w3 = connect(url, timeout=2)
        except ServiceError:
            return False
        if w3.eth.chain_id != expected:
            raise ServiceError(
                f"anvil at {url} reports chain {w3.eth.chain_id}, expected {expected}"
            )
        return True

    def status(self) -> ServiceStatus:
        chain = self.config.chain
        base = {"rpc_url": chain.rpc_url}
        managed = self.is_running()
        try:
            w3 = connect(chain.rpc_url, timeout=5)
            facts = {
                **base,
                "chain_id": w3.eth.chain_id,
                "block": w3.eth.block_number,
                "client": w3.client_version,
            }
        except ServiceError as exc:
            return ServiceStatus(
                "chain", False, chain.rpc_url, managed=managed, error=str(exc), facts=base
            )
        detail = f"chain {facts['chain_id']}, block {facts['block']}, {facts['client']}"
        error = None
        if facts["chain_id"] != chain.chain_id:
            error = f"chain id {facts['chain_id']} differs from the configured {chain.chain_id}"
        return ServiceStatus(
            "chain",
            error is None,
            chain.rpc_url,
            managed=managed,
            version=str(facts["client"]),
            detail=detail,
            error=error,
            facts=facts,
        )


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
