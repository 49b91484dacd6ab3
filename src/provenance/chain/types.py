"""Values the registry contract speaks in: relations, statuses, registrations, records.

``Registration.model_id_for(registrant)`` computes the id exactly as the contract does::

    keccak256(abi.encode(certificateDigest, modelDigest, dataCommitment,
                         keccak256(abi.encode(parents)), registrant))

so a client knows a model's id before (and without) asking the chain. The registrant is part of
the id (the sender of ``register``, the signer of ``registerFor``): registering someone else's
public certificate first gives an id bound to the squatter and leaves the creator's id free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from eth_abi.abi import encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from provenance.errors import ProvenanceError

ZERO32 = b"\x00" * 32


class Relation(IntEnum):
    """How a child was derived from a parent (the contract's ``Relation`` enum)."""

    FINE_TUNE = 0
    TRANSFER = 1
    ONLINE_UPDATE = 2
    DISTILLATION = 3
    MERGE = 4
    QUANTIZATION = 5
    CHECKPOINT = 6
    OTHER = 7

    @property
    def label(self) -> str:
        """The CLI/certificate spelling: ``fine-tune``, ``online-update``, ..."""
        return self.name.lower().replace("_", "-")

    @classmethod
    def parse(cls, text: str | int | Relation) -> Relation:
        if isinstance(text, Relation):
            return text
        if isinstance(text, int):
            return cls(text)
        key = text.strip().lower().replace("-", "_").replace(" ", "_")
        aliases = {"finetune": "fine_tune", "distill": "distillation", "quantize": "quantization"}
        key = aliases.get(key, key)
        try:
            return cls[key.upper()]
        except KeyError:
            names = ", ".join(r.label for r in cls)
            raise ProvenanceError(f"unknown relation {text!r}; use one of: {names}") from None


class Status(IntEnum):
    """A model's life-cycle on chain (``None`` = never registered)."""

    NONE = 0
    ACTIVE = 1
    REVOKED = 2

    @property
    def label(self) -> str:
        return self.name.lower()


def as_bytes32(value: bytes | str, what: str = "value") -> bytes:
    """32 bytes from raw bytes, ``0x`` hex, or ``sha256:<hex>``."""
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    else:
        text = value.strip()
        for prefix in ("sha256:", "0x"):
            if text.lower().startswith(prefix):
                text = text[len(prefix) :]
                break
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ProvenanceError(f"{what} {value!r} is not hex") from None
    if len(raw) != 32:
        raise ProvenanceError(f"{what} must be 32 bytes, got {len(raw)}")
    return raw


def hex32(value: bytes) -> str:
    return "0x" + value.hex()


@dataclass(frozen=True, order=True)
class Parent:
    id: bytes
    relation: Relation = Relation.FINE_TUNE

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", as_bytes32(self.id, "parent id"))
        object.__setattr__(self, "relation", Relation.parse(self.relation))

    def as_abi(self) -> tuple[bytes, int]:
        return (self.id, int(self.relation))


@dataclass(frozen=True)
class Registration:
    """What one registration commits to; parents are kept in canonical (ascending id) order."""

    certificate_digest: bytes
    model_digest: bytes
    data_commitment: bytes = ZERO32
    parents: tuple[Parent, ...] = field(default_factory=tuple)
    acknowledge_revoked_parents: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "certificate_digest", as_bytes32(self.certificate_digest, "certificate digest")
        )
        object.__setattr__(self, "model_digest", as_bytes32(self.model_digest, "model digest"))
        object.__setattr__(
            self, "data_commitment", as_bytes32(self.data_commitment, "data commitment")
        )
        ordered = tuple(sorted(self.parents, key=lambda p: p.id))
        ids = [p.id for p in ordered]
        if len(set(ids)) != len(ids):
            raise ProvenanceError("a parent appears twice")
        object.__setattr__(self, "parents", ordered)

    def as_abi(self) -> tuple[Any, ...]:
        return (
            self.certificate_digest,
            self.model_digest,
            self.data_commitment,
            [p.as_abi() for p in self.parents],
            self.acknowledge_revoked_parents,
        )

    @property
    def parents_hash(self) -> bytes:
        """``keccak256(abi.encode(parents))``, the parents' part of a model id's pre-image."""
        return keccak(encode(["(bytes32,uint8)[]"], [[p.as_abi() for p in self.parents]]))

    def model_id_for(self, registrant: str) -> bytes:
        """The id this registration gets when ``registrant`` registers it (ModelIds.compute)."""
        try:
            address = to_checksum_address(registrant)
        except ValueError:
            raise ProvenanceError(f"registrant {registrant!r} is not an address") from None
        return keccak(
            encode(
                ["bytes32", "bytes32", "bytes32", "bytes32", "address"],
                [
                    self.certificate_digest,
                    self.model_digest,
                    self.data_commitment,
                    self.parents_hash,
                    address,
                ],
            )
        )

    def eip712_message(self, registrant: str, nonce: int, deadline: int) -> dict[str, Any]:
        return {
            "certificateDigest": self.certificate_digest,
            "modelDigest": self.model_digest,
            "dataCommitment": self.data_commitment,
            "parents": [{"id": p.id, "relation": int(p.relation)} for p in self.parents],
            "acknowledgeRevokedParents": self.acknowledge_revoked_parents,
            "registrant": to_checksum_address(registrant),
            "nonce": nonce,
            "deadline": deadline,
        }


EIP712_TYPES: dict[str, list[dict[str, str]]] = {
    "Parent": [{"name": "id", "type": "bytes32"}, {"name": "relation", "type": "uint8"}],
    "Register": [
        {"name": "certificateDigest", "type": "bytes32"},
        {"name": "modelDigest", "type": "bytes32"},
        {"name": "dataCommitment", "type": "bytes32"},
        {"name": "parents", "type": "Parent[]"},
        {"name": "acknowledgeRevokedParents", "type": "bool"},
        {"name": "registrant", "type": "address"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
}
EIP712_DOMAIN_TYPES: list[dict[str, str]] = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
"""The EIP-712 domain of a contract: name, version, chain id, address (OpenZeppelin EIP712)."""
EIP712_NAME = "provenance ModelRegistry"
EIP712_VERSION = "1"


@dataclass(frozen=True)
class ModelRecord:
    """The on-chain record of a model (one storage slot)."""

    id: bytes
    registrant: str
    registered_at: int
    status: Status
    revoked_parent_acknowledged: bool

    @property
    def exists(self) -> bool:
        return self.status is not Status.NONE
