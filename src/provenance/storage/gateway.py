"""Verified, read-only retrieval from an IPFS HTTP gateway (the trustless gateway protocol).

A gateway's plain responses (``/ipfs/<cid>``) cannot be checked, so content is requested as a
CAR (``Accept: application/vnd.ipld.car; order=dfs; dups=y``): blocks arrive in depth-first
order, repeated blocks included, and each is hashed and checked against its CID before the file
or tree is rebuilt from it. A block missing from the stream is fetched alone
(``?format=raw``) and checked the same way. Auditors without an IPFS node use this.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import httpx

from provenance.errors import ServiceError, StorageError
from provenance.storage import cid as cids
from provenance.storage import unixfs
from provenance.storage.car import CarBlockSource, CarReader, CarWriter, chunk_reader, writing
from provenance.storage.http import Endpoint
from provenance.storage.protocol import Progress
from provenance.untrusted import DEFAULT_LIMITS, Limits

CAR_ACCEPT = "application/vnd.ipld.car; version=1; order=dfs; dups=y"
RAW_ACCEPT = "application/vnd.ipld.raw"


class Gateway:
    """A trustless IPFS gateway at ``url`` (e.g. kubo's ``http://127.0.0.1:8080``)."""

    def __init__(
        self,
        url: str,
        *,
        auth: str | None = None,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 0.2,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.url = url.rstrip("/")
        self.limits = limits
        self._settings = (auth, timeout, retries, backoff)
        self.wait: float | None = None
        """The HTTP timeout of a view made by :meth:`with_timeout` (None: not a view)."""
        self._http = Endpoint(
            self.url,
            f"IPFS gateway {self.url}",
            headers={"Authorization": auth} if auth else None,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
        )

    @property
    def location(self) -> str:
        return self.url

    def close(self) -> None:
        self._http.close()

    def with_timeout(self, seconds: float) -> Gateway:
        """A client of the same gateway whose HTTP timeouts are ``seconds`` (the trustless
        gateway protocol has no deadline parameter: a gateway that sends nothing for that long
        fails the read with ServiceError). It opens its own connections: close it when done."""
        if seconds <= 0:
            raise ValueError(f"a timeout must be positive, not {seconds:g}")
        auth, _, retries, backoff = self._settings
        view = Gateway(
            self.url,
            auth=auth,
            timeout=seconds,
            retries=retries,
            backoff=backoff,
            limits=self.limits,
        )
        view.wait = seconds
        return view

    @contextmanager
    def _bounded(self, cid: str) -> Iterator[None]:
        """In a view, a gateway that stays silent past the timeout is reported as content not
        found in time (a connection failure stays a ServiceError)."""
        try:
            yield
        except ServiceError as exc:
            if self.wait is None or not isinstance(exc.__cause__, httpx.ReadTimeout):
                raise
            raise StorageError(
                f"{cid} was not found in IPFS within {self.wait:g} s (IPFS gateway {self.url})"
            ) from exc

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def block(self, cid: bytes) -> bytes:
        """One block (binary CID), verified against its CID."""
        data = self._raw_block(cid)
        cids.verify_block(cid, data, self.url)
        return data

    def _raw_block(self, cid: bytes) -> bytes:
        path = f"/ipfs/{cids.to_str(cid)}"
        return self._http.call(
            "GET", path, path, params={"format": "raw"}, headers={"Accept": RAW_ACCEPT}
        ).content

    @contextmanager
    def _blocks(self, root: bytes) -> Iterator[CarBlockSource]:
        path = f"/ipfs/{cids.to_str(root)}"
        with self._http.stream("GET", path, path, headers={"Accept": CAR_ACCEPT}) as response:
            reader = CarReader(chunk_reader(self._http.chunks(response, path)), self.url)
            yield CarBlockSource(reader, self._raw_block, self.url)

    def cat(self, cid: str, *, progress: Progress | None = None) -> Iterator[bytes]:
        root = cids.parse(cid)
        with self._bounded(cid), self._blocks(root) as fetch:
            for chunk in unixfs.read_file(fetch, root):
                if progress is not None:
                    progress(len(chunk))
                yield chunk

    def get_bytes(self, cid: str, *, max_size: int = 64 << 20) -> bytes:
        return unixfs.gather(self.cat(cid), cid, max_size)

    def get_path(self, cid: str, dest: Path, *, progress: Progress | None = None) -> None:
        root = cids.parse(cid)
        with self._bounded(cid), self._blocks(root) as fetch:
            unixfs.write_tree(fetch, root, dest, progress, limits=self.limits)

    def export_car(
        self, cid: str, out: BinaryIO | Path, *, progress: Progress | None = None
    ) -> None:
        root = cids.parse(cid)
        with self._bounded(cid), self._blocks(root) as fetch, writing(out) as f:
            writer = CarWriter(f, [root])
            for block_cid, block in unixfs.walk_blocks(fetch, root):
                n = writer.add(block_cid, block)
                if progress is not None:
                    progress(n)

    # A gateway serves reads only: the writing half of the Storage protocol says so in one
    # line, so a command run on an auditor's gateway-only configuration fails clearly.
    def _read_only(self, what: str) -> StorageError:
        return StorageError(
            f"cannot {what}: the IPFS gateway {self.url} is read-only; set [ipfs] api "
            "(PROVENANCE_IPFS_API) to a kubo node, or run `provenance up`"
        )

    def put_bytes(self, data: bytes, *, pin: bool = True, confidential: bool = False) -> str:
        raise self._read_only("store content")

    def put_stream(
        self,
        stream: BinaryIO,
        *,
        pin: bool = True,
        confidential: bool = False,
        progress: Progress | None = None,
    ) -> str:
        raise self._read_only("store content")

    def put_path(
        self,
        path: Path,
        *,
        pin: bool = True,
        confidential: bool = False,
        progress: Progress | None = None,
    ) -> str:
        raise self._read_only("store content")

    def import_car(
        self, car: BinaryIO | Path, *, pin: bool = True, progress: Progress | None = None
    ) -> tuple[str, ...]:
        raise self._read_only("import a CAR")

    def has(self, cid: str) -> bool:
        """False: a gateway holds nothing locally (reads fetch and verify every block)."""
        return False

    def pin(self, cid: str) -> None:
        raise self._read_only("pin")

    def unpin(self, cid: str) -> None:
        raise self._read_only("unpin")

    def pins(self) -> frozenset[str]:
        return frozenset()
