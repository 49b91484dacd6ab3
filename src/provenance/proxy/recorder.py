"""Journaling from the event loop: one writer thread commits, in one transaction, whatever the
proxy's requests queued while the previous commit was syncing.

    recorder = Recorder(attestor)
    record = await recorder.record(request_body, answer_body)      # once its commit is synced
    record = await recorder.record_digests(input_digest, output_digest)   # the sidecar
    recorder.close()                                                # at shutdown

Why not a worker thread per call (``anyio.to_thread``): handing each request to a thread and
back costs the event loop more than forwarding the request does (about 40% of its time under
load, benchmarks/proxy.py). Here a request appends to a list and, only when the writer sleeps,
wakes it; the writer hashes the bodies (off the event loop: hashlib releases the interpreter
lock on large bodies), journals the whole batch with :meth:`provenance.attest.Attestor.record_many`
(one fsync) and hands the records back with one call into the loop. The contract is the
journal's: :meth:`Recorder.record` returns only once the commit covering its record is synced,
sequences follow the order requests were queued, and a failed commit fails every request of its
batch (none of them got a sequence).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
from dataclasses import dataclass

from provenance.attest import Attestor
from provenance.attest.records import OutputRecord
from provenance.errors import ServiceError


@dataclass(frozen=True)
class _Queued:
    input: bytes  # the bytes, or their digest when ``hashed``
    output: bytes
    hashed: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[OutputRecord]


def _digests(queued: _Queued) -> tuple[bytes, bytes]:
    if queued.hashed:
        return queued.input, queued.output
    return hashlib.sha256(queued.input).digest(), hashlib.sha256(queued.output).digest()


class Recorder:
    """Journals records for coroutines through ``attestor`` (see the module docstring). The
    writer thread starts with the first record; :meth:`close` stops it once the queue is
    empty (the attestor stays open: its owner closes it)."""

    def __init__(self, attestor: Attestor) -> None:
        self.attestor = attestor
        self._queue: list[_Queued] = []
        self._wake = threading.Condition(threading.Lock())
        self._sleeping = False
        self._closed = False
        self._thread: threading.Thread | None = None

    async def record(self, input_data: bytes, output_data: bytes) -> OutputRecord:
        """Journal the SHA-256 digests of ``input_data`` and ``output_data``; the record once
        its commit is synced (StorageError and the like as :meth:`Attestor.record` raises)."""
        return await self._enqueue(input_data, output_data, hashed=False)

    async def record_digests(self, input_digest: bytes, output_digest: bytes) -> OutputRecord:
        """:meth:`record` for digests computed elsewhere (32 bytes each)."""
        if len(input_digest) != 32 or len(output_digest) != 32:
            raise ValueError("an input or output digest is 32 bytes (SHA-256)")
        return await self._enqueue(input_digest, output_digest, hashed=True)

    async def _enqueue(self, input_: bytes, output: bytes, *, hashed: bool) -> OutputRecord:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[OutputRecord] = loop.create_future()
        with self._wake:
            if self._closed:
                raise ServiceError("the proxy is shutting down; the output was not recorded")
            self._queue.append(_Queued(input_, output, hashed, loop, future))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._write, name="provenance-proxy-journal", daemon=True
                )
                self._thread.start()
            elif self._sleeping:
                self._wake.notify()
        return await future

    def _write(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._sleeping = True
                    self._wake.wait()
                    self._sleeping = False
                batch, self._queue = self._queue, []
                if not batch:  # closed and drained
                    return
            try:
                _settle(batch, self.attestor.record_many([_digests(q) for q in batch]), None)
            except Exception as exc:  # not swallowed: each request of the batch raises it
                _settle(batch, None, exc)

    def close(self) -> None:
        """Stop the writer once it has journaled what is queued; later records are refused."""
        with self._wake:
            self._closed = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=60)


def _settle(
    batch: list[_Queued], records: list[OutputRecord] | None, error: BaseException | None
) -> None:
    """Hand each queued request its record (or the batch's error), in its event loop: one call
    per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Queued, OutputRecord | None]]] = {}
    for i, queued in enumerate(batch):
        outcome = None if records is None else records[i]
        by_loop.setdefault(queued.loop, []).append((queued, outcome))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_resolve, items, error)


def _resolve(items: list[tuple[_Queued, OutputRecord | None]], error: BaseException | None) -> None:
    for queued, record in items:
        if queued.future.done():  # a request cancelled meanwhile
            continue
        if record is not None:
            queued.future.set_result(record)
        else:
            queued.future.set_exception(error or ServiceError("the output was not recorded"))


__all__ = ["Recorder"]
