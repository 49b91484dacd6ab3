from __future__ import annotations

import hashlib
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak

from provenance.attest import (
    Attestor,
    Batch,
    CommitStats,
    OutputRecord,
    OutputTree,
    batch_typed_data,
    hash_pair,
    root_from_proof,
    verify_output_proof,
    verify_receipt_offline,
)
from provenance.errors import IntegrityError, StorageError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount


def record(seq: int) -> OutputRecord:
    return OutputRecord(
        b"\x01" * 32,
        b"\x02" * 32,
        keccak(b"in%d" % seq),
        keccak(b"out%d" % seq),
        seq,
        1_700_000_000,
    )


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 100])
def test_every_leaf_proves_into_the_root(size: int) -> None:
    records = [record(i) for i in range(size)]
    tree = OutputTree([r.leaf for r in records])
    for i, r in enumerate(records):
        assert root_from_proof(r.leaf, tree.proof(i)) == tree.root
        verify_output_proof(tree.root, tree.proof(i), r)


def test_a_single_output_is_its_own_root() -> None:
    r = record(0)
    assert OutputTree([r.leaf]).root == r.leaf
    assert Batch.of_one(r).root == r.leaf and Batch.of_one(r).count == 1


def test_pairs_hash_commutatively_and_leaves_are_double_hashed() -> None:
    a, b = keccak(b"a"), keccak(b"b")
    assert hash_pair(a, b) == hash_pair(b, a)
    assert record(0).leaf != keccak(record(0).leaf)  # the leaf is keccak(keccak(abi.encode(...)))


def test_changed_records_and_wrong_proofs_are_refused() -> None:
    records = [record(i) for i in range(6)]
    tree = OutputTree([r.leaf for r in records])
    changed = OutputRecord(*records[3].as_abi()[:3], keccak(b"tampered"), 3, records[3].timestamp)
    with pytest.raises(IntegrityError) as info:
        verify_output_proof(tree.root, tree.proof(3), changed)
    assert str(info.value) == (
        f"output record 3 of model 0x{'01' * 32} is not in the batch with root 0x{tree.root.hex()}"
    )
    with pytest.raises(IntegrityError):
        verify_output_proof(tree.root, tree.proof(2), records[3])
    with pytest.raises(IndexError, match=r"^leaf 6 is not in a tree of 6$"):
        tree.proof(6)
    with pytest.raises(ValueError, match=r"^an output tree needs at least one leaf$"):
        OutputTree([])


def test_the_fast_encoding_is_abi_encode() -> None:
    from eth_abi.abi import encode

    r = record(7)
    assert r.encoded() == encode(
        ["bytes32", "bytes32", "bytes32", "bytes32", "uint64", "uint64"], list(r.as_abi())
    )
    assert r.leaf == keccak(keccak(r.encoded()))


# ------------------------------------------------------------ the journal's group commit
class OfflineTarget:
    """The chain side of an Attestor, kept in memory: signs batches for real (EIP-712, as the
    contract checks them), so receipts verify offline; anchoring just counts."""

    address = "0x" + "42" * 20

    def __init__(self) -> None:
        self.anchored: list[Batch] = []

    def chain_id(self) -> int:
        return 31337

    def next_sequence(self, node: str) -> int:
        return sum(b.count for b in self.anchored)

    def sign_batch(self, node: LocalAccount, batch: Batch) -> bytes:
        message = encode_typed_data(full_message=batch_typed_data(batch, 31337, self.address))
        return bytes(node.sign_message(message).signature)

    def anchor(self, batch: Batch, signature: bytes) -> tuple[str, int]:
        self.anchored.append(batch)
        return "0x" + "ab" * 32, len(self.anchored)

    def find_batch(self, root: bytes, node: str) -> tuple[str, int] | None:
        return None


def attestor_at(path: Path) -> Attestor:
    return Attestor(b"\x01" * 32, b"\x02" * 32, Account.create(), OfflineTarget(), path)


def in_threads(work: Callable[[int], object], n: int) -> list[threading.Thread]:
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads


def until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_the_journal_syncs_every_commit(tmp_path: Path) -> None:
    sdk = attestor_at(tmp_path / "journal.sqlite")
    assert sdk.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert sdk.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsync at each commit
    sdk.close()


def test_concurrent_records_get_unique_gap_free_sequences(tmp_path: Path) -> None:
    sdk = attestor_at(tmp_path / "journal.sqlite")
    made: dict[int, tuple[bytes, bytes, OutputRecord]] = {}

    def work(worker: int) -> None:
        for i in range(50):
            x, y = b"in %d %d" % (worker, i), b"out %d %d" % (worker, i)
            record = sdk.record(x, y)
            made[record.sequence] = (x, y, record)

    for t in in_threads(work, 8):
        t.join()
    assert sorted(made) == list(range(400)) and sdk.next_sequence == 400
    rows = sdk.db.execute("SELECT seq, input, output, ts FROM records ORDER BY seq").fetchall()
    assert [(s, i, o, t) for s, i, o, t in rows] == [
        (r.sequence, r.input_digest, r.output_digest, r.timestamp)
        for _, _, r in sorted(made.values(), key=lambda m: m[2].sequence)
    ]
    assert [t for *_, t in rows] == sorted(t for *_, t in rows)  # never back in time
    stats = sdk.journal_stats
    assert stats.records == 400 and 1 <= stats.commits <= 400
    sdk.batch_size = 64
    sdk.flush()
    for seq in (0, 63, 64, 399):
        x, y, record = made[seq]
        receipt = sdk.receipt(seq)
        assert receipt is not None and receipt.record == record
        verify_receipt_offline(receipt, input_data=x, output_data=y)
    sdk.close()


