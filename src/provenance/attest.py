"""Output records and their Merkle batches, as the OutputAttestor contract hashes them.

    records = [OutputRecord(model_id, model_digest, sha256(x), sha256(y), seq, ts) for ...]
    tree = OutputTree([r.leaf for r in records])
    tree.root, tree.proof(7)
    verify_output_proof(tree.root, tree.proof(7), records[7])   # raises on a wrong proof

Leaf: ``keccak256(bytes.concat(keccak256(abi.encode(modelId, modelDigest, inputDigest,
outputDigest, sequence, timestamp))))`` (OpenZeppelin's double-hashed leaf, so a 64-byte inner
node can never pass as a leaf). Tree: pairs hashed in sorted order (OpenZeppelin MerkleProof's
commutative keccak), an odd node promoted to the next level; a proof is the list of siblings
from the leaf up. OpenZeppelin's ``MerkleProof.verify`` accepts these proofs, and so does the
contract's ``verifyRecord``. (Training-data rows use the RFC 6962 SHA-256 tree of
:mod:`provenance.hashing` instead: there the order of rows matters and nothing runs on chain.)

The values and checks are pure (eth-abi, eth-utils, eth-account; no web3). :class:`Attestor`,
the SDK for inference services, adds a SQLite journal and talks to the chain only through the
:class:`AttestationTarget` it is given.
"""

from __future__ import annotations

import contextlib
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import sha3  # safe-pysha3: a C keccak, about 5x the pure-Python-facing alternatives

from provenance.attest_native import native_available as native_available
from provenance.attest_native import record_leaves, tree_levels
from provenance.errors import ConfigError, IntegrityError, ProvenanceError, ServiceError
from provenance.registration import EIP712_DOMAIN_TYPES
from provenance.untrusted import keep_recursion_limit

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount


def keccak256(data: bytes) -> bytes:
    return bytes(sha3.keccak_256(data).digest())


@dataclass(frozen=True)
class OutputRecord:
    """One output of a model, as a node attests it."""

    model_id: bytes
    model_digest: bytes
    input_digest: bytes
    output_digest: bytes
    sequence: int
    timestamp: int

    def as_abi(self) -> tuple[bytes, bytes, bytes, bytes, int, int]:
        return (
            self.model_id,
            self.model_digest,
            self.input_digest,
            self.output_digest,
            self.sequence,
            self.timestamp,
        )

    def encoded(self) -> bytes:
        """``abi.encode(modelId, modelDigest, inputDigest, outputDigest, sequence, timestamp)``:
        six static words, so plain concatenation (a test checks it against eth-abi)."""
        return b"".join(
            (
                self.model_id,
                self.model_digest,
                self.input_digest,
                self.output_digest,
                self.sequence.to_bytes(32, "big"),
                self.timestamp.to_bytes(32, "big"),
            )
        )

    @property
    def leaf(self) -> bytes:
        return keccak256(keccak256(self.encoded()))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """OpenZeppelin's commutative keccak of two nodes."""
    return keccak256(a + b) if a < b else keccak256(b + a)


class OutputTree:
    """A Merkle tree over leaves, compatible with OpenZeppelin's MerkleProof."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.levels: list[list[bytes]] = tree_levels(leaves)  # native when built

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def __len__(self) -> int:
        return len(self.levels[0])

    def proof(self, index: int) -> list[bytes]:
        """The siblings of leaf ``index`` from the bottom up."""
        if not 0 <= index < len(self):
            raise IndexError(f"leaf {index} is not in a tree of {len(self)}")
        proof = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            index //= 2
        return proof


def root_from_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node


def verify_output_proof(root: bytes, proof: Sequence[bytes], record: OutputRecord) -> None:
    """Raise IntegrityError unless ``record`` is in the tree with ``root``."""
    if root_from_proof(record.leaf, proof) != root:
        raise IntegrityError(
            f"output record {record.sequence} of model 0x{record.model_id.hex()} is not in the "
            f"batch with root 0x{root.hex()}"
        )


@dataclass(frozen=True)
class Batch:
    """What a node signs: a root over ``count`` records with consecutive sequences."""

    model_id: bytes
    model_digest: bytes
    root: bytes
    first_sequence: int
    count: int
    timestamp: int

    def as_abi(self) -> tuple[bytes, bytes, bytes, int, int, int]:
        return (
            self.model_id,
            self.model_digest,
            self.root,
            self.first_sequence,
            self.count,
            self.timestamp,
        )

    @classmethod
    def of_one(cls, record: OutputRecord) -> Batch:
        """A single attestation is a batch of one whose root is the record's leaf."""
        return cls(
            record.model_id, record.model_digest, record.leaf, record.sequence, 1, record.timestamp
        )


BATCH_EIP712_TYPES: dict[str, list[dict[str, str]]] = {
    "OutputBatch": [
        {"name": "modelId", "type": "bytes32"},
        {"name": "modelDigest", "type": "bytes32"},
        {"name": "root", "type": "bytes32"},
        {"name": "firstSequence", "type": "uint64"},
        {"name": "count", "type": "uint32"},
        {"name": "timestamp", "type": "uint64"},
    ]
}


