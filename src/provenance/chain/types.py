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
