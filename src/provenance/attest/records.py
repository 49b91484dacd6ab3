"""Output records and their Merkle batches, as the OutputAttestor contract hashes them (pure).

Leaf: ``keccak256(bytes.concat(keccak256(abi.encode(modelId, modelDigest, inputDigest,
outputDigest, sequence, timestamp))))`` (OpenZeppelin's double-hashed leaf, so a 64-byte inner
node can never pass as a leaf). Tree: pairs hashed in sorted order (OpenZeppelin MerkleProof's
commutative keccak), an odd node promoted to the next level; a proof is the list of siblings
from the leaf up. OpenZeppelin's ``MerkleProof.verify`` accepts these proofs, and so does the
contract's ``verifyRecord``. (Training-data rows use the RFC 6962 SHA-256 tree of
:mod:`provenance.hashing` instead: there the order of rows matters and nothing runs on chain.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sha3  # safe-pysha3: a C keccak, about 5x the pure-Python-facing alternatives

from provenance.errors import IntegrityError
from provenance.registration import EIP712_DOMAIN_TYPES


def keccak256(data: bytes) -> bytes:
    return bytes(sha3.keccak_256(data).digest())


@dataclass(frozen=True)
class OutputRecord:
    """One output of a model, as a node attests it."""

    model_id: bytes
    model_digest: bytes
    input_digest: bytes
    output_digest: bytes
    sequence: int
    timestamp: int

    def as_abi(self) -> tuple[bytes, bytes, bytes, bytes, int, int]:
        return (
            self.model_id,
            self.model_digest,
            self.input_digest,
            self.output_digest,
            self.sequence,
            self.timestamp,
        )

    def encoded(self) -> bytes:
        """``abi.encode(modelId, modelDigest, inputDigest, outputDigest, sequence, timestamp)``:
        six static words, so plain concatenation (a test checks it against eth-abi)."""
        return b"".join(
            (
                self.model_id,
                self.model_digest,
                self.input_digest,
                self.output_digest,
                self.sequence.to_bytes(32, "big"),
                self.timestamp.to_bytes(32, "big"),
            )
        )

    @property
    def leaf(self) -> bytes:
        return keccak256(keccak256(self.encoded()))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """OpenZeppelin's commutative keccak of two nodes."""
    return keccak256(a + b) if a < b else keccak256(b + a)


class OutputTree:
    """A Merkle tree over leaves, compatible with OpenZeppelin's MerkleProof."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        from provenance.attest.native import tree_levels

        self.levels: list[list[bytes]] = tree_levels(leaves)  # native when built

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def __len__(self) -> int:
        return len(self.levels[0])

    def proof(self, index: int) -> list[bytes]:
        """The siblings of leaf ``index`` from the bottom up."""
        if not 0 <= index < len(self):
            raise IndexError(f"leaf {index} is not in a tree of {len(self)}")
        proof = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            index //= 2
        return proof


def root_from_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node


def verify_output_proof(root: bytes, proof: Sequence[bytes], record: OutputRecord) -> None:
    """Raise IntegrityError unless ``record`` is in the tree with ``root``."""
    if root_from_proof(record.leaf, proof) != root:
        raise IntegrityError(
            f"output record {record.sequence} of model 0x{record.model_id.hex()} is not in the "
            f"batch with root 0x{root.hex()}"
        )


@dataclass(frozen=True)
class Batch:
    """What a node signs: a root over ``count`` records with consecutive sequences."""

    model_id: bytes
    model_digest: bytes
    root: bytes
    first_sequence: int
    count: int
    timestamp: int

    def as_abi(self) -> tuple[bytes, bytes, bytes, int, int, int]:
        return (
            self.model_id,
            self.model_digest,
            self.root,
            self.first_sequence,
            self.count,
            self.timestamp,
        )

    @classmethod
    def of_one(cls, record: OutputRecord) -> Batch:
        """A single attestation is a batch of one whose root is the record's leaf."""
        return cls(
            record.model_id, record.model_digest, record.leaf, record.sequence, 1, record.timestamp
        )


BATCH_EIP712_TYPES: dict[str, list[dict[str, str]]] = {
    "OutputBatch": [
        {"name": "modelId", "type": "bytes32"},
        {"name": "modelDigest", "type": "bytes32"},
        {"name": "root", "type": "bytes32"},
        {"name": "firstSequence", "type": "uint64"},
        {"name": "count", "type": "uint32"},
        {"name": "timestamp", "type": "uint64"},
    ]
}


def batch_typed_data(batch: Batch, chain_id: int, contract: str) -> dict[str, Any]:
    """The EIP-712 typed data a node signs for ``batch`` on the attestor at ``contract``."""
    return {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_TYPES,
            **BATCH_EIP712_TYPES,
        },
        "primaryType": "OutputBatch",
        "domain": {
            "name": "provenance OutputAttestor",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": contract,
        },
        "message": {
            "modelId": batch.model_id,
            "modelDigest": batch.model_digest,
            "root": batch.root,
            "firstSequence": batch.first_sequence,
            "count": batch.count,
            "timestamp": batch.timestamp,
        },
    }
