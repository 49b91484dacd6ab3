"""The SQLite journal of an :class:`provenance.attest.Attestor`, and the group commit that
appends output records to it.

The journal is in WAL mode with ``synchronous=FULL``: a committed transaction is synced to disk
(fsync of the write-ahead log) before the commit returns. A sync costs milliseconds, one per
record is what limits a busy service, so records are appended by **group commit**: a caller
queues its record and waits; the first caller that finds no commit under way becomes the
leader, takes every record queued by then, gives them the next consecutive sequence numbers,
writes them in one transaction, commits (one sync), and only then wakes every member of the
group with its sequence. Records queued while a commit runs form the next group. So:

- a call returns only once the commit that covers its record is durable (nothing is answered
  that is not on disk);
- sequences are unique, consecutive, in queue order, and never skipped: they are assigned by
  the one leader at a time, and advanced only after its commit succeeded;
- a failed commit (the whole transaction rolls back) fails every member of its group with
  :class:`provenance.errors.StorageError`; none of them got a sequence, the next group starts
  at the same number.

With one caller at a time this is one transaction per record, as before; with ``n`` concurrent
callers up to ``n`` records share one sync.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from provenance.errors import ConfigError, StorageError

JOURNAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY, input BLOB NOT NULL, output BLOB NOT NULL, ts INTEGER NOT NULL,
    batch INTEGER
);
CREATE INDEX IF NOT EXISTS records_by_batch ON records (batch, seq);
CREATE TABLE IF NOT EXISTS batches (
    first INTEGER PRIMARY KEY, count INTEGER NOT NULL, root BLOB NOT NULL, ts INTEGER NOT NULL,
    signature BLOB NOT NULL, tx TEXT, block INTEGER
);
"""


def open_journal(path: Path, identity: str) -> sqlite3.Connection:
    """The journal at ``path`` (created if new), synced on every commit, for ``identity`` (the
    model, node and contract); ConfigError when it belongs to another."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(JOURNAL_SCHEMA)
    with db:
        row = db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta (key, value) VALUES ('identity', ?)", (identity,))
        elif row[0] != identity:
            db.close()
            raise ConfigError(f"the journal belongs to another model, node or contract ({row[0]})")
    return db


@dataclass
class _Queued:
    """One record waiting for the commit that covers it."""

    input_digest: bytes
    output_digest: bytes
    timestamp: int
    sequence: int | None = None
    failure: str | None = None
    done: bool = False


@dataclass(frozen=True)
class CommitStats:
    """How the group commit fared: the records appended and the commits (syncs) it took."""

    records: int
    commits: int


class GroupCommit:
    """Appends output records to the journal ``db``, many concurrent callers per commit (see
    the module docstring). ``lock`` guards the connection (the attestor's sealing and reading
    share it); ``next_sequence`` is the sequence the first record gets; ``clock`` stamps each
    record when it is queued, so timestamps never decrease along the sequence."""

    def __init__(
        self,
        db: sqlite3.Connection,
        lock: threading.RLock,
        next_sequence: int,
        clock: Callable[[], float],
    ) -> None:
        self.db = db
        self.lock = lock
        self.clock = clock
        self._next = next_sequence
        self._state = threading.Condition(threading.Lock())
        self._queue: list[_Queued] = []
        self._committing = False
        self._records = 0
        self._commits = 0

    @property
    def next_sequence(self) -> int:
        """The sequence the next committed record gets."""
        with self._state:
            return self._next

    @property
    def stats(self) -> CommitStats:
        with self._state:
            return CommitStats(self._records, self._commits)

    def append(self, input_digest: bytes, output_digest: bytes) -> tuple[int, int]:
        """Journal one record; returns its sequence and timestamp once the commit that covers it
        is synced. StorageError (nothing recorded) when that commit failed."""
        return self.append_many([(input_digest, output_digest)])[0]

    def append_many(self, digests: Sequence[tuple[bytes, bytes]]) -> list[tuple[int, int]]:
        """Journal several records, with consecutive sequences, in one commit (an event loop's
        writer thread hands over what its requests queued meanwhile, without a thread each);
        their sequences and timestamps once that commit is synced. StorageError (none of them
        recorded) when it failed."""
        if not digests:
            return []
        with self._state:
            now = int(self.clock())
            mine = [_Queued(i, o, now) for i, o in digests]
            self._queue.extend(mine)  # contiguous: one leader takes them all, in one group
            while not mine[-1].done and self._committing:
                self._state.wait()
            if mine[-1].done:
                return [self._outcome(q) for q in mine]
            # no commit under way and ours are still queued: lead the next group
            group, self._queue = self._queue, []
            self._committing = True
            first = self._next
        failure: str | None = "the commit was interrupted"
        try:
            with self.lock, self.db:
                self.db.executemany(
                    "INSERT INTO records (seq, input, output, ts) VALUES (?, ?, ?, ?)",
                    [
                        (first + i, q.input_digest, q.output_digest, q.timestamp)
                        for i, q in enumerate(group)
                    ],
                )
            failure = None
        except (sqlite3.Error, OSError) as exc:  # the transaction rolled back: nothing recorded
            failure = _one_line(exc)
        finally:
            with self._state:
                for i, queued in enumerate(group):
                    queued.sequence, queued.failure = (
                        (first + i, None) if not failure else (None, failure)
                    )
                    queued.done = True
                if failure is None:
                    self._next = first + len(group)
                    self._records += len(group)
                    self._commits += 1
                self._committing = False
                self._state.notify_all()
        return [self._outcome(q) for q in mine]

    def _outcome(self, queued: _Queued) -> tuple[int, int]:
        if queued.sequence is None:
            raise StorageError(
                f"the output journal failed, the output was not recorded: {queued.failure}"
            )
        return queued.sequence, queued.timestamp


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
