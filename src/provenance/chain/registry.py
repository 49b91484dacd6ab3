"""A typed client of the ModelRegistry contract.

    registry = Registry(w3, address, Transactor(w3, account))
    alpha = registry.register(Registration(cert_digest, model_digest, data_root))
    beta = registry.register(Registration(c2, m2, d2, parents=(Parent(alpha.id, "fine-tune"),)))
    registry.revoke(alpha.id, reason_digest)
    registry.is_tainted(beta.id)  # True: an ancestor is revoked
    registry.bind_image(beta.id, image_id, record_digest)  # beta's registrant only
    registry.image_binding(beta.id)  # ImageBinding(image_id, record_digest, bound_at)

Reads come from the contract; tree queries come from its events (``eth_getLogs``), or much
faster from a synced :class:`~provenance.chain.index.LineageIndex`. Custom errors decode to
:class:`~provenance.errors.ContractRevertError` with the error's name and arguments.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import requests
from eth_account.messages import encode_typed_data
from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3 import Web3
from web3._utils.events import get_event_data
from web3.exceptions import Web3Exception

from provenance.certificate import Signer
from provenance.chain.contract import ContractClient
from provenance.chain.deploy import Deployment
from provenance.chain.tx import Transactor
from provenance.chain.types import ImageBinding, ModelRecord, Status
from provenance.errors import ChainError, ContractRevertError
from provenance.registration import (
    EIP712_DOMAIN_TYPES,
    EIP712_NAME,
    EIP712_TYPES,
    EIP712_VERSION,
    ZERO32,
    Parent,
    Registration,
    Relation,
)

CONTRACT = "ModelRegistry"
ROLES = {"registrant": keccak(text="REGISTRANT_ROLE"), "auditor": keccak(text="AUDITOR_ROLE")}
ROLE_NAMES = ("admin", "registrant", "auditor")
"""The registry's roles: ``admin`` (AccessControl's DEFAULT_ADMIN_ROLE) grants and revokes the
others; ``registrant`` may register while registration is on the allowlist; ``auditor`` may
revoke any model."""


@dataclass(frozen=True)
class Registered:
    """The outcome of one registration: the id, and where it was anchored."""

    id: bytes
    registrant: str
    transaction: str | None
    block: int | None
    already: bool = False  # registered before, with the same content and registrant


@dataclass(frozen=True)
class RoleHolder:
    """``account`` holds ``role`` (a name of :data:`ROLE_NAMES`, else the role's hex), granted
    by ``granted_by`` in ``block``."""

    role: str
    account: str
    granted_by: str
    block: int
    transaction: str

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "account": self.account,
            "granted_by": self.granted_by,
            "block": self.block,
            "transaction": self.transaction,
        }


@dataclass(frozen=True)
class RegistryEvent:
    """One decoded event of the registry, in chain order."""

    name: str
    block: int
    block_hash: bytes
    transaction: str
    log_index: int
    args: dict[str, Any]


class Registry(ContractClient):
    """The ModelRegistry at ``address``; writes need a :class:`Transactor`."""

    def __init__(
        self,
        w3: Web3,
        address: str,
        transactor: Transactor | None = None,
        *,
        from_block: int = 0,
        log_chunk: int = 10_000,
    ) -> None:
        super().__init__(CONTRACT, w3, address, transactor)
        self.from_block = from_block
        self.log_chunk = log_chunk
        self._events = {
            event_abi_to_log_topic(cast(ABIEvent, e)): e for e in self.abi if e["type"] == "event"
        }

    @classmethod
    def from_deployment(
        cls, w3: Web3, deployment_file: Path, transactor: Transactor | None = None
    ) -> Registry:
        """The registry recorded in a deployment file (as written by `provenance up`/`deploy`)."""
        deployment = Deployment.read(deployment_file)
        if deployment is None or CONTRACT not in deployment.contracts:
            raise ChainError(f"no {CONTRACT} in deployment file {deployment_file}")
        if deployment.chain_id != w3.eth.chain_id:
            raise ChainError(
                f"deployment file {deployment_file} is for chain {deployment.chain_id}, but the "
                f"RPC serves chain {w3.eth.chain_id}"
            )
        record = deployment.contracts[CONTRACT]
        return cls(w3, record.address, transactor, from_block=record.block)

    # ------------------------------------------------------------ reads
    def record(self, model_id: bytes) -> ModelRecord:
        registrant, at, status, ack = self._call(self.contract.functions.recordOf(model_id))
        return ModelRecord(
            id=bytes(model_id),
            registrant=to_checksum_address(registrant),
            registered_at=int(at),
            status=Status(status),
            revoked_parent_acknowledged=bool(ack),
        )

    def status(self, model_id: bytes) -> Status:
        return Status(self._call(self.contract.functions.statusOf(model_id)))

    def image_binding(self, model_id: bytes) -> ImageBinding | None:
        """The image the model's registrant bound to it last; None when none is bound."""
        image_id, record_digest, bound_at = self._call(self.contract.functions.imageOf(model_id))
        if bytes(image_id) == ZERO32:
            return None
        return ImageBinding(bytes(model_id), bytes(image_id), bytes(record_digest), int(bound_at))

    def image_bindings(self, model_id: bytes) -> list[RegistryEvent]:
        """Every ImageBound event of ``model_id``, oldest first: the history of its images."""
        return self._logs([self._topic("ImageBound"), HexBytes(model_id)])

    def exists(self, model_id: bytes) -> bool:
        return self.status(model_id) is not Status.NONE

    @property
    def sender(self) -> str | None:
        """The account this client sends as (its transactor's), None when it only reads."""
        return None if self.transactor is None else to_checksum_address(self.transactor.address)

    def is_open(self) -> bool:
        return bool(self._call(self.contract.functions.openRegistration()))

    def nonce(self, account: str) -> int:
        return int(self._call(self.contract.functions.nonces(to_checksum_address(account))))

    def has_role(self, role: str, account: str) -> bool:
        return bool(
            self._call(self.contract.functions.hasRole(_role(role), to_checksum_address(account)))
        )

    def computed_id(self, registration: Registration, registrant: str) -> bytes:
        """The id as the contract computes it for ``registrant`` (tests compare it with
        ``Registration.model_id_for``)."""
        fn = self.contract.functions.computeId(
            registration.as_abi(), to_checksum_address(registrant)
        )
        return bytes(self._call(fn))

    def delegated_digest(
        self, registration: Registration, registrant: str, nonce: int, deadline: int
    ) -> bytes:
        """The EIP-712 digest as the contract computes it."""
        fn = self.contract.functions.delegatedDigest(
            registration.as_abi(), to_checksum_address(registrant), nonce, deadline
        )
        return bytes(self._call(fn))

    # ----------------------------------------------------------- writes
    def register(self, registration: Registration) -> Registered:
        """Register for the transactor's account. Registering the same content again by the
        same registrant is an idempotent success (``already=True``)."""
        tx = self._tx()
        try:
            receipt = self._send(
                self.contract.functions.register(registration.as_abi()), "register"
            )
        except ContractRevertError as exc:
            return self._already(exc, registration, tx.address)
        return Registered(
            id=registration.model_id_for(tx.address),
            registrant=tx.address,
            transaction=_hash(receipt),
            block=int(receipt["blockNumber"]),
        )

    def register_batch(self, registrations: Sequence[Registration]) -> list[Registered]:
        """Register many models in one transaction (parents may be earlier entries)."""
        tx = self._tx()
        receipt = self._send(
            self.contract.functions.registerBatch([r.as_abi() for r in registrations]),
            f"register a batch of {len(registrations)}",
        )
        return [
            Registered(
                r.model_id_for(tx.address), tx.address, _hash(receipt), int(receipt["blockNumber"])
            )
            for r in registrations
        ]

    def sign_registration(
        self,
        account: Signer,
        registration: Registration,
        *,
        deadline: int,
        nonce: int | None = None,
    ) -> bytes:
        """The registrant's EIP-712 signature over a delegated registration."""
        if nonce is None:
            nonce = self.nonce(account.address)
        signable = encode_typed_data(
            full_message=self.typed_data(registration, account.address, nonce, deadline)
        )
        return bytes(account.sign_message(signable).signature)

    def typed_data(
        self, registration: Registration, registrant: str, nonce: int, deadline: int
    ) -> dict[str, Any]:
        return {
            "types": {
                "EIP712Domain": EIP712_DOMAIN_TYPES,
                **EIP712_TYPES,
            },
            "primaryType": "Register",
            "domain": {
                "name": EIP712_NAME,
                "version": EIP712_VERSION,
                "chainId": self.w3.eth.chain_id,
                "verifyingContract": self.address,
            },
            "message": registration.eip712_message(registrant, nonce, deadline),
        }

    def register_for(
        self, registration: Registration, registrant: str, deadline: int, signature: bytes
    ) -> Registered:
        """Submit a registration ``registrant`` signed (the transactor pays, e.g. a CI relayer)."""
        fn = self.contract.functions.registerFor(
            registration.as_abi(), to_checksum_address(registrant), deadline, signature
        )
        try:
            receipt = self._send(fn, "delegated register")
        except ContractRevertError as exc:
            return self._already(exc, registration, registrant)
        return Registered(
            registration.model_id_for(registrant),
            to_checksum_address(registrant),
            _hash(receipt),
            int(receipt["blockNumber"]),
        )

    def register_signed(
        self, account: Signer, registration: Registration, *, ttl: int = 3600
    ) -> Registered:
        """Register for ``account`` while the transactor pays: ``account`` signs the EIP-712
        Register message (deadline ``ttl`` seconds after the latest block) and the transactor
        relays it through ``registerFor``, so ``account`` is the registrant the id binds."""
        try:
            now = int(self.w3.eth.get_block("latest")["timestamp"])
        except (requests.RequestException, Web3Exception, OSError) as exc:
            raise ChainError(f"{CONTRACT} at {self.address}: the chain RPC failed: {exc}") from exc
        deadline = now + ttl
        signature = self.sign_registration(account, registration, deadline=deadline)
        return self.register_for(registration, str(account.address), deadline, signature)

    def revoke(self, model_id: bytes, reason_digest: bytes) -> str:
        """Revoke a model (its registrant or an auditor); returns the transaction hash."""
        return _hash(self._send(self.contract.functions.revoke(model_id, reason_digest), "revoke"))

    def bind_image(self, model_id: bytes, image_id: bytes, record_digest: bytes) -> str:
        """Bind a Docker image to a registered, active model (only its registrant may; a later
        binding replaces it): ``image_id`` is the image's config digest, ``record_digest`` the
        sha-256 of its image record, stored in IPFS as one raw block. The transaction hash."""
        fn = self.contract.functions.bindImage(model_id, image_id, record_digest)
        return _hash(self._send(fn, "bind image"))

    def grant_role(self, role: str, account: str) -> str:
        fn = self.contract.functions.grantRole(_role(role), to_checksum_address(account))
        return _hash(self._send(fn, f"grant {role} role"))

    def revoke_role(self, role: str, account: str) -> str:
        fn = self.contract.functions.revokeRole(_role(role), to_checksum_address(account))
        return _hash(self._send(fn, f"revoke {role} role"))

    def role_holders(self, role: str | None = None) -> list[RoleHolder]:
        """Who holds ``role`` (every role when None) now, replayed from the RoleGranted and
        RoleRevoked events since :attr:`from_block`; by role, then grant order."""
        topics: list[Any] = [
            [self._topic("RoleGranted"), self._topic("RoleRevoked")],
            None if role is None else HexBytes(_role(role)),
        ]
        names = {_role(name): name for name in ROLE_NAMES}
        try:
            events = self._logs(topics)
        except (requests.RequestException, Web3Exception, OSError) as exc:
            raise ChainError(f"{CONTRACT} at {self.address}: the chain RPC failed: {exc}") from exc
        current: dict[tuple[bytes, str], RoleHolder] = {}
        for event in sorted(events, key=lambda e: (e.block, e.log_index)):
            key = (bytes(event.args["role"]), to_checksum_address(event.args["account"]))
            current.pop(key, None)  # a grant after a revocation moves to the end
            if event.name == "RoleGranted":
                current[key] = RoleHolder(
                    role=names.get(key[0], "0x" + key[0].hex()),
                    account=key[1],
                    granted_by=to_checksum_address(event.args["sender"]),
                    block=event.block,
                    transaction=event.transaction,
                )
        rank = {name: i for i, name in enumerate(ROLE_NAMES)}
        return sorted(current.values(), key=lambda h: rank.get(h.role, len(rank)))

    def _already(
        self, exc: ContractRevertError, registration: Registration, sender: str
    ) -> Registered:
        if exc.error != "ModelAlreadyRegistered":
            raise exc
        model_id = registration.model_id_for(sender)
        record = self.record(model_id)
        if record.registrant != to_checksum_address(sender):
            raise exc  # cannot happen while the id binds the registrant; never claim success
        return Registered(model_id, record.registrant, None, None, already=True)

    # ----------------------------------------------------------- events
    def events(
        self, from_block: int | None = None, to_block: int | None = None
    ) -> Iterator[RegistryEvent]:
        """Every registry event in [from_block, to_block], in chain order, fetched in chunks."""
        start = self.from_block if from_block is None else from_block
        end = self.w3.eth.block_number if to_block is None else to_block
        while start <= end:
            stop = min(end, start + self.log_chunk - 1)
            logs = self.w3.eth.get_logs(
                {"address": self.address, "fromBlock": start, "toBlock": stop}
            )
            for log in logs:
                event = self._decode(log)
                if event is not None:
                    yield event
            start = stop + 1

    def _decode(self, log: Any) -> RegistryEvent | None:
        abi = self._events.get(bytes(log["topics"][0]))
        if abi is None:
            return None
        data = get_event_data(self.w3.codec, abi, log)
        return RegistryEvent(
            name=data["event"],
            block=int(log["blockNumber"]),
            block_hash=bytes(log["blockHash"]),
            transaction="0x" + bytes(log["transactionHash"]).hex(),
            log_index=int(log["logIndex"]),
            args=dict(data["args"]),
        )

    def _logs(self, topics: list[Any]) -> list[RegistryEvent]:
        logs = self.w3.eth.get_logs(
            {
                "address": self.address,
                "fromBlock": self.from_block,
                "toBlock": "latest",
                "topics": topics,
            }
        )
        return [e for e in (self._decode(log) for log in logs) if e is not None]

    def _topic(self, name: str) -> HexBytes:
        for topic, abi in self._events.items():
            if abi["name"] == name:
                return HexBytes(topic)
        raise ChainError(f"{CONTRACT} has no event {name}")

    def registration_event(self, model_id: bytes) -> RegistryEvent | None:
        found = self._logs([self._topic("ModelRegistered"), HexBytes(model_id)])
        return found[0] if found else None

    def parents(self, model_id: bytes) -> list[Parent]:
        """The typed parents of ``model_id``, from its events."""
        topics = [[self._topic("ModelRegistered"), self._topic("ParentLinked")], HexBytes(model_id)]
        out = []
        for event in self._logs(topics):
            if event.name == "ModelRegistered":
                if bytes(event.args["firstParent"]) != ZERO32:
                    out.append(
                        Parent(
                            bytes(event.args["firstParent"]), Relation(event.args["firstRelation"])
                        )
                    )
            else:
                out.append(Parent(bytes(event.args["parent"]), Relation(event.args["relation"])))
        return sorted(out)

    def children(self, model_id: bytes) -> list[tuple[bytes, Relation]]:
        """The models derived from ``model_id`` with their relation, in registration order."""
        topics = [
            [self._topic("ModelRegistered"), self._topic("ParentLinked")],
            None,
            HexBytes(model_id),
        ]
        out = []
        for event in self._logs(topics):
            if event.name == "ModelRegistered":
                out.append((bytes(event.args["id"]), Relation(event.args["firstRelation"])))
            else:
                out.append((bytes(event.args["child"]), Relation(event.args["relation"])))
        return out

    def models_of(self, registrant: str) -> list[bytes]:
        topic = HexBytes(b"\x00" * 12 + bytes.fromhex(to_checksum_address(registrant)[2:]))
        return [
            bytes(e.args["id"])
            for e in self._logs([self._topic("ModelRegistered"), None, None, topic])
        ]

    def ancestors(self, model_id: bytes) -> list[bytes]:
        """Every ancestor, nearest first (breadth-first over the parent events)."""
        return _walk(model_id, lambda m: [p.id for p in self.parents(m)])

    def descendants(self, model_id: bytes) -> list[bytes]:
        return _walk(model_id, lambda m: [c for c, _ in self.children(m)])

    def is_tainted(self, model_id: bytes) -> bool:
        """True when some ancestor is revoked."""
        return any(self.status(a) is Status.REVOKED for a in self.ancestors(model_id))


def _walk(start: bytes, step: Any) -> list[bytes]:
    seen: dict[bytes, None] = {}
    queue = deque(step(start))
    while queue:
        node = queue.popleft()
        if node in seen:
            continue
        seen[node] = None
        queue.extend(step(node))
    return list(seen)


def _role(role: str) -> bytes:
    if role == "admin":
        return ZERO32
    try:
        return ROLES[role]
    except KeyError:
        raise ChainError(f"unknown role {role!r}; use registrant, auditor or admin") from None


def _hash(receipt: Any) -> str:
    return "0x" + bytes(receipt["transactionHash"]).hex()


def deadline_in(seconds: int, now: float | None = None) -> int:
    """A signature deadline ``seconds`` from now."""
    return int((time.time() if now is None else now) + seconds)


def relation_names(parents: Iterable[Parent]) -> list[str]:
    return [p.relation.label for p in parents]
