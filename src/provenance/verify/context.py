"""What the checks read: the policy, the chain (a :class:`RegistryView`), IPFS (a bounded
:class:`~provenance.storage.protocol.Storage`), and an optional lineage index."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from provenance.chain.types import Status
from provenance.registration import Parent

if TYPE_CHECKING:
    from provenance.chain.index import LineageIndex
    from provenance.chain.registry import RegistryEvent
    from provenance.chain.types import ImageBinding, ModelRecord
    from provenance.storage.protocol import Storage
    from provenance.verify.policy import Policy


class RegistryView(Protocol):
    """The reads verification makes (:class:`provenance.chain.registry.Registry` has them)."""

    @property
    def address(self) -> str: ...

    def status(self, model_id: bytes) -> Status: ...

    def record(self, model_id: bytes) -> ModelRecord: ...

    def registration_event(self, model_id: bytes) -> RegistryEvent | None: ...

    def parents(self, model_id: bytes) -> list[Parent]: ...

    def image_binding(self, model_id: bytes) -> ImageBinding | None: ...

    def is_open(self) -> bool: ...

    def has_role(self, role: str, account: str) -> bool: ...

    def events(
        self, from_block: int | None = None, to_block: int | None = None
    ) -> Iterator[RegistryEvent]: ...


@dataclass(frozen=True)
class Context:
    policy: Policy
    registry: RegistryView
    storage: Storage
    index: LineageIndex | None = None

    @property
    def fetch_timeout(self) -> float:
        return self.policy.fetch_timeout


def bounded(storage: Storage, timeout: float) -> contextlib.closing[Storage]:
    """``storage`` with each read bounded to ``timeout`` seconds, closed after use. A kubo
    node asked for content nobody provides would wait for peers forever; bounded, the node
    itself gives up at the deadline and the read raises StorageError ("<cid> was not found in
    IPFS within N s (...)"), so the report goes on."""
    return contextlib.closing(storage.with_timeout(timeout))


def fetch_bytes(storage: Storage, cid: str, *, timeout: float, max_size: int) -> bytes:
    """The content at ``cid``, verified by the storage; waits at most ``timeout`` seconds for
    content the node does not hold. StorageError when it does not come."""
    if storage.has(cid):
        return storage.get_bytes(cid, max_size=max_size)
    with bounded(storage, timeout) as limited:
        return limited.get_bytes(cid, max_size=max_size)


def fetch_path(storage: Storage, cid: str, dest: Path, timeout: float) -> None:
    """Content the node holds (published data may be large) is read without a deadline."""
    if storage.has(cid):
        storage.get_path(cid, dest)
        return
    with bounded(storage, timeout) as limited:
        limited.get_path(cid, dest)


__all__ = ["Context", "RegistryView", "bounded", "fetch_bytes", "fetch_path"]
