"""A typed client of the OutputAttestor contract (node authorisation, signed output batches).

The inference-service SDK (buffering, journal, receipts) builds on this; here are the calls:

    attestor = AttestorContract(w3, address, Transactor(w3, registrant))
    attestor.authorize_node(model_id, node.address, registration, image_id)
    batch = Batch(model_id, model_digest, tree.root, attestor.next_sequence(node.address), n, ts)
    AttestorContract(w3, address, Transactor(w3, anyone)).attest_batch(batch, attestor.sign(node, batch))
"""

from __future__ import annotations

from collections.abc import Sequence
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
from provenance.chain.types import Registration
from provenance.errors import ChainError, IntegrityError

CONTRACT = "OutputAttestor"


class AttestorContract(ContractClient):
    """The OutputAttestor at ``address``; writes need a :class:`Transactor`."""

    def __init__(self, w3: Web3, address: str, transactor: Transactor | None = None) -> None:
        super().__init__(CONTRACT, w3, address, transactor)

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

    def next_sequence(self, node: str) -> int:
        return int(self._call(self.contract.functions.nextSequence(to_checksum_address(node))))

    # -------------------------------------------------------------- attesting
    def typed_data(self, batch: Batch) -> dict[str, Any]:
        return batch_typed_data(batch, self.w3.eth.chain_id, self.address)

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
        return int(self.w3.eth.chain_id)

    def sign_batch(self, node: LocalAccount, batch: Batch) -> bytes:
        return self.sign(node, batch)

    def anchor(self, batch: Batch, signature: bytes) -> tuple[str, int]:
        """Submit a signed batch; (transaction hash, block number)."""
        receipt = self.attest_batch(batch, signature)
        return "0x" + bytes(receipt["transactionHash"]).hex(), int(receipt["blockNumber"])

    def find_batch(self, root: bytes, node: str) -> tuple[str, int] | None:
        """Where the batch with ``root`` from ``node`` was anchored, from the event log."""
        topic = self.contract.events.OutputsAttested().topic
        try:
            logs = self._get_logs(topic, root, node)
        except (requests.RequestException, Web3Exception, OSError) as exc:
            raise ChainError(f"{CONTRACT} at {self.address}: the chain RPC failed: {exc}") from exc
        if not logs:
            return None
        log = logs[0]
        return "0x" + bytes(log["transactionHash"]).hex(), int(log["blockNumber"])

    def _get_logs(self, topic: Any, root: bytes, node: str) -> Any:
        return self.w3.eth.get_logs(
            {
                "address": self.address,
                "fromBlock": 0,
                "toBlock": "latest",
                "topics": [
                    topic,
                    HexBytes(root),
                    None,
                    HexBytes(b"\x00" * 12 + bytes.fromhex(to_checksum_address(node)[2:])),
                ],
            }
        )


def verify_receipt_on_chain(
    w3: Web3, receipt: Receipt, registry_address: str | None = None
) -> dict[str, Any]:
    """The chain's part of checking a receipt: the batch root is anchored by that node in the
    block the receipt names (or anywhere, when it names none), the node is (still) authorised
    for the model and that model digest, and the model's status in the registry. Raises
    IntegrityError when the root is not anchored or the authorisation does not match; returns
    facts for the report (status, anchoring block)."""
    if w3.eth.chain_id != receipt.chain_id:
        raise IntegrityError(
            f"the receipt is for chain {receipt.chain_id}, the RPC serves chain {w3.eth.chain_id}"
        )
    attestor = AttestorContract(w3, receipt.contract)
    found = attestor.find_batch(receipt.batch.root, receipt.node)
    if found is None:
        raise IntegrityError(
            f"batch root 0x{receipt.batch.root.hex()} by {receipt.node} is not anchored on {receipt.contract}"
        )
    tx, block = found
    if receipt.block is not None and receipt.block != block:
        raise IntegrityError(
            f"the batch is anchored in block {block}, not in block {receipt.block} as the receipt says"
        )
    digest, image = attestor.authorization(receipt.record.model_id, receipt.node)
    authorised = digest == receipt.record.model_digest
    registry = registry_address or str(attestor._call(attestor.contract.functions.registry()))
    from provenance.chain.registry import Registry

    status = Registry(w3, registry).status(receipt.record.model_id)
    if not authorised and digest != b"\x00" * 32:
        raise IntegrityError(
            f"node {receipt.node} is authorised for model digest 0x{digest.hex()}, not 0x{receipt.record.model_digest.hex()}"
        )
    return {
        "anchored_in": {"transaction": tx, "block": block},
        "node_still_authorised": authorised,
        "image_id": "0x" + image.hex() if authorised else None,
        "model_status": status.label,
    }