def test_records_queued_during_a_commit_share_the_next_one(tmp_path: Path) -> None:
    """Five records arriving while a commit runs are written and synced together, and none is
    answered before that commit."""
    sdk = attestor_at(tmp_path / "journal.sqlite")
    answered: dict[int, int] = {}

    def work(i: int) -> None:
        answered[i] = sdk.record(b"in %d" % i, b"out").sequence

    with sdk._lock:  # the journal is busy: the first caller leads a commit that cannot finish
        (leader,) = in_threads(work, 1)
        until(lambda: sdk._journal._committing)
        followers = in_threads(lambda i: work(i + 1), 5)
        until(lambda: len(sdk._journal._queue) == 5)
        time.sleep(0.05)
        assert answered == {} and sdk.next_sequence == 0
    for t in [leader, *followers]:
        t.join()
    assert answered[0] == 0 and sorted(answered.values()) == list(range(6))
    assert sdk.journal_stats == CommitStats(records=6, commits=2)
    sdk.close()


def test_a_failed_commit_fails_every_record_of_its_group(tmp_path: Path) -> None:
    """A record the journal refuses rolls back its whole group: no member is answered with a
    sequence, nothing of it is on disk, and the next record takes the first unused sequence."""
    sdk = attestor_at(tmp_path / "journal.sqlite")
    poison = hashlib.sha256(b"poison").digest()
    sdk.db.execute(
        f"CREATE TRIGGER refuse BEFORE INSERT ON records WHEN NEW.input = X'{poison.hex()}'"
        " BEGIN SELECT RAISE(ABORT, 'disk I/O error (simulated)'); END"
    )
    outcomes: dict[bytes, int | str] = {}

    def work(x: bytes) -> None:
        try:
            outcomes[x] = sdk.record(x, b"out").sequence
        except StorageError as exc:
            outcomes[x] = str(exc)

    with sdk._lock:
        (leader,) = in_threads(lambda _: work(b"first"), 1)
        until(lambda: sdk._journal._committing)
        group = []
        for n, x in enumerate([b"a", b"b", b"poison", b"c"], 1):  # the poison is third in line
            group += in_threads(lambda _, x=x: work(x), 1)
            until(lambda n=n: len(sdk._journal._queue) == n)
    for t in [leader, *group]:
        t.join()
    failed = "the output journal failed, the output was not recorded: disk I/O error (simulated)"
    assert outcomes == {b"first": 0, b"a": failed, b"b": failed, b"poison": failed, b"c": failed}
    assert sdk.db.execute("SELECT seq FROM records").fetchall() == [(0,)]
    assert sdk.next_sequence == 1
    assert sdk.record(b"after", b"out").sequence == 1
    assert sdk.journal_stats == CommitStats(records=2, commits=2)
    sdk.close()


CHILD = """
import sys, threading
from pathlib import Path
from eth_account import Account
from provenance.attest import Attestor

class Target:
    address = "0x" + "42" * 20
    def chain_id(self): return 31337
    def next_sequence(self, node): return 0

sdk = Attestor(b"\\x01" * 32, b"\\x02" * 32, Account.create(), Target(), Path(sys.argv[1]))
lock = threading.Lock()

def work(worker):
    i = 0
    while True:
        x = b"in %d %d" % (worker, i)
        record = sdk.record(x, b"out")
        with lock:  # printed only once record() returned: the answer
            print(record.sequence, record.input_digest.hex(), flush=True)
        i += 1

for w in range(4):
    threading.Thread(target=work, args=(w,), daemon=True).start()
threading.Event().wait()
"""


def test_every_answered_record_survives_a_kill(tmp_path: Path) -> None:
    """SIGKILL while four threads record: every record whose call had returned is in the
    journal with its digest, and the journal's sequences have no gap."""
    journal = tmp_path / "journal.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(journal)], stdout=subprocess.PIPE, text=True
    )
    answered: dict[int, str] = {}
    try:
        assert child.stdout is not None
        while len(answered) < 300:
            line = child.stdout.readline()
            assert line, "the recording process died"
            seq, digest = line.split()
            answered[int(seq)] = digest
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    db = sqlite3.connect(journal)
    on_disk = {s: i.hex() for s, i in db.execute("SELECT seq, input FROM records")}
    db.close()
    assert {s: on_disk.get(s) for s in answered} == answered
    assert sorted(on_disk) == list(range(len(on_disk)))
