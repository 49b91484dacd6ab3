"""A local index of the registry's events (SQLite), for fast family-tree queries.

    index = LineageIndex(state_dir / "index" / "31337-0x5FbD....sqlite")
    index.sync(registry)              # incremental: resumes after the last block it saw
    index.ancestors(model_id)         # nearest first, one recursive query
    index.is_tainted(model_id)        # some ancestor revoked

The index remembers the last block it applied and that block's hash. On the next sync it
checks the hash: a chain reset (the block is gone) or a reorg (another hash) wipes the index
and replays the events from the deployment block. It is a cache of the chain, never the
source of truth: verification reads the contract.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from eth_utils.address import to_checksum_address

from provenance.chain.types import Status
from provenance.errors import ChainError
from provenance.registration import ZERO32, Parent, Relation

if TYPE_CHECKING:
    from provenance.chain.registry import Registry, RegistryEvent

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    id BLOB PRIMARY KEY,
    registrant TEXT NOT NULL,
    certificate_digest BLOB NOT NULL,
    model_digest BLOB NOT NULL,
    data_commitment BLOB NOT NULL,
    block INTEGER NOT NULL,
    tx TEXT NOT NULL,
    status INTEGER NOT NULL,
    revoked_parent_ack INTEGER NOT NULL DEFAULT 0,
    revoked_by TEXT,
    revoke_reason BLOB,
    revoked_block INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS edges (
    child BLOB NOT NULL,
    parent BLOB NOT NULL,
    relation INTEGER NOT NULL,
    PRIMARY KEY (child, parent)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS edges_by_parent ON edges (parent, child);
CREATE INDEX IF NOT EXISTS models_by_registrant ON models (registrant);
CREATE INDEX IF NOT EXISTS models_by_model_digest ON models (model_digest);
CREATE INDEX IF NOT EXISTS models_by_certificate ON models (certificate_digest);
CREATE TABLE IF NOT EXISTS roles (
    role BLOB NOT NULL,
    account TEXT NOT NULL,
    active INTEGER NOT NULL,
    PRIMARY KEY (role, account)
) WITHOUT ROWID;
"""

_ANCESTORS = """
WITH RECURSIVE walk(id) AS (
    SELECT parent FROM edges WHERE child = ?
    UNION
    SELECT e.parent FROM edges e JOIN walk w ON e.child = w.id
)
"""
_DESCENDANTS = """
WITH RECURSIVE walk(id) AS (
    SELECT child FROM edges WHERE parent = ?
    UNION
    SELECT e.child FROM edges e JOIN walk w ON e.parent = w.id
)
"""


@dataclass(frozen=True)
class IndexedModel:
    """A registered model as the events describe it."""

    id: bytes
    registrant: str
    certificate_digest: bytes
    model_digest: bytes
    data_commitment: bytes
    block: int
    transaction: str
    status: Status
    revoked_parent_acknowledged: bool
    revoked_by: str | None
    revoke_reason: bytes | None


@dataclass(frozen=True)
class SyncResult:
    from_block: int
    to_block: int
    events: int
    reset: bool  # the index was wiped (chain reset, reorg, other contract)


