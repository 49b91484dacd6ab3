"""Row proofs: that a row was row *i* of a dataset's rows (of its source, for a subset), from
the row's canonical encoding through a Merkle path to the table root, and from the table's
manifest to the dataset's published (possibly salted) commitment.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field, JsonValue

from provenance.errors import CertificateError, IntegrityError
from provenance.hashing import (
    MerkleProof,
    format_digest,
    merkle_proof_of_hashes,
    merkle_root_of_hashes,
    parse_digest,
    verify_merkle_proof,
)
from provenance.manifest.datasets import (
    DatasetOpening,
    DatasetRecord,
    salted_commitment,
    verify_opening,
)
from provenance.manifest.rows import decode_row
from provenance.manifest.subsets import subset_of
from provenance.manifest.tables import Table, TableManifest, _compare, verify_table
from provenance.schema import Digest, Frozen, HexBytes


class RowProof(Frozen):
    """That a row was row ``row`` of a dataset's rows (``source_row`` of its source, for a
    subset), leading through the Merkle ``path`` to ``manifest.root`` and from the manifest to
    the dataset's published ``commitment`` (with ``salt`` for a confidential dataset)."""

    version: Literal[1] = 1
    dataset: str
    commitment: Digest
    manifest: TableManifest
    row: Annotated[int, Field(ge=0)]
    source_row: Annotated[int, Field(ge=0)] | None = None
    encoded: HexBytes
    cells: list[JsonValue]
    path: tuple[Digest, ...]
    salt: HexBytes | None = None


def prove_row(
    record: DatasetRecord,
    table: Table,
    row: int,
    *,
    opening: DatasetOpening | None = None,
    by_source_row: bool = False,
) -> RowProof:
    """An inclusion proof for row ``row`` of the dataset (or, ``by_source_row``, for the
    source row of that position), recomputed from the source table and checked against the
    record before it is returned."""
    manifest, subset = (
        (opening.manifest, opening.subset)
        if opening is not None
        else (record.manifest, record.subset)
    )
    if opening is not None:
        verify_opening(record, opening)
    if not isinstance(manifest, TableManifest):
        raise CertificateError(f"dataset {record.name!r} is not a table: rows cannot be proven")
    if subset is not None:
        result = subset_of(table, subset.selection)
        verify_table(subset.source, table)
        leaves, positions = list(result.leaves), list(result.positions)
    else:
        leaves = table.leaf_hashes()
        positions = list(range(len(leaves)))
    _compare(
        f"root of dataset {record.name!r}",
        manifest.root,
        format_digest(merkle_root_of_hashes(leaves)),
    )
    if by_source_row:
        if row not in positions:
            raise CertificateError(f"source row {row} is not in dataset {record.name!r}")
        index = positions.index(row)
    else:
        if not 0 <= row < len(leaves):
            raise CertificateError(f"dataset {record.name!r} has {len(leaves)} rows, no row {row}")
        index = row
    source_position = positions[index]
    encoded = _nth(table.rows(), source_position)
    proof = merkle_proof_of_hashes(leaves, index)
    result_proof = RowProof(
        dataset=record.name,
        commitment=record.commitment,
        manifest=manifest,
        row=index,
        source_row=source_position if subset is not None else None,
        encoded="0x" + encoded.hex(),
        cells=decode_row(encoded),
        path=tuple(format_digest(p) for p in proof.path),
        salt=opening.salt if opening is not None else None,
    )
    verify_row_proof(result_proof)
    return result_proof


def _nth(rows: Iterator[bytes], n: int) -> bytes:
    for i, r in enumerate(rows):
        if i == n:
            return r
    raise IntegrityError(f"the source has no row {n}")


def verify_row_proof(proof: RowProof, commitment: str | None = None) -> None:
    """Check a row proof on its own (and against an expected ``commitment``, e.g. the one in a
    certificate); raises IntegrityError."""
    encoded = bytes.fromhex(proof.encoded[2:])
    if decode_row(encoded) != proof.cells:
        raise IntegrityError("the proof's cells are not its encoded row")
    verify_merkle_proof(
        encoded,
        MerkleProof(proof.row, proof.manifest.rows, tuple(parse_digest(p) for p in proof.path)),
        parse_digest(proof.manifest.root),
    )
    published = (
        salted_commitment(proof.manifest.digest, bytes.fromhex(proof.salt[2:]))
        if proof.salt is not None
        else proof.manifest.digest
    )
    _compare(f"commitment of dataset {proof.dataset!r}", proof.commitment, published)
    if commitment is not None:
        _compare(f"commitment of dataset {proof.dataset!r}", commitment, proof.commitment)
