"""Receipts: everything an outsider needs to check one output, their JSON form (parsed as
untrusted input) and their offline check (digests, Merkle proof, sequence range, signature)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from provenance.attest.records import Batch, OutputRecord, batch_typed_data, verify_output_proof
from provenance.errors import IntegrityError
from provenance.untrusted import keep_recursion_limit


@dataclass(frozen=True)
class Receipt:
    """Everything an outsider needs to check one output: the record, its batch, the proof, the
    node's signature, where to look on chain, and (once anchored) the transaction."""

    record: OutputRecord
    batch: Batch
    proof: tuple[bytes, ...]
    signature: bytes
    node: str
    chain_id: int
    contract: str
    transaction: str | None = None
    block: int | None = None

    def to_json(self) -> dict[str, object]:
        hx = _hex
        r, b = self.record, self.batch
        return {
            "version": 1,
            "record": {
                "model_id": hx(r.model_id),
                "model_digest": hx(r.model_digest),
                "input_digest": hx(r.input_digest),
                "output_digest": hx(r.output_digest),
                "sequence": r.sequence,
                "timestamp": r.timestamp,
            },
            "batch": {
                "root": hx(b.root),
                "first_sequence": b.first_sequence,
                "count": b.count,
                "timestamp": b.timestamp,
            },
            "proof": [hx(p) for p in self.proof],
            "signature": hx(self.signature),
            "node": self.node,
            "chain_id": self.chain_id,
            "contract": self.contract,
            "transaction": self.transaction,
            "block": self.block,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Receipt:
        """A receipt from its JSON form (:meth:`to_json`); numbers must be JSON integers in
        their ABI range (``1.5``, ``true`` or ``"1"`` are refused, not coerced), hex fields hex,
        addresses 20-byte ``0x`` hex, the signature 65 bytes (checked here, so the signature and
        chain checks never meet a value they cannot encode). Raises IntegrityError with a
        one-line reason."""
        try:
            if not isinstance(data, dict):
                raise ValueError("a receipt is a JSON object")
            if data.get("version", 1) != 1:
                raise ValueError(f"version {data['version']!r} is not 1")
            r = data["record"]
            b = data["batch"]
            if not isinstance(r, dict) or not isinstance(b, dict):
                raise ValueError("record and batch must be objects")
            record = OutputRecord(
                _unhex(r["model_id"]),
                _unhex(r["model_digest"]),
                _unhex(r["input_digest"]),
                _unhex(r["output_digest"]),
                _uint(r["sequence"], 64, "record.sequence"),
                _uint(r["timestamp"], 64, "record.timestamp"),
            )
            batch = Batch(
                record.model_id,
                record.model_digest,
                _unhex(b["root"]),
                _uint(b["first_sequence"], 64, "batch.first_sequence"),
                _uint(b["count"], 32, "batch.count"),
                _uint(b["timestamp"], 64, "batch.timestamp"),
            )
            proof = data["proof"]
            if not isinstance(proof, list):
                raise ValueError("proof must be a list")
            block = data.get("block")
            transaction = data.get("transaction")
            chain_id = _uint(data["chain_id"], 256, "chain_id")
            if chain_id == 0:
                raise ValueError("chain_id 0 is not a chain")
            return cls(
                record=record,
                batch=batch,
                proof=tuple(_unhex(p) for p in proof),
                signature=_unhex(data["signature"], size=65),
                node=_address(data["node"], "node"),
                chain_id=chain_id,
                contract=_address(data["contract"], "contract"),
                transaction=None if transaction is None else str(transaction),
                block=None if block is None else _uint(block, 64, "block"),
            )
        except KeyError as exc:
            raise IntegrityError(
                f"not a valid output receipt: {exc.args[0]!r} is missing"
            ) from None
        except (TypeError, ValueError) as exc:
            raise IntegrityError(f"not a valid output receipt: {exc}") from None


def _uint(value: object, bits: int, name: str) -> int:
    """A JSON integer (not a bool, float or string) that fits ``uint<bits>``."""
    if type(value) is not int:
        raise ValueError(f"{name} must be an integer, not {value!r:.40}")
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{name} is out of the uint{bits} range")
    return value


def _address(value: object, name: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
        raise ValueError(f"{name} must be a 20-byte 0x address, not {value!r:.60}")
    return value


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def _unhex(value: object, size: int | None = 32) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"expected 0x hex, not {value!r:.40}")
    text = value
    try:
        raw = bytes.fromhex(text[2:] if text.startswith("0x") else text)
    except ValueError:
        raise ValueError(f"{text[:80]!r} is not hex") from None
    if size is not None and len(raw) != size:
        raise ValueError(f"{text[:80]!r} is not {size} bytes")
    return raw


def verify_receipt_offline(
    receipt: Receipt, *, input_data: bytes | None = None, output_data: bytes | None = None
) -> None:
    """Everything but the chain: the digests of the given input/output, the record inside the
    batch (Merkle proof), the record inside the batch's sequence range, and the node's signature
    over the batch. Raises IntegrityError on the first failure."""
    import hashlib

    from eth_abi.exceptions import EncodingError

    keep_recursion_limit()
    from eth_account import Account
    from eth_account.messages import encode_typed_data
    from eth_keys.exceptions import BadSignature
    from eth_utils.exceptions import ValidationError

    r, b = receipt.record, receipt.batch
    if input_data is not None and hashlib.sha256(input_data).digest() != r.input_digest:
        raise IntegrityError(
            f"the input does not match the receipt's input digest 0x{r.input_digest.hex()}"
        )
    if output_data is not None and hashlib.sha256(output_data).digest() != r.output_digest:
        raise IntegrityError(
            f"the output does not match the receipt's output digest 0x{r.output_digest.hex()}"
        )
    if (b.model_id, b.model_digest) != (r.model_id, r.model_digest):
        raise IntegrityError("the receipt's record and batch name different models")
    if not b.first_sequence <= r.sequence < b.first_sequence + b.count:
        raise IntegrityError(
            f"sequence {r.sequence} is outside the batch's range {b.first_sequence}..{b.first_sequence + b.count - 1}"
        )
    try:
        verify_output_proof(b.root, receipt.proof, r)
    except OverflowError as exc:  # a Receipt built with out-of-range values
        raise IntegrityError(f"the receipt's record cannot be encoded: {exc}") from exc
    try:
        signable = encode_typed_data(
            full_message=batch_typed_data(b, receipt.chain_id, receipt.contract)
        )
    except (ValueError, TypeError, EncodingError) as exc:
        raise IntegrityError(f"the receipt's batch cannot be encoded: {exc}") from exc
    try:
        signer = Account.recover_message(signable, signature=receipt.signature)
    except (ValueError, TypeError, IndexError, BadSignature, ValidationError) as exc:
        raise IntegrityError(f"the batch signature is malformed: {exc}") from exc
    if signer.lower() != receipt.node.lower():
        raise IntegrityError(f"the batch is signed by {signer}, not by the node {receipt.node}")
