"""A typed client of the OutputAttestor contract (node authorisation, signed output batches).

The inference-service SDK (buffering, journal, receipts) builds on this; here are the calls:

    attestor = AttestorContract(w3, address, Transactor(w3, registrant))
    attestor.authorize_node(model_id, node.address, registration, image_id)
    batch = Batch(model_id, model_digest, tree.root, attestor.next_sequence(node.address), n, ts)
    AttestorContract(w3, address, Transactor(w3, anyone)).attest_batch(batch, attestor.sign(node, batch))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import requests
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import Web3Exception

from provenance.attest import Batch, OutputRecord, Receipt, batch_typed_data
from provenance.chain.contract import ContractClient
from provenance.chain.tx import Transactor
from provenance.errors import ChainError, IntegrityError
from provenance.registration import Registration

CONTRACT = "OutputAttestor"


class AttestorContract(ContractClient):
    """The OutputAttestor at ``address``; writes need a :class:`Transactor`."""

    def __init__(self, w3: Web3, address: str, transactor: Transactor | None = None) -> None:
        super().__init__(CONTRACT, w3, address, transactor)
        self._chain_id: int | None = None

    # ------------------------------------------------------------ authorisation
    def authorize_node(
        self, model_id: bytes, node: str, registration: Registration, image_id: bytes
    ) -> Any:
        """Authorise ``node`` (the transactor must be the model's registrant or its operator).
        The contract proves the model digest against ``model_id``'s pre-image: ``registration``'s
        fields and the registrant it reads from the registry's record."""
        fn = self.contract.functions.authorizeNode(
            model_id,
            to_checksum_address(node),
            registration.certificate_digest,
            registration.model_digest,
            registration.data_commitment,
            registration.parents_hash,
            image_id,
        )
        return self._send(fn, "authorize node")

    def deauthorize_node(self, model_id: bytes, node: str) -> Any:
        return self._send(
            self.contract.functions.deauthorizeNode(model_id, to_checksum_address(node)),
            "deauthorize node",
        )

    def set_operator(self, operator: str, approved: bool = True) -> Any:
        """Let ``operator`` (e.g. a deployment service's key) authorise and deauthorise nodes for
        every model the transactor registered; ``approved=False`` withdraws it."""
        return self._send(
            self.contract.functions.setOperator(to_checksum_address(operator), approved),
            "approve operator" if approved else "withdraw operator",
        )

    def is_operator(self, registrant: str, operator: str) -> bool:
        return bool(
            self._call(
                self.contract.functions.isOperator(
                    to_checksum_address(registrant), to_checksum_address(operator)
                )
            )
        )

    def authorization(self, model_id: bytes, node: str) -> tuple[bytes, bytes]:
        """(model digest, image id) ``node`` is authorised for; zeros when it is not."""
        digest, image = self._call(
            self.contract.functions.authorizationOf(model_id, to_checksum_address(node))
        )
        return bytes(digest), bytes(image)

    def registry_address(self) -> str:
        """The ModelRegistry this attestor reads model status from."""
        return to_checksum_address(str(self._call(self.contract.functions.registry())))

    def next_sequence(self, node: str) -> int:
        return int(self._call(self.contract.functions.nextSequence(to_checksum_address(node))))

    # -------------------------------------------------------------- attesting
    def typed_data(self, batch: Batch) -> dict[str, Any]:
        return batch_typed_data(batch, self.chain_id(), self.address)

    def sign(self, node: LocalAccount, batch: Batch) -> bytes:
        """The node's EIP-712 signature over ``batch``."""
        return bytes(
            node.sign_message(encode_typed_data(full_message=self.typed_data(batch))).signature
        )

    def attest(self, record: OutputRecord, signature: bytes) -> Any:
        return self._send(self.contract.functions.attest(record.as_abi(), signature), "attest")

    def attest_batch(self, batch: Batch, signature: bytes) -> Any:
        return self._send(
            self.contract.functions.attestBatch(batch.as_abi(), signature),
            f"attest a batch of {batch.count}",
        )

    # ------------------------------------------------------------- on-chain views
    def leaf_of(self, record: OutputRecord) -> bytes:
        return bytes(self._call(self.contract.functions.leafOf(record.as_abi())))

    def verify_record(self, root: bytes, proof: Sequence[bytes], record: OutputRecord) -> bool:
        return bool(
            self._call(self.contract.functions.verifyRecord(root, list(proof), record.as_abi()))
        )

    def batch_digest(self, batch: Batch) -> bytes:
        return bytes(self._call(self.contract.functions.batchDigest(batch.as_abi())))

    # ------------------------------------------------ provenance.attest.AttestationTarget
    def chain_id(self) -> int:
        """Read once (every batch is signed for it: see :attr:`Transactor.chain_id`)."""
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    def sign_batch(self, node: LocalAccount, batch: Batch) -> bytes:
        return self.sign(node, batch)

    def anchor(self, batch: Batch, signature: bytes) -> tuple[str, int]:
        """Submit a signed batch; (transaction hash, block number)."""
        receipt = self.attest_batch(batch, signature)
        return "0x" + bytes(receipt["transactionHash"]).hex(), int(receipt["blockNumber"])

    def find_batch(self, root: bytes, node: str) -> tuple[str, int] | None:
        """Where the batch with ``root`` from ``node`` was anchored, from the event log (the
        SDK's resubmission check; verification matches every field: :meth:`anchored_batches`)."""
        found = self.anchored_batches(root, node)
        if not found:
            return None
        return found[0].transaction, found[0].block

    def anchored_batches(
        self, root: bytes, node: str, model_id: bytes | None = None, *, from_block: int = 0
    ) -> list[AnchoredBatch]:
        """The OutputsAttested events with this ``root`` from ``node`` (and, when given, under
        ``model_id``: every field the event indexes is filtered), in chain order."""
        topics: list[Any] = [
            self._topic("OutputsAttested"),
            HexBytes(root),
            None if model_id is None else HexBytes(model_id),
            _address_topic(node),
        ]
        return [
            AnchoredBatch(
                model_id=bytes(e["args"]["modelId"]),
                node=to_checksum_address(e["args"]["node"]),
                root=bytes(e["args"]["root"]),
                first_sequence=int(e["args"]["firstSequence"]),
                count=int(e["args"]["count"]),
                timestamp=int(e["args"]["timestamp"]),
                transaction="0x" + bytes(e["transactionHash"]).hex(),
                block=int(e["blockNumber"]),
                log_index=int(e["logIndex"]),
            )
            for e in self._events("OutputsAttested", topics, from_block)
        ]

    def authorisation_at(
        self, model_id: bytes, node: str, block: int, log_index: int, *, from_block: int = 0
    ) -> NodeAuthorisation | None:
        """The authorisation of ``node`` for ``model_id`` just before the log at (``block``,
        ``log_index``), replayed from the NodeAuthorized/NodeDeauthorized events (no historical
        state is read: a restarted anvil or a pruning RPC has none); None when it was not
        authorised then."""
        topics: list[Any] = [
            [self._topic("NodeAuthorized"), self._topic("NodeDeauthorized")],
            HexBytes(model_id),
            _address_topic(node),
        ]
        state: NodeAuthorisation | None = None
        events = self._events(("NodeAuthorized", "NodeDeauthorized"), topics, from_block, block)
        for event in sorted(events, key=lambda e: (int(e["blockNumber"]), int(e["logIndex"]))):
            if (int(event["blockNumber"]), int(event["logIndex"])) >= (block, log_index):
                break
            if event["event"] == "NodeDeauthorized":
                state = None
                continue
            state = NodeAuthorisation(
                model_digest=bytes(event["args"]["modelDigest"]),
                image_id=bytes(event["args"]["imageId"]),
                block=int(event["blockNumber"]),
                transaction="0x" + bytes(event["transactionHash"]).hex(),
            )
        return state

    def deauthorised_after(
        self, model_id: bytes, node: str, block: int, log_index: int
    ) -> int | None:
        """The block of the first NodeDeauthorized of ``node`` for ``model_id`` after the log at
        (``block``, ``log_index``); None when there is none."""
        topics: list[Any] = [
            self._topic("NodeDeauthorized"),
            HexBytes(model_id),
            _address_topic(node),
        ]
        for event in self._events("NodeDeauthorized", topics, block):
            if (int(event["blockNumber"]), int(event["logIndex"])) > (block, log_index):
                return int(event["blockNumber"])
        return None

    def _topic(self, name: str) -> HexBytes:
        return HexBytes(getattr(self.contract.events, name)().topic)

    def _events(
        self,
        names: str | tuple[str, ...],
        topics: list[Any],
        from_block: int,
        to_block: int | None = None,
    ) -> list[Any]:
        """Decoded logs of this contract with ``topics``, in chain order."""
        wanted = (names,) if isinstance(names, str) else names
        try:
            logs = self.w3.eth.get_logs(
                {
                    "address": self.address,
                    "fromBlock": from_block,
                    "toBlock": "latest" if to_block is None else to_block,
                    "topics": topics,
                }
            )
            decoded = []
            for log in logs:
                for name in wanted:
                    event = getattr(self.contract.events, name)()
                    if bytes(log["topics"][0]) == bytes(self._topic(name)):
                        decoded.append(event.process_log(log))
        except (requests.RequestException, Web3Exception, OSError) as exc:
            raise ChainError(f"{CONTRACT} at {self.address}: the chain RPC failed: {exc}") from exc
        return sorted(decoded, key=lambda e: (int(e["blockNumber"]), int(e["logIndex"])))


def _address_topic(address: str) -> HexBytes:
    return HexBytes(b"\x00" * 12 + bytes.fromhex(to_checksum_address(address)[2:]))


@dataclass(frozen=True)
class AnchoredBatch:
    """One OutputsAttested event: what the contract recorded for a batch, and where."""

    model_id: bytes
    node: str
    root: bytes
    first_sequence: int
    count: int
    timestamp: int
    transaction: str
    block: int
    log_index: int


@dataclass(frozen=True)
class NodeAuthorisation:
    """A node's authorisation for a model, from its NodeAuthorized event."""

    model_digest: bytes
    image_id: bytes
    block: int
    transaction: str


def verify_receipt_on_chain(
    w3: Web3, receipt: Receipt, registry_address: str, *, attestor: str
) -> dict[str, Any]:
    """The chain's part of checking a receipt against trusted roots (the ModelRegistry and the
    OutputAttestor the caller trusts, and the chain id the RPC serves): the receipt names that
    contract and chain, its batch is anchored there with every field the receipt states, the
    node was authorised for the model and its registered digest when it was anchored. Raises
    the error of the first failed check; returns facts for a report. The checks are
    :func:`provenance.verify.receipt.chain_checks`."""
    from provenance.chain.registry import Registry
    from provenance.verify.policy import Policy
    from provenance.verify.receipt import chain_checks
    from provenance.verify.report import Checks

    registry = Registry(w3, registry_address)
    policy = Policy(chain_id=int(w3.eth.chain_id), registry=registry.address, attestor=attestor)
    c = Checks(f"receipt of output {receipt.record.sequence}")
    facts = chain_checks(c, receipt, policy, registry, AttestorContract(w3, attestor))
    for check in c.items:
        if check.failed:
            raise (check.error or IntegrityError)(check.detail)
    return facts
