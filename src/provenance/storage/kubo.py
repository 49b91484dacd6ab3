"""A client of kubo's RPC API (``/api/v0``) over httpx; implements :class:`~.protocol.Storage`.

Every kubo RPC call is a POST. Errors name the endpoint; connection failures are retried with
backoff, HTTP errors are not. The same client talks to a remote node behind an
``Authorization`` header (``auth``) or basic auth (``basic_auth``), and to an IPFS Cluster's
kubo proxy (which pins cluster-wide on ``add`` and ``pin/add``).

Adding: files go up as a streamed multipart body with kubo's ``add`` defaults pinned
explicitly (CIDv1, raw leaves, 256 KiB chunks, 174 links, sha2-256), so the node builds the
same DAG as :class:`~.local.LocalStore`. While the bytes stream out, the client builds the DAG
itself (without storing it) and checks that the node answers with the same root CID: a node
or cluster configured for other chunking fails loudly instead of giving other CIDs.

Retrieving: kubo's ``cat`` does not check what its blockstore returns (a block altered on
disk is served as is), and ``dag/export``, which does check, streams several times slower than
``cat``. So the client walks the DAG itself. The dag-pb nodes (directories and file nodes: a few
KiB per 45 MiB of file) come one by one from ``block/get`` and are checked against their CIDs.
A file's content comes from one ``cat`` stream, cut at the raw-leaf boundaries that the checked
nodes state, and every leaf is hashed and checked against its CID before it is yielded, so
memory stays at one leaf and nothing unverified is ever returned. Should the stream end early,
the remaining leaves come from ``block/get``. This reads any UnixFS file DAG whatever chunker or
layout made it (leaves that are dag-pb nodes, as in CIDv0 DAGs, come from ``block/get``);
rebuilding the root from ``cat`` output instead would only work for DAGs chunked like ours.
CAR export streams ``dag/export`` and checks every block as it arrives; a block the stream does
not bring in order (kubo sends a repeated block once) comes from ``block/get``.

Bounded reads: kubo waits forever for a block nobody provides. :meth:`Kubo.with_timeout` gives a
view whose reads (``cat``, ``get_bytes``, ``get_path``, ``export_car``, ``block``) each finish
within a deadline: every request of the read carries kubo's global ``timeout`` option set to
the time left, so the node itself gives up (it answers 500 ``context deadline exceeded``, or
cuts a stream it had begun), and the read raises StorageError naming the CID and the wait.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from provenance.errors import IntegrityError, ProvenanceError, ServiceError, StorageError
from provenance.storage import cid as cids
from provenance.storage import unixfs
from provenance.storage.car import (
    CarBlockSource,
    CarReader,
    CarWriter,
    car_chunks,
    chunk_reader,
    reading,
    writing,
)
from provenance.storage.http import Body, Endpoint
from provenance.storage.protocol import Progress, refuse_confidential
from provenance.untrusted import DEFAULT_LIMITS, Limits

DEADLINE_EXCEEDED = "context deadline exceeded"
"""What kubo answers (HTTP 500) when a command's ``timeout`` option runs out."""

_HTTP_GRACE = 5.0
"""Seconds the HTTP read timeout leaves kubo beyond its own deadline to answer."""


