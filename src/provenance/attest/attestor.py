"""The inference-service SDK: :class:`Attestor` records outputs in its journal, seals them into
batches, signs and anchors them through an :class:`AttestationTarget`, and answers receipts."""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from provenance.attest.journal import CommitStats, GroupCommit, open_journal
from provenance.attest.native import record_leaves
from provenance.attest.receipt import Receipt
from provenance.attest.records import Batch, OutputRecord, OutputTree
from provenance.errors import (
    ChainError,
    ContractRevertError,
    IntegrityError,
    ProvenanceError,
    ServiceError,
)

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount


class AttestationTarget(Protocol):
    """The chain side an :class:`Attestor` needs (``provenance.chain.attestor.AttestorContract``)."""

    @property
    def address(self) -> str: ...

    def chain_id(self) -> int: ...

    def next_sequence(self, node: str) -> int: ...

    def sign_batch(self, node: LocalAccount, batch: Batch) -> bytes: ...

    def anchor(self, batch: Batch, signature: bytes) -> tuple[str, int]: ...

    def find_batch(self, root: bytes, node: str) -> tuple[str, int] | None: ...


@dataclass(frozen=True)
class AnchoringHealth:
    """How the background anchoring of an :class:`Attestor` fares: whether its loop runs, the
    records waiting for the chain (how many, and how long the oldest has waited, in seconds),
    the consecutive failed attempts, the last error, and when the last attempt succeeded."""

    running: bool
    backlog: int
    backlog_age: float | None
    failures: int
    last_error: str | None
    last_success: float | None


