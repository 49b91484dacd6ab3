"""The composition root: one place that turns a configuration into working clients.

Every command, the attesting server and the demo get their chain clients, storage, Docker
engine, signer and verification policy from a :class:`Session`, so they agree on which kubo
node, which contracts and which trust roots are meant::

    import provenance

    with provenance.connect() as session:          # the config file, env and running stack
        record = session.registry.record(session.resolve_id("0x1f2e3d4c"))
        report = session.verifier().model(record.id)

Nothing is contacted until it is first used: ``session.storage`` does not start a web3
client, ``session.registry`` does not touch IPFS. Clients that hold connections (storage,
index, engine) are closed by :meth:`Session.close` (or leaving the ``with`` block).

Storage is the first of: ``[ipfs] backend = "kubo"`` or an explicit ``[ipfs] api``; the kubo
node ``provenance up`` runs; an explicit ``[ipfs] gateway`` (read-only, every block checked
against its CID: an auditor needs no IPFS node); the embedded store in the state folder.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provenance.config import Config, is_loopback_url
from provenance.errors import ConfigError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import Web3

    from provenance.certificate import Certificate
    from provenance.chain.attestor import AttestorContract
    from provenance.chain.deploy import Deployment
    from provenance.chain.index import LineageIndex
    from provenance.chain.registry import Registry
    from provenance.chain.tx import Transactor
    from provenance.images import DockerEngine
    from provenance.stack import Stack, Tools
    from provenance.storage import Storage, StorageKind
    from provenance.verify.policy import Policy
    from provenance.verify.verifier import Verifier

Password = str | Callable[[], str] | None
"""A keystore password, or a function that asks for it (called only when a key is needed)."""

MIN_ID_PREFIX = 8
"""The fewest hex digits of a shortened model id that :meth:`Session.resolve_id` accepts."""

_HEX = re.compile(r"[0-9a-fA-F]+")

NO_REGISTRY_ADVICE = (
    "set [chain.contracts] ModelRegistry in the config (or PROVENANCE_REGISTRY) to the registry "
    "you trust, or run `provenance up` (a local chain) or `provenance deploy`"
)


def default_tools() -> Tools:
    """Where the stack's programs (anvil, ipfs, dockerd) are looked for: the setup script links
    them into the virtual environment's bin folder (and builds them into .tools/bin), which
    come before PATH."""
    from provenance.stack import Tools

    here = Path(sys.executable).parent
    folders = [here, Path(sys.prefix) / "bin"]
    return Tools(search_path=tuple(dict.fromkeys(folders)), path_env=os.environ.get("PATH"))


class Session:
    """Clients for one configuration, built on first use and shared (see the module doc).

    ``keystore`` / ``password``: the account that signs and sends (else ``[chain] keystore``;
    on a loopback dev chain with neither, anvil's first dev account). ``trust``, ``registry``,
    ``attestor``, ``chain_id`` and the ``policy_options`` (``data_sources``, ``fetch_timeout``,
    ``fetch_data``) override the configuration's trust roots, as the CLI's flags do."""

    def __init__(
        self,
        config: Config,
        *,
        keystore: Path | None = None,
        password: Password = None,
        trust: Iterable[str] = (),
        registry: str | None = None,
        attestor: str | None = None,
        chain_id: int | None = None,
        tools: Tools | None = None,
        **policy_options: Any,
    ) -> None:
        self.config = config
        self._keystore = keystore
        self._password = password
        self._trust = tuple(trust)
        self._registry_flag = registry
        self._attestor_flag = attestor
        self._chain_id_flag = chain_id
        self._tools = tools
        self._policy_options = policy_options
        self._closers: list[Callable[[], None]] = []
        self._transactors: dict[str, Transactor] = {}

    # ------------------------------------------------------------------ life cycle
    def close(self) -> None:
        """Close what the session opened (storage, index, engine), newest first."""
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ local stack
    @cached_property
    def tools(self) -> Tools:
        return self._tools or default_tools()

    @cached_property
    def stack(self) -> Stack:
        """The local stack (``provenance up``) of this configuration's state folder."""
        from provenance.stack import Stack

        return Stack(self.config, self.tools)

    # ------------------------------------------------------------------ chain
    @cached_property
    def w3(self) -> Web3:
        """A web3 client of ``[chain] rpc_url`` (ServiceError when nothing answers)."""
        from provenance.chain.client import connect

        return connect(self.config.chain.rpc_url)

    @cached_property
    def chain_id(self) -> int:
        """The chain id the RPC serves."""
        return int(self.w3.eth.chain_id)

    @property
    def on_dev_chain(self) -> bool:
        """The RPC is on this machine (loopback): anvil's dev accounts may sign."""
        return is_loopback_url(self.config.chain.rpc_url)

    @cached_property
    def deployment(self) -> Deployment | None:
        """The deployment file, when there is one for the chain the RPC serves."""
        from provenance.chain.deploy import Deployment

        found = Deployment.read(self.config.deployment_file)
        if found is None or found.chain_id != self.chain_id:
            return None
        return found

    @cached_property
    def policy(self) -> Policy:
        """The trust roots (:class:`~provenance.verify.policy.Policy`) of the configuration
        and the session's overrides; never taken from what is verified."""
        from provenance.verify.policy import policy_from_config

        return policy_from_config(
            self.config,
            trust=self._trust,
            chain_id=self._chain_id_flag,
            registry=self._registry_flag,
            attestor=self._attestor_flag,
            **self._policy_options,
        )

    def _from_block(self, name: str, address: str) -> int:
        """The block to read a contract's events from: its deployment block when the
        deployment file names that very contract, else 0."""
        deployment = self.deployment
        if deployment is not None and name in deployment.contracts:
            record = deployment.contracts[name]
            if record.address.lower() == address.lower():
                return int(record.block)
        return 0

    def _registry_address(self) -> str:
        address = self.policy.registry
        if address is None:
            raise ConfigError(
                f"no ModelRegistry is configured and the deployment file "
                f"{self.config.deployment_file} names none for this chain: {NO_REGISTRY_ADVICE}"
            )
        if self.policy.chain_id is not None and self.policy.chain_id != self.chain_id:
            raise ConfigError(
                f"the configured chain id is {self.policy.chain_id} but the RPC "
                f"{self.config.chain.rpc_url} serves chain {self.chain_id}: fix [chain] chain_id "
                "or rpc_url"
            )
        return address

    @cached_property
    def registry(self) -> Registry:
        """The trusted ModelRegistry, read-only (see :meth:`registry_for` to send)."""
        from provenance.chain.registry import Registry

        address = self._registry_address()
        return Registry(self.w3, address, from_block=self._from_block("ModelRegistry", address))

    def registry_for(self, account: LocalAccount | None = None) -> Registry:
        """The trusted ModelRegistry, sending as ``account`` (default: :attr:`signer`)."""
        from provenance.chain.registry import Registry

        read = self.registry
        return Registry(self.w3, read.address, self.transactor(account), from_block=read.from_block)

    @property
    def has_attestor(self) -> bool:
        return self.policy.attestor is not None

    @cached_property
    def attestor(self) -> AttestorContract:
        """The trusted OutputAttestor, read-only (see :meth:`attestor_for` to send)."""
        from provenance.chain.attestor import AttestorContract

        return AttestorContract(self.w3, self._attestor_address())

    def attestor_for(self, account: LocalAccount | None = None) -> AttestorContract:
        """The trusted OutputAttestor, sending as ``account`` (default: :attr:`signer`)."""
        from provenance.chain.attestor import AttestorContract

        return AttestorContract(self.w3, self._attestor_address(), self.transactor(account))

    @property
    def attestor_from_block(self) -> int:
        """The block to read the OutputAttestor's events from."""
        return self._from_block("OutputAttestor", self._attestor_address())

    def _attestor_address(self) -> str:
        address = self.policy.attestor
        if address is None:
            raise ConfigError(
                "no OutputAttestor is configured and the deployment file "
                f"{self.config.deployment_file} names none for this chain: set "
                "[chain.contracts] OutputAttestor (or PROVENANCE_ATTESTOR), or run "
                "`provenance up` or `provenance deploy`"
            )
        return address

    @cached_property
    def index(self) -> LineageIndex:
        """The family-tree index of the trusted registry, synced once from its events (kept
        in the state folder, one file per chain and registry)."""
        from provenance.chain.index import LineageIndex

        registry = self.registry
        path = self.config.state_dir / "index" / f"{self.chain_id}-{registry.address}.sqlite"
        index = LineageIndex(path)
        self._closers.append(index.close)
        index.sync(registry)
        return index

    def resolve_id(self, text: str) -> bytes:
        """A model id from its full form (``0x`` + 64 hex digits) or a unique prefix of at
        least 8 hex digits (``0x`` optional), looked up in the index; ConfigError otherwise."""
        from provenance.registration import as_bytes32

        digits = text[2:] if text[:2].lower() == "0x" else text
        if len(digits) == 64:
            return as_bytes32(text, "model id")
        if not _HEX.fullmatch(digits) or len(digits) < MIN_ID_PREFIX or len(digits) > 64:
            raise ConfigError(
                f"model id {text!r} is neither 0x + 64 hex digits nor a prefix of at least "
                f"{MIN_ID_PREFIX} hex digits"
            )
        found = self.index.ids_with_prefix(digits.lower(), limit=2)
        if not found:
            raise ConfigError(f"no registered model id starts with {text}")
        if len(found) > 1:
            raise ConfigError(f"model id prefix {text} is ambiguous: give more digits")
        return found[0]

    # ------------------------------------------------------------------ signing
    def _password_value(self) -> str:
        return _password_of(self._password)

    @cached_property
    def signer(self) -> LocalAccount:
        """The account that signs and sends: the keystore, else anvil's first dev account on
        a loopback chain; ConfigError on a remote chain without a keystore."""
        from provenance.chain.keys import dev_account, load_keystore

        keystore = self._keystore or self.config.chain.keystore
        if keystore is not None:
            return load_keystore(keystore, self._password_value())
        if self.on_dev_chain:
            return dev_account(self.w3)
        raise ConfigError(
            "sending on a remote chain needs a keystore: --keystore FILE, PROVENANCE_KEYSTORE "
            "or [chain] keystore (create one with `provenance key new`)"
        )

    def transactor(self, account: LocalAccount | None = None) -> Transactor:
        """The one transaction sender of ``account`` (default :attr:`signer`) in this session:
        every client sending as that account shares its nonce bookkeeping."""
        from provenance.chain.tx import Transactor

        sender = account or self.signer
        if sender.address not in self._transactors:
            self._transactors[sender.address] = Transactor(self.w3, sender)
        return self._transactors[sender.address]

    # ------------------------------------------------------------------ storage, engine
    @cached_property
    def _stack_runs_kubo(self) -> bool:
        return self.stack.is_running("ipfs")

    @cached_property
    def storage_kind(self) -> StorageKind:
        """``kubo``, ``gateway`` or ``local``: which backend :attr:`storage` is (the rule of
        :func:`provenance.storage.storage_kind`, with the local stack's kubo)."""
        from provenance.storage import storage_kind

        return storage_kind(self.config, lambda: self._stack_runs_kubo)

    @property
    def storage_location(self) -> str:
        """Where :attr:`storage` is: the kubo API or gateway URL, or the local store's folder."""
        kind = self.storage_kind
        if kind == "kubo":
            return self.config.ipfs.api
        if kind == "gateway":
            return self.config.ipfs.gateway
        return str(self.config.ipfs_store)

    @cached_property
    def storage(self) -> Storage:
        """Where certificates, data and images are stored and fetched (see the module doc)."""
        from provenance.storage import open_storage

        store = open_storage(self.config, stack_runs_kubo=lambda: self._stack_runs_kubo)
        self._closers.append(store.close)
        return store

    @cached_property
    def engine(self) -> DockerEngine:
        """The Docker engine: ``[docker] host``, else the one ``provenance up`` started, else
        the system's (ServiceError when none answers)."""
        from provenance.images import DockerEngine

        engine = DockerEngine(self.stack.docker_host())
        self._closers.append(engine.close)
        return engine

    # ------------------------------------------------------------------ verification
    def certificate(self, model_id: bytes) -> Certificate:
        """The certificate of a registered model, from :attr:`storage` by the digest on the
        trusted registry, checked (:func:`provenance.registered.fetch_certificate`)."""
        from provenance.registered import fetch_certificate

        return fetch_certificate(model_id, self.registry, self.storage)

    def verifier(self, *, engine: bool = False) -> Verifier:
        """A :class:`~provenance.verify.verifier.Verifier` on the session's policy, registry,
        storage and index (and its Docker engine, for image checks, when ``engine``)."""
        from provenance.verify.verifier import Verifier

        return Verifier(
            self.policy,
            registry=self.registry,
            storage=self.storage,
            engine=self.engine if engine else None,
            index=self.index,
        )

    # ------------------------------------------------------------------ inference nodes
    def node_account(
        self, model_id: bytes, keystore: Path | None = None, password: Password = None
    ) -> LocalAccount:
        """An inference node's signing key for ``model_id``: an encrypted ``keystore``, else on
        a loopback dev chain a key made once and kept in the state folder (mode 0600), one per
        chain and model; ConfigError on a remote chain without a keystore."""
        from eth_account import Account

        from provenance.chain.keys import load_keystore

        if keystore is not None:
            return load_keystore(keystore, _password_of(password))
        if not self.on_dev_chain:
            raise ConfigError(
                "serving on a remote chain needs the node's keystore (--node-keystore FILE)"
            )
        path = self.config.state_dir / "nodes" / f"{self.chain_id}-0x{model_id.hex()}.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(Account.create().key.hex() + "\n")
        account: LocalAccount = Account.from_key(path.read_text(encoding="utf-8").strip())
        return account


def _password_of(password: Password) -> str:
    if password is None:
        raise ConfigError(
            "keystore password needed: --password-file or PROVENANCE_KEYSTORE_PASSWORD"
        )
    return password if isinstance(password, str) else password()


def connect(
    config: Config | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    config_file: Path | None = None,
    **options: Any,
) -> Session:
    """A :class:`Session` for ``config`` (else the configuration found as the CLI finds it:
    ``config_file``, ``PROVENANCE_CONFIG``, ``./provenance.toml``, the user's config; then the
    ``PROVENANCE_*`` variables of ``environ``, default ``os.environ``). ``options`` are
    :class:`Session`'s."""
    if config is None:
        from provenance.config import load_config

        config = load_config(
            os.environ if environ is None else environ,
            cwd=cwd or Path.cwd(),
            explicit=config_file,
        )
    return Session(config, **options)


__all__ = ["MIN_ID_PREFIX", "Password", "Session", "connect", "default_tools"]