class LineageIndex:
    """The SQLite index at ``path`` (``":memory:"`` for a throwaway one)."""

    def __init__(self, path: Path | str) -> None:
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path))
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA mmap_size=1073741824")  # read through the page cache, not copies
        self.db.execute("PRAGMA cache_size=-65536")  # 64 MiB
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> LineageIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- meta
    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self.db:
            yield self.db

    def _wipe(self) -> None:
        for table in ("meta", "models", "edges", "roles"):
            self.db.execute(f"DELETE FROM {table}")

    # ----------------------------------------------------------------- sync
    def sync(self, registry: Registry, *, to_block: int | None = None) -> SyncResult:
        """Apply the registry's events up to ``to_block`` (default: the head)."""
        w3 = registry.w3
        head = w3.eth.block_number if to_block is None else to_block
        identity = f"{w3.eth.chain_id}:{registry.address}"
        reset = False
        start = registry.from_block
        with self._transaction():
            stored = self._meta("identity")
            last = self._meta("last_block")
            if stored is not None and stored != identity:
                self._wipe()
                reset = True
            elif last is not None:
                last_block = int(last)
                if last_block > head or _block_hash(registry, last_block) != self._meta(
                    "last_hash"
                ):
                    self._wipe()  # chain reset or reorg: replay everything
                    reset = True
                else:
                    start = last_block + 1
            count = 0
            for event in registry.events(start, head):
                self._apply(event)
                count += 1
            if head >= start or self._meta("last_block") is None:
                self.db.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [
                        ("identity", identity),
                        ("last_block", str(head)),
                        ("last_hash", _block_hash(registry, head)),
                    ],
                )
        return SyncResult(from_block=start, to_block=head, events=count, reset=reset)

    @property
    def last_block(self) -> int | None:
        value = self._meta("last_block")
        return None if value is None else int(value)

    def _apply(self, event: RegistryEvent) -> None:
        a = event.args
        if event.name == "ModelRegistered":
            self.db.execute(
                "INSERT INTO models (id, registrant, certificate_digest, model_digest,"
                " data_commitment, block, tx, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    bytes(a["id"]),
                    to_checksum_address(a["registrant"]),
                    bytes(a["certificateDigest"]),
                    bytes(a["modelDigest"]),
                    bytes(a["dataCommitment"]),
                    event.block,
                    event.transaction,
                    int(Status.ACTIVE),
                ),
            )
            if bytes(a["firstParent"]) != ZERO32:
                self._edge(bytes(a["id"]), bytes(a["firstParent"]), int(a["firstRelation"]))
        elif event.name == "ParentLinked":
            self._edge(bytes(a["child"]), bytes(a["parent"]), int(a["relation"]))
        elif event.name == "RevokedParentAcknowledged":
            self.db.execute(
                "UPDATE models SET revoked_parent_ack = 1 WHERE id = ?", (bytes(a["id"]),)
            )
        elif event.name == "ModelRevoked":
            self.db.execute(
                "UPDATE models SET status = ?, revoked_by = ?, revoke_reason = ?, revoked_block = ?"
                " WHERE id = ?",
                (
                    int(Status.REVOKED),
                    to_checksum_address(a["revokedBy"]),
                    bytes(a["reasonDigest"]),
                    event.block,
                    bytes(a["id"]),
                ),
            )
        elif event.name in ("RoleGranted", "RoleRevoked"):
            self.db.execute(
                "INSERT OR REPLACE INTO roles (role, account, active) VALUES (?, ?, ?)",
                (
                    bytes(a["role"]),
                    to_checksum_address(a["account"]),
                    int(event.name == "RoleGranted"),
                ),
            )

    def _edge(self, child: bytes, parent: bytes, relation: int) -> None:
        self.db.execute(
            "INSERT INTO edges (child, parent, relation) VALUES (?, ?, ?)",
            (child, parent, relation),
        )

    # -------------------------------------------------------------- queries
    def get(self, model_id: bytes) -> IndexedModel | None:
        row = self.db.execute(
            "SELECT id, registrant, certificate_digest, model_digest, data_commitment, block, tx,"
            " status, revoked_parent_ack, revoked_by, revoke_reason FROM models WHERE id = ?",
            (model_id,),
        ).fetchone()
        if row is None:
            return None
        return IndexedModel(
            id=row[0],
            registrant=row[1],
            certificate_digest=row[2],
            model_digest=row[3],
            data_commitment=row[4],
            block=row[5],
            transaction=row[6],
            status=Status(row[7]),
            revoked_parent_acknowledged=bool(row[8]),
            revoked_by=row[9],
            revoke_reason=row[10],
        )

    def require(self, model_id: bytes) -> IndexedModel:
        found = self.get(model_id)
        if found is None:
            raise ChainError(
                f"model 0x{model_id.hex()} is not in the index (not registered, or sync first)"
            )
        return found

    def parents(self, model_id: bytes) -> list[Parent]:
        rows = self.db.execute(
            "SELECT parent, relation FROM edges WHERE child = ? ORDER BY parent", (model_id,)
        )
        return [Parent(p, Relation(r)) for p, r in rows]

    def children(self, model_id: bytes) -> list[tuple[bytes, Relation]]:
        rows = self.db.execute(
            "SELECT e.child, e.relation FROM edges e JOIN models m ON m.id = e.child"
            " WHERE e.parent = ? ORDER BY m.block, e.child",
            (model_id,),
        )
        return [(c, Relation(r)) for c, r in rows]

    def ancestors(self, model_id: bytes) -> list[bytes]:
        """Every ancestor, breadth-first (nearest first)."""
        return [r[0] for r in self.db.execute(_ANCESTORS + "SELECT id FROM walk", (model_id,))]

    def descendants(self, model_id: bytes) -> list[bytes]:
        return [r[0] for r in self.db.execute(_DESCENDANTS + "SELECT id FROM walk", (model_id,))]

    def revoked_ancestors(self, model_id: bytes) -> list[bytes]:
        query = (
            _ANCESTORS + "SELECT w.id FROM walk w JOIN models m ON m.id = w.id WHERE m.status = ?"
        )
        return [r[0] for r in self.db.execute(query, (model_id, int(Status.REVOKED)))]

    def is_tainted(self, model_id: bytes) -> bool:
        """True when some ancestor is revoked."""
        return bool(self.revoked_ancestors(model_id))

    def models_of(self, registrant: str) -> list[bytes]:
        rows = self.db.execute(
            "SELECT id FROM models WHERE registrant = ? ORDER BY block, id",
            (to_checksum_address(registrant),),
        )
        return [r[0] for r in rows]

    def by_model_digest(self, digest: bytes) -> list[bytes]:
        return [
            r[0] for r in self.db.execute("SELECT id FROM models WHERE model_digest = ?", (digest,))
        ]

    def by_certificate(self, digest: bytes) -> list[bytes]:
        return [
            r[0]
            for r in self.db.execute(
                "SELECT id FROM models WHERE certificate_digest = ?", (digest,)
            )
        ]

    def ids_with_prefix(self, hex_prefix: str, *, limit: int = 2) -> list[bytes]:
        """Up to ``limit`` ids whose hex form starts with ``hex_prefix`` (lower-case hex
        digits, no 0x), in order: a range scan of the primary key."""
        low = bytes.fromhex(hex_prefix.ljust(64, "0"))
        high = bytes.fromhex(hex_prefix.ljust(64, "f"))
        rows = self.db.execute(
            "SELECT id FROM models WHERE id BETWEEN ? AND ? ORDER BY id LIMIT ?",
            (low, high, limit),
        )
        return [r[0] for r in rows]

    def all_ids(self) -> list[bytes]:
        return [r[0] for r in self.db.execute("SELECT id FROM models ORDER BY id")]

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM models").fetchone()[0])


def _block_hash(registry: Registry, number: int) -> str:
    block = registry.w3.eth.get_block(number)
    return "0x" + bytes(block["hash"] or b"").hex()
