"""Content-addressed storage in IPFS: one :class:`Storage` protocol, two implementations.

- :class:`Kubo`: a kubo node (or an IPFS Cluster proxy) through its RPC API;
- :class:`LocalStore`: an embedded blockstore in a folder, for air-gapped sites and caching.

Both build UnixFS DAGs exactly as ``ipfs add --cid-version=1`` does, so CIDs are identical;
both exchange DAGs as CAR files; every retrieval, from either or from a :class:`Gateway`, checks
each block against its CID and raises :class:`~provenance.errors.IntegrityError` on a mismatch;
both refuse (:class:`~provenance.errors.PolicyError`) to put data marked confidential.

>>> store = LocalStore(Path("blocks"))                         # doctest: +SKIP
>>> cid = store.put_bytes(certificate_bytes)                   # doctest: +SKIP
>>> cid == cid_for_digest(hashlib.sha256(certificate_bytes).digest())  # doctest: +SKIP
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from provenance.config import Config
from provenance.storage.cid import cid_for_digest, digest_for_cid
from provenance.storage.gateway import Gateway
from provenance.storage.kubo import Kubo
from provenance.storage.local import LocalStore
from provenance.storage.protocol import Progress, Storage
from provenance.storage.unixfs import Layout, cid_of_path

StorageKind = Literal["kubo", "gateway", "local"]


def storage_kind(config: Config, stack_runs_kubo: bool | Callable[[], bool] = False) -> StorageKind:
    """Which storage the configuration selects: ``[ipfs] backend`` when it is not ``auto``;
    else kubo when ``[ipfs] api`` is set explicitly (file or ``PROVENANCE_IPFS_API``) or the
    local stack (``provenance up``) runs kubo (``stack_runs_kubo``, asked only then); else a
    read-only gateway when ``[ipfs] gateway`` is set explicitly (an auditor needs no IPFS node);
    else the local store."""
    ipfs = config.ipfs
    if ipfs.backend != "auto":
        return ipfs.backend
    if "api" in ipfs.model_fields_set or (
        stack_runs_kubo() if callable(stack_runs_kubo) else stack_runs_kubo
    ):
        return "kubo"
    if "gateway" in ipfs.model_fields_set:
        return "gateway"
    return "local"


def open_storage(config: Config, *, stack_runs_kubo: bool | Callable[[], bool] = False) -> Storage:
    """The storage :func:`storage_kind` selects (what :attr:`provenance.Session.storage` is)."""
    ipfs, limits = config.ipfs, config.limits.value
    kind = storage_kind(config, stack_runs_kubo)
    if kind == "kubo":
        return Kubo(ipfs.api, auth=ipfs.auth, timeout=ipfs.timeout, limits=limits)
    if kind == "gateway":
        return Gateway(ipfs.gateway, auth=ipfs.auth, timeout=ipfs.timeout, limits=limits)
    return LocalStore(config.ipfs_store, limits=limits)


__all__ = [
    "Gateway",
    "Kubo",
    "Layout",
    "LocalStore",
    "Progress",
    "Storage",
    "StorageKind",
    "cid_for_digest",
    "cid_of_path",
    "digest_for_cid",
    "open_storage",
    "storage_kind",
]
