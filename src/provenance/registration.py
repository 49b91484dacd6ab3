"""What one registration commits to: relations, parents, the registration, its model id.

Pure: no web3, httpx or docker. eth-abi and eth-utils are imported only when an id, a hash or
an EIP-712 message is computed, so importing this module (as :mod:`provenance.certificate`
does) costs nothing.

The model id is the contract's formula (contracts/libraries/ModelIds.sol)::

    model_id = keccak256(abi.encode(certificateDigest, modelDigest, dataCommitment,
                                    parents_hash, registrant))
    parents_hash = keccak256(abi.encode(parents))

so a client knows a model's id before (and without) asking the chain. The registrant is part of
the id (the sender of ``register``, the signer of ``registerFor``): registering someone else's
public certificate first gives an id bound to the squatter and leaves the creator's id free.

:class:`Relation` is the one relation vocabulary: the contract's enum values, the labels
certificates and the CLI spell (``fine-tune``, ``online-update``, ...) and their aliases.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from provenance.errors import ProvenanceError

ZERO32 = b"\x00" * 32

_RELATION_ALIASES = {"finetune": "fine_tune", "distill": "distillation", "quantize": "quantization"}


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
    def labels(cls) -> tuple[str, ...]:
        """Every label, in the contract's enum order."""
        return tuple(r.label for r in cls)

    @classmethod
    def parse(cls, text: str | int | Relation) -> Relation:
        """A relation from its label, any spelling of it (``fine_tune``, ``Fine Tune``), an
        alias (``finetune``, ``distill``, ``quantize``) or the contract's enum value."""
        if isinstance(text, Relation):
            return text
        if isinstance(text, int):
            try:
                return cls(text)
            except ValueError:
                raise ProvenanceError(f"unknown relation {text}; use 0..{len(cls) - 1}") from None
        key = text.strip().lower().replace("-", "_").replace(" ", "_")
        key = _RELATION_ALIASES.get(key, key)
        try:
            return cls[key.upper()]
        except KeyError:
            names = ", ".join(cls.labels())
            raise ProvenanceError(f"unknown relation {text!r}; use one of: {names}") from None


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


def _checksum(registrant: str) -> str:
    from eth_utils.address import to_checksum_address

    try:
        return str(to_checksum_address(registrant))
    except ValueError:
        raise ProvenanceError(f"registrant {registrant!r} is not an address") from None


@dataclass(frozen=True, order=True)
class Parent:
    id: bytes
    relation: Relation = Relation.FINE_TUNE

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", as_bytes32(self.id, "parent id"))
        object.__setattr__(self, "relation", Relation.parse(self.relation))

    def as_abi(self) -> tuple[bytes, int]:
        return (self.id, int(self.relation))


def parents_hash(parents: Iterable[Parent]) -> bytes:
    """``keccak256(abi.encode(parents))`` over ``parents`` in the order given (ModelIds.parentsHash);
    a :class:`Registration` holds its parents in the canonical ascending-id order."""
    from eth_abi.abi import encode
    from eth_utils.crypto import keccak

    return keccak(encode(["(bytes32,uint8)[]"], [[p.as_abi() for p in parents]]))


def model_id(registration: Registration, registrant: str) -> bytes:
    """The id ``registration`` gets when ``registrant`` registers it (ModelIds.compute)."""
    from eth_abi.abi import encode
    from eth_utils.crypto import keccak

    address = _checksum(registrant)
    return keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "bytes32", "address"],
            [
                registration.certificate_digest,
                registration.model_digest,
                registration.data_commitment,
                parents_hash(registration.parents),
                address,
            ],
        )
    )


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
        return parents_hash(self.parents)

    def model_id_for(self, registrant: str) -> bytes:
        """The id this registration gets when ``registrant`` registers it (ModelIds.compute)."""
        return model_id(self, registrant)

    def eip712_message(self, registrant: str, nonce: int, deadline: int) -> dict[str, Any]:
        """The ``Register`` message a registrant signs for ``registerFor``."""
        return {
            "certificateDigest": self.certificate_digest,
            "modelDigest": self.model_digest,
            "dataCommitment": self.data_commitment,
            "parents": [{"id": p.id, "relation": int(p.relation)} for p in self.parents],
            "acknowledgeRevokedParents": self.acknowledge_revoked_parents,
            "registrant": _checksum(registrant),
            "nonce": nonce,
            "deadline": deadline,
        }


# -- the EIP-712 ``Register`` message (ModelRegistry.registerFor) -----------------------------

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
