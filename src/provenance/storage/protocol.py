"""The one storage interface, implemented by :class:`~provenance.storage.kubo.Kubo` (a kubo node
over its RPC API) and :class:`~provenance.storage.local.LocalStore` (an embedded blockstore).

Both build the same UnixFS DAGs (``ipfs add --cid-version=1`` defaults), so one content has one
CID whichever stores it; both verify every block they hand back against its CID; both refuse to
put data marked confidential.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from provenance.errors import PolicyError

Progress = Callable[[int], None]
"""Called with the number of bytes just transferred (file content for put/get, CAR bytes for
export/import); for progress bars."""


class Storage(Protocol):
    """Content-addressed storage of bytes, files and directories, by CIDv1 (base32) strings."""

    @property
    def location(self) -> str:
        """Where the content lives: an API URL or a folder; error messages name it."""
        ...

    def close(self) -> None:
        """Release connections (a no-op for the local store)."""
        ...

    def with_timeout(self, seconds: float) -> Storage:
        """This storage with each read (``cat``, ``get_bytes``, ``get_path``, ``export_car``)
        bounded to ``seconds``: content that does not come in time raises StorageError ("<cid>
        was not found in IPFS within N s (...)") instead of waiting for peers. A store that
        never waits on the network (the local store) returns itself. Close the view when done:
        it releases only the connections it opened itself."""
        ...

    def put_bytes(self, data: bytes, *, pin: bool = True, confidential: bool = False) -> str:
        """Store ``data`` as a UnixFS file; at most 256 KiB gives one raw block, whose CID is
        :func:`~provenance.storage.cid.cid_for_digest` of its SHA-256."""
        ...

    def put_stream(
        self,
        stream: BinaryIO,
        *,
        pin: bool = True,
        confidential: bool = False,
        progress: Progress | None = None,
    ) -> str:
        """Store what ``stream`` yields until EOF as one UnixFS file, in constant memory."""
        ...

    def put_path(
        self,
        path: Path,
        *,
        pin: bool = True,
        confidential: bool = False,
        progress: Progress | None = None,
    ) -> str:
        """Store a file or a directory tree (no symlinks); returns the root CID."""
        ...

    def cat(self, cid: str, *, progress: Progress | None = None) -> Iterator[bytes]:
        """The content of a UnixFS file, block by block, each verified before it is yielded."""
        ...

    def get_bytes(self, cid: str, *, max_size: int = 64 << 20) -> bytes:
        """The whole content of a (small) UnixFS file, verified."""
        ...

    def get_path(self, cid: str, dest: Path, *, progress: Progress | None = None) -> None:
        """Write the file or directory tree at ``cid`` to ``dest`` (which must not exist),
        verifying every block; nothing is left at ``dest`` when verification fails."""
        ...

    def block(self, cid: bytes) -> bytes:
        """One block (binary CID), verified against its CID (a directory node, a file root)."""
        ...

    def has(self, cid: str) -> bool:
        """True when every block of the DAG under ``cid`` is held here (nothing fetched)."""
        ...

    def pin(self, cid: str) -> None:
        """Keep the DAG under ``cid`` (recursively) through garbage collection."""
        ...

    def unpin(self, cid: str) -> None: ...

    def pins(self) -> frozenset[str]:
        """The recursively pinned roots, as CIDv1 base32 strings."""
        ...

    def export_car(
        self, cid: str, out: BinaryIO | Path, *, progress: Progress | None = None
    ) -> None:
        """Write the DAG under ``cid`` as a CAR v1 (blocks in depth-first order, each once)."""
        ...

    def import_car(
        self, car: BinaryIO | Path, *, pin: bool = True, progress: Progress | None = None
    ) -> tuple[str, ...]:
        """Store the blocks of a CAR (v1 or v2), each verified first; returns its roots."""
        ...


def refuse_confidential(confidential: bool, what: str, location: str) -> None:
    """The confidentiality policy: data marked confidential never goes into IPFS; only its
    commitment (a digest in the certificate) is published."""
    if confidential:
        raise PolicyError(
            f"refusing to put {what} into {location}: it is marked confidential, "
            "only its commitment may be published"
        )
