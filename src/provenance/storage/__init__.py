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

from provenance.config import Config
from provenance.storage.cid import cid_for_digest, digest_for_cid
from provenance.storage.gateway import Gateway
from provenance.storage.kubo import Kubo
from provenance.storage.local import LocalStore
from provenance.storage.protocol import Progress, Storage
from provenance.storage.unixfs import Layout, cid_of_path


def open_storage(config: Config, *, stack_runs_kubo: bool = False) -> Kubo | LocalStore:
    """The storage backend the configuration selects (see :mod:`provenance.config`).

    ``stack_runs_kubo``: the local stack (``provenance up``) runs a kubo daemon; with backend
    ``auto`` that daemon is used, as a user who started the stack expects.
    """
    backend = config.ipfs_backend
    if config.ipfs.backend == "auto" and stack_runs_kubo:
        backend = "kubo"
    if backend == "kubo":
        return Kubo(
            config.ipfs.api,
            auth=config.ipfs.auth,
            timeout=config.ipfs.timeout,
            limits=config.limits.value,
        )
    return LocalStore(config.ipfs_store, limits=config.limits.value)


__all__ = [
    "Gateway",
    "Kubo",
    "Layout",
    "LocalStore",
    "Progress",
    "Storage",
    "cid_for_digest",
    "cid_of_path",
    "digest_for_cid",
    "open_storage",
]
