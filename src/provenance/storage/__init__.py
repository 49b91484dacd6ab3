"""Content-addressed storage: the kubo RPC client (and, later, the embedded store)."""

from provenance.storage.kubo import Kubo

__all__ = ["Kubo"]
