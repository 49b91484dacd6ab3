"""Values the registry contract answers with: a model's status and its on-chain record.

What a registration commits to (relations, parents, the registration, its model id and the
EIP-712 ``Register`` message) is the pure :mod:`provenance.registration`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Status(IntEnum):
    """A model's life-cycle on chain (``None`` = never registered)."""

    NONE = 0
    ACTIVE = 1
    REVOKED = 2

    @property
    def label(self) -> str:
        return self.name.lower()


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


@dataclass(frozen=True)
class ImageBinding:
    """The Docker image a model's registrant bound to it last (``ModelRegistry.imageOf``):
    the image id (sha-256 of its config), the sha-256 of its image record (stored in IPFS as
    one raw block), and the block timestamp of the binding."""

    model_id: bytes
    image_id: bytes
    record_digest: bytes
    bound_at: int

    @property
    def image_id_text(self) -> str:
        """The image id as Docker prints it: ``sha256:<hex>``."""
        return "sha256:" + self.image_id.hex()
