"""The local stack: anvil, a kubo daemon and a Docker engine on loopback, and the contracts.

:class:`Stack` loops over one :class:`Service` per part (``anvil.py``, ``kubo.py``,
``dockerd.py``, ``contracts.py``); ``process.py`` owns what they share (spawning, pid files in
``<state>/run``, logs, ports, private folders). ``Stack.up`` starts what is not running,
deploys the contracts when their recorded addresses hold no code, and leaves nothing
half-started when a step fails; ``Stack.down`` stops only what ``up`` started;
``Stack.status`` probes every part into a typed :class:`StackStatus`.

Remote endpoints (a testnet RPC, a remote kubo or IPFS Cluster proxy, a remote Docker engine)
are never started or stopped, only probed.
"""

from provenance.stack.anvil import Anvil, ephemeral_anvil
from provenance.stack.contracts import Contracts
from provenance.stack.core import Stack, running_stack
from provenance.stack.dockerd import SYSTEM_DOCKER, Dockerd
from provenance.stack.kubo import KuboDaemon, configure_kubo_repo
from provenance.stack.process import (
    START_TIMEOUT,
    Processes,
    Tools,
    free_port,
    log_tail,
    port_is_free,
    private_dir,
    write_private,
)
from provenance.stack.service import Notify, Service, ServiceStatus, StackStatus

__all__ = [
    "START_TIMEOUT",
    "SYSTEM_DOCKER",
    "Anvil",
    "Contracts",
    "Dockerd",
    "KuboDaemon",
    "Notify",
    "Processes",
    "Service",
    "ServiceStatus",
    "Stack",
    "StackStatus",
    "Tools",
    "configure_kubo_repo",
    "ephemeral_anvil",
    "free_port",
    "log_tail",
    "port_is_free",
    "private_dir",
    "running_stack",
    "write_private",
]
