"""The stack: a loop over its services for ``up``, ``down`` and ``status``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from provenance.chain.keys import dev_account
from provenance.config import Config
from provenance.stack.anvil import Anvil
from provenance.stack.contracts import Contracts, Deployer
from provenance.stack.dockerd import Dockerd
from provenance.stack.kubo import KuboDaemon
from provenance.stack.process import Processes, Tools
from provenance.stack.service import Notify, Service, StackStatus, quiet


class Stack:
    """The local stack described by ``config``: anvil, kubo, a Docker engine, the contracts.

    ``up`` starts the services in that order (each skips what runs, or only probes what is
    remote) and, when one fails, stops what this call started; ``down`` stops, in reverse
    order, only what ``up`` started; ``status`` probes each."""

    def __init__(self, config: Config, tools: Tools, *, deployer: Deployer = dev_account) -> None:
        self.config = config
        self.tools = tools
        self.state_dir = config.state_dir
        self.processes = Processes(self.state_dir)
        self.anvil = Anvil(config, tools, self.processes)
        self.kubo = KuboDaemon(config, tools, self.processes)
        self.dockerd = Dockerd(config, tools, self.processes, local_stack=self.runs_anything)
        self.contracts = Contracts(config, chain_is_ours=self.anvil.is_running, deployer=deployer)

    @property
    def services(self) -> tuple[Service, ...]:
        """In start order; ``down`` goes the other way."""
        return (self.anvil, self.kubo, self.dockerd, self.contracts)

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    # ------------------------------------------------------------------ paths
    @property
    def run_dir(self) -> Path:
        return self.processes.run_dir

    @property
    def log_dir(self) -> Path:
        return self.processes.log_dir

    def pidfile(self, name: str) -> Path:
        return self.processes.pidfile(name)

    def logfile(self, name: str) -> Path:
        return self.processes.logfile(name)

    @property
    def ipfs_repo(self) -> Path:
        return self.kubo.repo

    @property
    def anvil_state(self) -> Path:
        return self.anvil.state_file

    @property
    def docker_run_dir(self) -> Path:
        return self.dockerd.run_dir

    @property
    def own_docker_host(self) -> str:
        return self.dockerd.own_host

    def docker_host(self) -> str:
        """The engine to use: configured, else the one ``up`` started, else the system's."""
        return self.dockerd.host()

    # ------------------------------------------------------------------ life cycle
    def up(self, notify: Notify = quiet, deployer: Deployer | None = None) -> None:
        """Start what is not running, deploy what is missing; on failure stop what this started."""
        if deployer is not None:
            self.contracts.deployer = deployer
        self.processes.prepare()
        before = {service.name: service.is_running() for service in self.services}
        try:
            for service in self.services:
                service.up(notify)
        except BaseException:
            for service in reversed(self.services):
                if not before[service.name]:
                    service.stop()
            raise

    def down(self, notify: Notify = quiet) -> list[str]:
        """Stop what ``up`` started (and nothing else); return the names stopped."""
        stopped = []
        for service in reversed(self.services):
            if service.stop():
                stopped.append(service.name)
                notify(f"stopped {service.name}")
        return stopped

    def is_running(self, name: str) -> bool:
        """True when ``up`` started ``name`` (anvil, ipfs, dockerd) and it still runs."""
        return self.processes.running(name)

    def runs_anything(self) -> bool:
        """True when ``up`` of this state dir runs any of its programs: a local stack."""
        return any(service.is_running() for service in self.services)

    def status(self) -> StackStatus:
        """One probe per service (see :class:`~provenance.stack.service.ServiceStatus`)."""
        return StackStatus(
            config=str(self.config.source) if self.config.source else None,
            state_dir=str(self.state_dir),
            parts=tuple(service.status() for service in self.services),
        )

    # ------------------------------------------------- for tests that kill a daemon
    def _record(self, name: str) -> dict[str, Any] | None:
        return self.processes.record(name)

    def _stop(self, name: str, timeout: float = 30.0) -> bool:
        return self.processes.stop(name, timeout)


@contextlib.contextmanager
def running_stack(stack: Stack, notify: Notify = quiet) -> Iterator[Stack]:
    """``up`` on enter, ``down`` on exit: the fixture shape tests and scripts use."""
    stack.up(notify)
    try:
        yield stack
    finally:
        stack.down()