class Attestor:
    """Records outputs of one model served by one node, batches them under Merkle roots, signs
    and anchors the roots, and keeps everything in a SQLite journal synced to disk, so a crash or
    an RPC outage loses nothing and a resubmission never duplicates (the contract's per-node
    sequence refuses a batch twice; on restart a batch the chain already has is recognised by
    the node's sequence and its event, not sent again).

        attestor = Attestor(model_id, model_digest, node_key, AttestorContract(...), journal_path)
        seq = attestor.record(input_bytes, output_bytes).sequence
        attestor.flush()                      # or attestor.start(): seal by size or age, in the background
        attestor.receipt(seq)                 # the record, root, proof, signature, tx and block
    """

    def __init__(
        self,
        model_id: bytes,
        model_digest: bytes,
        node: LocalAccount,
        target: AttestationTarget,
        journal: Path,
        *,
        batch_size: int = 1000,
        max_age: float = 5.0,
        clock: Callable[[], float] = time.time,
        retry_base: float = 0.5,
        retry_cap: float = 30.0,
    ) -> None:
        self.model_id = model_id
        self.model_digest = model_digest
        self.node = node
        self.target = target
        self.batch_size = batch_size
        self.max_age = max_age
        self.clock = clock
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.last_error: BaseException | None = None
        self.failures = 0
        self.last_success: float | None = None
        self._lock = threading.RLock()  # the journal: held only around SQLite, never the chain
        self._flushing = threading.Lock()  # one flush at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sealed: dict[int, tuple[list[OutputRecord], OutputTree]] = {}
        self.db = open_journal(
            journal,
            f"{model_id.hex()}:{model_digest.hex()}:{node.address}:{target.address}",
        )
        local = self.db.execute("SELECT max(seq) FROM records").fetchone()[0]
        with self._chain("reading the node's sequence"):
            on_chain = target.next_sequence(node.address)
            self._chain_id = target.chain_id()
        first = max(-1 if local is None else int(local), on_chain - 1) + 1
        self._journal = GroupCommit(self.db, self._lock, first, clock)

    @contextlib.contextmanager
    def _chain(self, what: str) -> Iterator[None]:
        """Errors of the chain side with what the attestor was doing: an RPC failure (the HTTP
        client's own exceptions, or a contract client's ChainError) names it; a revert the
        contract explained and our other errors pass through as they are."""
        try:
            yield
        except ContractRevertError:  # the contract's own answer, decoded: passed on as it is
            raise
        except ChainError as exc:  # the RPC failed: still a ChainError, saying what it was for
            raise ChainError(self._failed(what, exc)) from exc
        except ProvenanceError:
            raise
        except Exception as exc:
            raise ServiceError(self._failed(what, exc)) from exc

    def _failed(self, what: str, exc: BaseException) -> str:
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        return f"anchoring outputs of model 0x{self.model_id.hex()}: {what} failed: {reason}"

    # ----------------------------------------------------------------- recording
    def record(self, input_data: bytes, output_data: bytes) -> OutputRecord:
        """Journal one output and return its record once it is on disk (the journal's commit
        covering it is synced; concurrent calls share commits: see
        :mod:`provenance.attest.journal`). It is attested at the next flush. StorageError when
        the journal could not record it (then it has no sequence)."""
        return self.record_digests(
            hashlib.sha256(input_data).digest(), hashlib.sha256(output_data).digest()
        )

    def record_digests(self, input_digest: bytes, output_digest: bytes) -> OutputRecord:
        """:meth:`record` for an input and output hashed elsewhere (SHA-256, 32 bytes each):
        a sidecar attests what a service it does not see answered."""
        return self.record_many([(input_digest, output_digest)])[0]

    def record_many(self, digests: Sequence[tuple[bytes, bytes]]) -> list[OutputRecord]:
        """:meth:`record_digests` for several (input, output) digest pairs at once, in one
        commit, with consecutive sequences; all or none of them recorded."""
        if any(len(i) != 32 or len(o) != 32 for i, o in digests):
            raise ValueError("an input or output digest is 32 bytes (SHA-256)")
        stamped = self._journal.append_many(digests)
        return [
            OutputRecord(self.model_id, self.model_digest, i, o, seq, ts)
            for (i, o), (seq, ts) in zip(digests, stamped, strict=True)
        ]

    @property
    def next_sequence(self) -> int:
        """The sequence number the next recorded output gets."""
        return self._journal.next_sequence

    @property
    def journal_stats(self) -> CommitStats:
        """The records journaled since this attestor opened, and the commits (syncs) they took."""
        return self._journal.stats

    def pending(self) -> int:
        """Records not yet anchored."""
        with self._lock:
            row = self.db.execute(
                "SELECT count(*) FROM records r LEFT JOIN batches b ON r.batch = b.first"
                " WHERE b.tx IS NULL"
            ).fetchone()
        return int(row[0])

    # ---------------------------------------------------------------- batching
    def flush(self) -> int:
        """Seal every journaled record into batches, then anchor every unanchored batch in
        order. Returns the number of batches anchored now. A failure leaves the journal as it
        was for the next flush. Recording goes on meanwhile: the journal is not held while the
        chain is asked."""
        with self._flushing, self._chain("sealing and submitting batches"):
            self._seal()
            return self._submit()

    def _records(self, where: str, args: tuple[object, ...]) -> list[OutputRecord]:
        with self._lock:
            rows = self.db.execute(
                f"SELECT seq, input, output, ts FROM records WHERE {where} ORDER BY seq", args
            ).fetchall()
        return [OutputRecord(self.model_id, self.model_digest, i, o, s, t) for s, i, o, t in rows]

    def _seal(self) -> None:
        pending = self._records("batch IS NULL", ())
        for start in range(0, len(pending), self.batch_size):
            chunk = pending[start : start + self.batch_size]
            tree = OutputTree(record_leaves(chunk))
            batch = Batch(
                self.model_id,
                self.model_digest,
                tree.root,
                chunk[0].sequence,
                len(chunk),
                int(self.clock()),
            )
            signature = self.target.sign_batch(self.node, batch)
            with self._lock, self.db:
                self.db.execute(
                    "INSERT INTO batches (first, count, root, ts, signature) VALUES (?, ?, ?, ?, ?)",
                    (batch.first_sequence, batch.count, batch.root, batch.timestamp, signature),
                )
                self.db.execute(
                    "UPDATE records SET batch = ? WHERE seq BETWEEN ? AND ?",
                    (batch.first_sequence, chunk[0].sequence, chunk[-1].sequence),
                )

    def _submit(self) -> int:
        anchored = 0
        with self._lock:
            rows = self.db.execute(
                "SELECT first, count, root, ts, signature FROM batches WHERE tx IS NULL"
                " ORDER BY first"
            ).fetchall()
        for first, count, root, ts, signature in rows:
            batch = Batch(self.model_id, self.model_digest, root, first, count, ts)
            on_chain_next = self.target.next_sequence(self.node.address)
            if on_chain_next > first:  # sent before a crash: find it, do not send it again
                found = self.target.find_batch(root, self.node.address)
                if found is None:
                    raise IntegrityError(
                        f"the chain has this node's sequences up to {on_chain_next - 1}, but no "
                        f"batch with root 0x{root.hex()}: the journal and the chain disagree"
                    )
                tx, block = found
            else:
                tx, block = self.target.anchor(batch, signature)
                anchored += 1
            with self._lock, self.db:
                self.db.execute(
                    "UPDATE batches SET tx = ?, block = ? WHERE first = ?", (tx, block, first)
                )
        return anchored

    # ----------------------------------------------------------------- receipts
    def receipt(self, sequence: int) -> Receipt | None:
        """The receipt of output ``sequence`` (None until its batch is sealed)."""
        with self._lock:
            row = self.db.execute(
                "SELECT b.first, b.count, b.root, b.ts, b.signature, b.tx, b.block FROM records r"
                " JOIN batches b ON r.batch = b.first WHERE r.seq = ?",
                (sequence,),
            ).fetchone()
        if row is None:
            return None
        first, count, root, ts, signature, tx, block = row
        cached = self._sealed.get(first)
        if cached is None:  # a sealed batch never changes: build its tree once
            members = self._records("batch = ?", (first,))
            cached = self._sealed[first] = (members, OutputTree(record_leaves(members)))
        members, tree = cached
        index = sequence - first
        return Receipt(
            record=members[index],
            batch=Batch(self.model_id, self.model_digest, root, first, count, ts),
            proof=tuple(tree.proof(index)),
            signature=bytes(signature),
            node=self.node.address,
            chain_id=self._chain_id,
            contract=self.target.address,
            transaction=tx,
            block=block,
        )

    # --------------------------------------------------------------- background
    def start(self) -> None:
        """Seal and anchor in a background thread: when ``batch_size`` records wait, or the
        oldest waits ``max_age`` seconds. A failure (any error: an RPC outage raises the HTTP
        client's own) is kept in ``last_error`` and retried with a capped, jittered exponential
        backoff (``retry_base`` doubling up to ``retry_cap`` seconds), so the loop recovers by
        itself when the chain returns; :meth:`health` reports how it fares."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="provenance-attestor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        idle = min(self.max_age / 2, 1.0)
        delay = idle
        while not self._stop.wait(delay):
            try:
                if self._due():
                    self.flush()
                    self.last_success = self.clock()
                self.last_error = None
                self.failures = 0
                delay = idle
            except Exception as exc:  # the loop must outlive any failure
                self.last_error = exc
                self.failures += 1
                delay = self.retry_delay(self.failures)

    def retry_delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures: exponential from
        ``retry_base``, capped at ``retry_cap``, with full jitter in its upper half."""
        ceiling: float = min(self.retry_cap, self.retry_base * 2.0 ** min(failures - 1, 30))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter, not a secret

    def _due(self) -> bool:
        with self._lock:
            oldest, waiting = self.db.execute(
                "SELECT min(ts), count(*) FROM records WHERE batch IS NULL"
            ).fetchone()
            unanchored = self.db.execute(
                "SELECT count(*) FROM batches WHERE tx IS NULL"
            ).fetchone()[0]
        return bool(
            waiting >= self.batch_size
            or (oldest is not None and self.clock() - oldest >= self.max_age)
            or unanchored
        )

    def running(self) -> bool:
        """True while the background loop runs."""
        return self._thread is not None and self._thread.is_alive()

    def health(self) -> AnchoringHealth:
        """The loop's state and the backlog of records not anchored yet."""
        with self._lock:
            count, oldest = self.db.execute(
                "SELECT count(*), min(r.ts) FROM records r LEFT JOIN batches b ON r.batch = b.first"
                " WHERE b.tx IS NULL"
            ).fetchone()
        error = self.last_error
        return AnchoringHealth(
            running=self.running(),
            backlog=int(count),
            backlog_age=None if oldest is None else max(0.0, self.clock() - oldest),
            failures=self.failures,
            last_error=None if error is None else str(error),
            last_success=self.last_success,
        )

    def close(self) -> None:
        """Stop the background thread and close the journal (nothing pending is lost)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.db.close()