# --------------------------------------------------------------------------- receipts
@dataclass(frozen=True)
class Receipt:
    """Everything an outsider needs to check one output: the record, its batch, the proof, the
    node's signature, where to look on chain, and (once anchored) the transaction."""

    record: OutputRecord
    batch: Batch
    proof: tuple[bytes, ...]
    signature: bytes
    node: str
    chain_id: int
    contract: str
    transaction: str | None = None
    block: int | None = None

    def to_json(self) -> dict[str, object]:
        hx = _hex
        r, b = self.record, self.batch
        return {
            "version": 1,
            "record": {
                "model_id": hx(r.model_id),
                "model_digest": hx(r.model_digest),
                "input_digest": hx(r.input_digest),
                "output_digest": hx(r.output_digest),
                "sequence": r.sequence,
                "timestamp": r.timestamp,
            },
            "batch": {
                "root": hx(b.root),
                "first_sequence": b.first_sequence,
                "count": b.count,
                "timestamp": b.timestamp,
            },
            "proof": [hx(p) for p in self.proof],
            "signature": hx(self.signature),
            "node": self.node,
            "chain_id": self.chain_id,
            "contract": self.contract,
            "transaction": self.transaction,
            "block": self.block,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Receipt:
        """A receipt from its JSON form (:meth:`to_json`); numbers must be JSON integers in
        their ABI range (``1.5``, ``true`` or ``"1"`` are refused, not coerced), hex fields hex,
        addresses 20-byte ``0x`` hex, the signature 65 bytes (checked here, so the signature and
        chain checks never meet a value they cannot encode). Raises IntegrityError with a
        one-line reason."""
        try:
            if not isinstance(data, dict):
                raise ValueError("a receipt is a JSON object")
            if data.get("version", 1) != 1:
                raise ValueError(f"version {data['version']!r} is not 1")
            r = data["record"]
            b = data["batch"]
            if not isinstance(r, dict) or not isinstance(b, dict):
                raise ValueError("record and batch must be objects")
            record = OutputRecord(
                _unhex(r["model_id"]),
                _unhex(r["model_digest"]),
                _unhex(r["input_digest"]),
                _unhex(r["output_digest"]),
                _uint(r["sequence"], 64, "record.sequence"),
                _uint(r["timestamp"], 64, "record.timestamp"),
            )
            batch = Batch(
                record.model_id,
                record.model_digest,
                _unhex(b["root"]),
                _uint(b["first_sequence"], 64, "batch.first_sequence"),
                _uint(b["count"], 32, "batch.count"),
                _uint(b["timestamp"], 64, "batch.timestamp"),
            )
            proof = data["proof"]
            if not isinstance(proof, list):
                raise ValueError("proof must be a list")
            block = data.get("block")
            transaction = data.get("transaction")
            chain_id = _uint(data["chain_id"], 256, "chain_id")
            if chain_id == 0:
                raise ValueError("chain_id 0 is not a chain")
            return cls(
                record=record,
                batch=batch,
                proof=tuple(_unhex(p) for p in proof),
                signature=_unhex(data["signature"], size=65),
                node=_address(data["node"], "node"),
                chain_id=chain_id,
                contract=_address(data["contract"], "contract"),
                transaction=None if transaction is None else str(transaction),
                block=None if block is None else _uint(block, 64, "block"),
            )
        except KeyError as exc:
            raise IntegrityError(
                f"not a valid output receipt: {exc.args[0]!r} is missing"
            ) from None
        except (TypeError, ValueError) as exc:
            raise IntegrityError(f"not a valid output receipt: {exc}") from None


def _uint(value: object, bits: int, name: str) -> int:
    """A JSON integer (not a bool, float or string) that fits ``uint<bits>``."""
    if type(value) is not int:
        raise ValueError(f"{name} must be an integer, not {value!r:.40}")
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{name} is out of the uint{bits} range")
    return value


def _address(value: object, name: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
        raise ValueError(f"{name} must be a 20-byte 0x address, not {value!r:.60}")
    return value


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def _unhex(value: object, size: int | None = 32) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"expected 0x hex, not {value!r:.40}")
    text = value
    try:
        raw = bytes.fromhex(text[2:] if text.startswith("0x") else text)
    except ValueError:
        raise ValueError(f"{text[:80]!r} is not hex") from None
    if size is not None and len(raw) != size:
        raise ValueError(f"{text[:80]!r} is not {size} bytes")
    return raw


def batch_typed_data(batch: Batch, chain_id: int, contract: str) -> dict[str, Any]:
    """The EIP-712 typed data a node signs for ``batch`` on the attestor at ``contract``."""
    return {
        "types": {
            "EIP712Domain": EIP712_DOMAIN_TYPES,
            **BATCH_EIP712_TYPES,
        },
        "primaryType": "OutputBatch",
        "domain": {
            "name": "provenance OutputAttestor",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": contract,
        },
        "message": {
            "modelId": batch.model_id,
            "modelDigest": batch.model_digest,
            "root": batch.root,
            "firstSequence": batch.first_sequence,
            "count": batch.count,
            "timestamp": batch.timestamp,
        },
    }


def verify_receipt_offline(
    receipt: Receipt, *, input_data: bytes | None = None, output_data: bytes | None = None
) -> None:
    """Everything but the chain: the digests of the given input/output, the record inside the
    batch (Merkle proof), the record inside the batch's sequence range, and the node's signature
    over the batch. Raises IntegrityError on the first failure."""
    import hashlib

    from eth_abi.exceptions import EncodingError

    keep_recursion_limit()
    from eth_account import Account
    from eth_account.messages import encode_typed_data
    from eth_keys.exceptions import BadSignature
    from eth_utils.exceptions import ValidationError

    r, b = receipt.record, receipt.batch
    if input_data is not None and hashlib.sha256(input_data).digest() != r.input_digest:
        raise IntegrityError(
            f"the input does not match the receipt's input digest 0x{r.input_digest.hex()}"
        )
    if output_data is not None and hashlib.sha256(output_data).digest() != r.output_digest:
        raise IntegrityError(
            f"the output does not match the receipt's output digest 0x{r.output_digest.hex()}"
        )
    if (b.model_id, b.model_digest) != (r.model_id, r.model_digest):
        raise IntegrityError("the receipt's record and batch name different models")
    if not b.first_sequence <= r.sequence < b.first_sequence + b.count:
        raise IntegrityError(
            f"sequence {r.sequence} is outside the batch's range {b.first_sequence}..{b.first_sequence + b.count - 1}"
        )
    try:
        verify_output_proof(b.root, receipt.proof, r)
    except OverflowError as exc:  # a Receipt built with out-of-range values
        raise IntegrityError(f"the receipt's record cannot be encoded: {exc}") from exc
    try:
        signable = encode_typed_data(
            full_message=batch_typed_data(b, receipt.chain_id, receipt.contract)
        )
    except (ValueError, TypeError, EncodingError) as exc:
        raise IntegrityError(f"the receipt's batch cannot be encoded: {exc}") from exc
    try:
        signer = Account.recover_message(signable, signature=receipt.signature)
    except (ValueError, TypeError, IndexError, BadSignature, ValidationError) as exc:
        raise IntegrityError(f"the batch signature is malformed: {exc}") from exc
    if signer.lower() != receipt.node.lower():
        raise IntegrityError(f"the batch is signed by {signer}, not by the node {receipt.node}")


# ------------------------------------------------------------------------ the SDK
class AttestationTarget(Protocol):
    """The chain side an :class:`Attestor` needs (``provenance.chain.attestor.AttestorContract``)."""

    @property
    def address(self) -> str: ...

    def chain_id(self) -> int: ...

    def next_sequence(self, node: str) -> int: ...

    def sign_batch(self, node: LocalAccount, batch: Batch) -> bytes: ...

    def anchor(self, batch: Batch, signature: bytes) -> tuple[str, int]: ...

    def find_batch(self, root: bytes, node: str) -> tuple[str, int] | None: ...


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
        journal.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(journal), check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(JOURNAL_SCHEMA)
        self._check_identity()
        local = self.db.execute("SELECT max(seq) FROM records").fetchone()[0]
        with self._chain("reading the node's sequence"):
            on_chain = target.next_sequence(node.address)
            self._chain_id = target.chain_id()
        self._next = max(-1 if local is None else int(local), on_chain - 1) + 1

    @contextlib.contextmanager
    def _chain(self, what: str) -> Iterator[None]:
        """Errors of the chain side (an RPC that went away raises the HTTP client's own
        exceptions) as ServiceError; ours pass through."""
        try:
            yield
        except ProvenanceError:
            raise
        except Exception as exc:
            reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            raise ServiceError(
                f"anchoring outputs of model 0x{self.model_id.hex()}: {what} failed: {reason}"
            ) from exc

    def _check_identity(self) -> None:
        identity = f"{self.model_id.hex()}:{self.model_digest.hex()}:{self.node.address}:{self.target.address}"
        with self.db:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta (key, value) VALUES ('identity', ?)", (identity,))
            elif row[0] != identity:
                raise ConfigError(
                    f"the journal belongs to another model, node or contract ({row[0]})"
                )

    # ----------------------------------------------------------------- recording
    def record(self, input_data: bytes, output_data: bytes) -> OutputRecord:
        """Journal one output (durably) and return its record; it is attested at the next flush."""
        import hashlib

        with self._lock:
            seq = self._next
            ts = int(self.clock())
            rec = OutputRecord(
                self.model_id,
                self.model_digest,
                hashlib.sha256(input_data).digest(),
                hashlib.sha256(output_data).digest(),
                seq,
                ts,
            )
            with self.db:
                self.db.execute(
                    "INSERT INTO records (seq, input, output, ts) VALUES (?, ?, ?, ?)",
                    (seq, rec.input_digest, rec.output_digest, ts),
                )
            self._next += 1
            return rec

    @property
    def next_sequence(self) -> int:
        """The sequence number the next recorded output gets."""
        with self._lock:
            return self._next

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