class _Deadline:
    """The time limit of one read, carried by each of its requests as kubo's ``timeout``."""

    def __init__(self, seconds: float | None, cid: str, where: str) -> None:
        self.seconds = seconds
        self.cid = cid
        self.where = where
        self.end = None if seconds is None else time.monotonic() + seconds

    def expired(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end

    def params(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` with the time left as kubo's ``timeout`` (a Go duration)."""
        if self.end is None:
            return params
        left = self.end - time.monotonic()
        if left <= 0:
            raise self.error()
        return {**params, "timeout": f"{left:.3f}s"}

    def error(self) -> StorageError:
        return StorageError(
            f"{self.cid} was not found in IPFS within {self.seconds:g} s ({self.where})"
        )


_UNBOUNDED = _Deadline(None, "", "")


class Kubo:
    """The RPC API of one kubo node (or an IPFS Cluster proxy that speaks it)."""

    def __init__(
        self,
        api_url: str,
        *,
        auth: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 0.2,
        layout: unixfs.Layout = unixfs.DEFAULT_LAYOUT,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.layout = layout
        self.limits = limits
        self.wait: float | None = None
        """The time limit of each read (None: no limit); see :meth:`with_timeout`."""
        self._settings = (auth, basic_auth, timeout, retries, backoff)
        self._owns_api = True
        self._api = Endpoint(
            f"{self.api_url}/api/v0",
            f"IPFS API {self.api_url}",
            headers={"Authorization": auth} if auth else None,
            auth=basic_auth,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
        )

    @property
    def location(self) -> str:
        return self.api_url

    def close(self) -> None:
        """Release the connections (a view made by :meth:`with_timeout` releases only those
        it opened itself)."""
        if self._owns_api:
            self._api.close()

    def with_timeout(self, seconds: float) -> Kubo:
        """A view of this node whose reads each finish within ``seconds``: content nobody
        provides raises StorageError ("<cid> was not found in IPFS within N s (IPFS API
        <url>)") instead of waiting. The view shares this client's connections unless the wait
        exceeds its HTTP read timeout."""
        if seconds <= 0:
            raise ValueError(f"a timeout must be positive, not {seconds:g}")
        auth, basic_auth, timeout, retries, backoff = self._settings
        if seconds + _HTTP_GRACE <= timeout:
            view = copy.copy(self)
            view._owns_api = False
        else:
            view = Kubo(
                self.api_url,
                auth=auth,
                basic_auth=basic_auth,
                timeout=seconds + _HTTP_GRACE,
                retries=retries,
                backoff=backoff,
                layout=self.layout,
                limits=self.limits,
            )
        view.wait = seconds
        return view

    def _deadline(self, cid: str) -> _Deadline:
        return _Deadline(self.wait, cid, f"IPFS API {self.api_url}")

    def _refused(
        self, command: str, status: int, body: bytes, deadline: _Deadline
    ) -> ProvenanceError:
        """The error for a read kubo answered with ``status`` (not 200): its deadline, or the
        message kubo gave."""
        try:
            message = str(json.loads(body)["Message"])
        except (ValueError, KeyError, TypeError):
            message = body.decode("utf-8", "replace").strip()
        if deadline.end is not None and DEADLINE_EXCEEDED in message:
            return deadline.error()
        return ServiceError(f"{self._api.label} {command} answered {status}: {message[:300]}")

    @contextmanager
    def _read(self, command: str, cid: bytes, deadline: _Deadline) -> Iterator[Iterator[bytes]]:
        """The streamed body of a read command on ``cid`` within ``deadline``."""
        params = deadline.params({"arg": cids.to_str(cid)})
        with self._api.stream("POST", f"/{command}", command, params=params, ok=(200, 500)) as r:
            chunks = self._api.chunks(r, command)
            if r.status_code != 200:
                raise self._refused(command, r.status_code, b"".join(chunks), deadline)
            yield chunks

    def __enter__(self) -> Kubo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, command: str, **params: Any) -> Any:
        """Call a command that answers one JSON object."""
        return self._api.call("POST", f"/{command}", command, params=params).json()

    @contextmanager
    def _lines(
        self, command: str, params: dict[str, Any], body: Body | None = None, **kw: Any
    ) -> Iterator[Iterator[dict[str, Any]]]:
        """Call a command that streams JSON lines; kubo reports late failures as a line with
        ``"Type": "error"``."""
        with self._api.stream("POST", f"/{command}", command, params=params, body=body, **kw) as r:

            def events() -> Iterator[dict[str, Any]]:
                for line in self._api.lines(r, command):
                    event = json.loads(line)
                    if event.get("Type") == "error" and "Message" in event:
                        raise ServiceError(
                            f"IPFS API {self.api_url} {command} failed: {event['Message']}"
                        )
                    yield event

            yield events()

    # ------------------------------------------------------------ node
    def version(self) -> str:
        """The node's kubo version, e.g. ``0.43.0``."""
        return str(self._post("version")["Version"])

    def id(self) -> str:
        """The node's peer id."""
        return str(self._post("id")["ID"])

    def swarm_connect(self, multiaddr: str) -> None:
        """Connect to a peer at ``/ip4/.../tcp/.../p2p/<peer id>``."""
        self._post("swarm/connect", arg=multiaddr)

    def gc(self) -> int:
        """Run the node's garbage collection; returns how many blocks it removed."""
        with self._lines("repo/gc", {"stream-errors": "true"}) as events:
            removed = 0
            for event in events:
                if event.get("Error"):
                    raise ServiceError(f"IPFS API {self.api_url} repo/gc failed: {event['Error']}")
                removed += 1
            return removed

    # ------------------------------------------------------------ blocks
    def block(self, cid: bytes) -> bytes:
        """One block (binary CID), verified against its CID."""
        return self._block(cid, self._deadline(cids.to_str(cid)))

    def _block(self, cid: bytes, deadline: _Deadline) -> bytes:
        data = self._raw_block(cid, deadline)
        cids.verify_block(cid, data, self.api_url)
        return data

    def block_stat(self, cid: str) -> int:
        """The size of one block the node holds or can fetch."""
        return int(self._post("block/stat", arg=cid)["Size"])

    # ------------------------------------------------------------ put
    def _add_params(self, pin: bool) -> dict[str, Any]:
        return {
            "cid-version": 1,
            "raw-leaves": "true",
            "chunker": f"size-{self.layout.chunk_size}",
            "max-file-links": self.layout.max_links,
            "hash": "sha2-256",
            "trickle": "false",
            "pin": "true" if pin else "false",
            "progress": "false",
        }

    def _add(self, parts: Body, boundary: str, pin: bool) -> str:
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        with self._lines("add", self._add_params(pin), parts, headers=headers) as events:
            root = None
            for event in events:
                if "Hash" in event:
                    root = str(event["Hash"])
        if root is None:
            raise ServiceError(f"IPFS API {self.api_url} add answered no CID")
        return root

    def _check_root(self, got: str, expected: bytes, what: str) -> str:
        if cids.parse(got) != expected:
            raise IntegrityError(
                f"{self.api_url} stored {what} as {got}, expected {cids.to_str(expected)}: "
                "the node does not build DAGs with ipfs add's defaults"
            )
        return got

    def put_bytes(self, data: bytes, *, pin: bool = True, confidential: bool = False) -> str:
        refuse_confidential(confidential, f"{len(data)} bytes", self.location)
        boundary = secrets.token_hex(16)

        def parts() -> Iterator[bytes]:
            yield _part_head(boundary, "data", directory=False)
            yield data
            yield b"\r\n" + _tail(boundary)

        expected = unixfs.build_bytes(data, layout=self.layout).cid
        return self._check_root(self._add(parts, boundary, pin), expected, f"{len(data)} bytes")

    def put_stream(
        self,
        stream: BinaryIO,
        *,
        pin: bool = True,
        confidential: bool = False,
        progress: Progress | None = None,
    ) -> str:
        what = str(getattr(stream, "name", "a stream"))
        refuse_confidential(confidential, what, self.location)
        boundary = secrets.token_hex(16)
        builder = unixfs.FileBuilder(layout=self.layout)
        chunk_size = self.layout.chunk_size

        def parts() -> Iterator[bytes]:
            yield _part_head(boundary, "data", directory=False)
            while chunk := stream.read(chunk_size):
                builder.write(chunk)
                if progress is not None:
                    progress(len(chunk))
                yield chunk
            yield b"\r\n" + _tail(boundary)

        root = self._add(parts, boundary, pin)
        return self._check_root(root, builder.finish().cid, what)

    def put_path(
        self,
        path: Path,
        *,
        pin: bool = True,
        confidential: bool = False,
        progress: Progress | None = None,
    ) -> str:
        refuse_confidential(confidential, str(path), self.location)
        entries = unixfs.scan_tree(path)
        boundary = secrets.token_hex(16)
        files: dict[str, unixfs.Built] = {}
        chunk_size = self.layout.chunk_size

        def parts() -> Iterator[bytes]:
            files.clear()
            for entry in entries:
                yield _part_head(boundary, entry.rel, directory=entry.is_dir)
                if not entry.is_dir:
                    builder = unixfs.FileBuilder(layout=self.layout)
                    try:
                        with open(entry.path, "rb", buffering=0) as f:
                            while chunk := f.read(chunk_size):
                                builder.write(chunk)
                                if progress is not None:
                                    progress(len(chunk))
                                yield chunk
                    except OSError as exc:
                        raise StorageError(f"cannot read {entry.path}: {exc}") from exc
                    files[entry.rel] = builder.finish()
                yield b"\r\n"
            yield _tail(boundary)

        root = self._add(parts, boundary, pin)
        return self._check_root(root, unixfs.build_tree(entries, files).cid, str(path))

    # ------------------------------------------------------------ get
    def _content(self, root: bytes, first: bytes | None, deadline: _Deadline) -> Iterator[bytes]:
        """A file's content: nodes from ``block/get``, leaf bytes from one ``cat`` stream, each
        leaf checked against its CID. A stream kubo cuts at its deadline ends early: the rest
        then comes from ``block/get``, which reports the deadline."""

        def block(cid: bytes) -> bytes:
            return self._block(cid, deadline)

        if cids.codec(root) == cids.RAW:
            yield first if first is not None else block(root)
            return
        pieces = unixfs.file_pieces(block, root, first)
        with self._read("cat", root, deadline) as chunks:
            stream = chunk_reader(chunks)
            live = True
            for piece in pieces:
                if isinstance(piece, unixfs.RawLeaf):
                    data = stream.read(piece.size) if live else b""
                    if len(data) == piece.size:
                        cids.verify_block(piece.cid, data, self.api_url)
                    else:  # the stream ended early: fetch the rest block by block
                        live = False
                        data = block(piece.cid)
                        unixfs.check_leaf(piece, data, cids.to_str(root))
                else:
                    data = piece
                    if live:
                        sent = stream.read(len(piece))
                        if len(sent) < len(piece):
                            live = False
                        elif sent != piece:
                            raise IntegrityError(
                                f"content of {cids.to_str(root)} from {self.api_url} does not "
                                "match its DAG"
                            )
                if data:
                    yield data

    @contextmanager
    def _export(self, root: bytes, deadline: _Deadline) -> Iterator[CarBlockSource]:
        """Verified blocks of the DAG under ``root`` from ``dag/export``, depth-first."""

        def cut(chunks: Iterator[bytes]) -> Iterator[bytes]:
            yield from chunks
            if deadline.expired():  # kubo cut the stream at its deadline, maybe mid-block
                raise deadline.error()

        with self._read("dag/export", root, deadline) as chunks:
            reader = CarReader(chunk_reader(cut(chunks)), self.api_url)
            yield CarBlockSource(reader, lambda cid: self._raw_block(cid, deadline), self.api_url)

    def _raw_block(self, cid: bytes, deadline: _Deadline = _UNBOUNDED) -> bytes:
        params = deadline.params({"arg": cids.to_str(cid)})
        response = self._api.call("POST", "/block/get", "block/get", params=params, ok=(200, 500))
        if response.status_code != 200:
            raise self._refused("block/get", response.status_code, response.content, deadline)
        return response.content

    def cat(self, cid: str, *, progress: Progress | None = None) -> Iterator[bytes]:
        for chunk in self._content(cids.parse(cid), None, self._deadline(cid)):
            if progress is not None:
                progress(len(chunk))
            yield chunk

    def get_bytes(self, cid: str, *, max_size: int = 64 << 20) -> bytes:
        return unixfs.gather(self.cat(cid), cid, max_size)

    def get_path(self, cid: str, dest: Path, *, progress: Progress | None = None) -> None:
        deadline = self._deadline(cid)
        unixfs.write_tree(
            lambda block: self._block(block, deadline),
            cids.parse(cid),
            dest,
            progress,
            lambda root, first: self._content(root, first, deadline),
            self.limits,
        )

    def has(self, cid: str) -> bool:
        response = self._api.call(
            "POST",
            "/dag/stat",
            "dag/stat",
            params={"arg": cid, "offline": "true", "progress": "false"},
            ok=(200, 500),
        )
        if response.status_code == 200:
            return True
        message = response.text
        if "not found" in message:
            return False
        raise ServiceError(f"IPFS API {self.api_url} dag/stat answered 500: {message[:300]}")

    # ------------------------------------------------------------ pins
    def pin(self, cid: str) -> None:
        """Pin recursively, fetching missing blocks from connected peers (progress is streamed
        so large DAGs do not hit the read timeout)."""
        with self._lines("pin/add", {"arg": cid, "recursive": "true", "progress": "true"}) as ev:
            for _ in ev:
                pass

    def unpin(self, cid: str) -> None:
        self._post("pin/rm", arg=cid)

    def pins(self) -> frozenset[str]:
        with self._lines("pin/ls", {"type": "recursive", "stream": "true"}) as events:
            return frozenset(cids.normalize(str(event["Cid"])) for event in events)

    # ------------------------------------------------------------ CAR
    def export_car(
        self, cid: str, out: BinaryIO | Path, *, progress: Progress | None = None
    ) -> None:
        root = cids.parse(cid)
        with self._export(root, self._deadline(cid)) as fetch, writing(out) as f:
            writer = CarWriter(f, [root])
            for block_cid, block in unixfs.walk_blocks(fetch, root):
                n = writer.add(block_cid, block)
                if progress is not None:
                    progress(n)

    def import_car(
        self, car: BinaryIO | Path, *, pin: bool = True, progress: Progress | None = None
    ) -> tuple[str, ...]:
        boundary = secrets.token_hex(16)
        roots: list[bytes] = []
        with reading(car) as (stream, source):

            def parts() -> Iterator[bytes]:
                reader = CarReader(stream, source)
                roots[:] = reader.roots
                yield _part_head(boundary, "import.car", directory=False)
                for chunk in car_chunks(reader.roots, reader):
                    if progress is not None:
                        progress(len(chunk))
                    yield chunk
                yield b"\r\n" + _tail(boundary)

            headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
            params = {"pin-roots": "true" if pin else "false", "stats": "false"}
            with self._lines("dag/import", params, parts, headers=headers) as events:
                for event in events:
                    failure = event.get("Root", {}).get("PinErrorMsg")
                    if failure:
                        raise StorageError(
                            f"{self.api_url} imported {source} but could not pin its root "
                            f"{event['Root']['Cid']['/']}: {failure}"
                        )
        return tuple(cids.to_str(cids.to_v1(root)) for root in roots)


def _part_head(boundary: str, name: str, *, directory: bool) -> bytes:
    kind = "application/x-directory" if directory else "application/octet-stream"
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{quote(name, safe="")}"\r\n'
        f"Content-Type: {kind}\r\n\r\n"
    ).encode()


def _tail(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode()
