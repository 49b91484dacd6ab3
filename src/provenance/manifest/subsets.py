"""Subsets: the rows of a source table picked by a selection: explicit row positions (as
ranges), a pandas ``DataFrame.eval`` filter expression, or a hash-based sample (row ``i`` is kept
iff the first 8 bytes of ``SHA-256("provenance/sample/v1" || seed || i)`` read as an integer are
below ``fraction * 2**64``: stable forever, unlike a library's random generator). A subset's rows
are rows of its source with the same encoding, so the subset root is recomputed from the source
and its selection (:func:`verify_subset`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, model_validator

from provenance.errors import CertificateError, IntegrityError
from provenance.hashing import merkle_root_of_hashes
from provenance.manifest.tables import Table, TableManifest, _compare, verify_table
from provenance.schema import Frozen

if TYPE_CHECKING:
    import pandas as pd


class IndexSelection(Frozen):
    """Rows by position in the source, in training order, as half-open ``[start, stop)`` ranges."""

    kind: Literal["indices"] = "indices"
    ranges: tuple[tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]], ...]

    @model_validator(mode="after")
    def _ordered(self) -> IndexSelection:
        for start, stop in self.ranges:
            if stop <= start:
                raise ValueError(f"empty or reversed range [{start}, {stop})")
        return self

    @classmethod
    def of(cls, positions: Sequence[int] | Any) -> IndexSelection:
        """From row positions (a list, a numpy array, a pandas RangeIndex/Index of positions)."""
        ranges: list[tuple[int, int]] = []
        for raw in positions:
            p = int(raw)
            if p < 0:
                raise CertificateError(f"row position {p} is negative")
            if ranges and ranges[-1][1] == p:
                ranges[-1] = (ranges[-1][0], p + 1)
            else:
                ranges.append((p, p + 1))
        return cls(ranges=tuple(ranges))

    def positions(self, rows: int) -> list[int]:
        out = [p for start, stop in self.ranges for p in range(start, stop)]
        if out and max(out) >= rows:
            raise IntegrityError(f"the selection picks row {max(out)}, the source has {rows} rows")
        return out


class FilterSelection(Frozen):
    """Rows for which a pandas ``DataFrame.eval`` expression over the source's typed columns is
    true, in source order. The expression may not use ``@`` (local variables) nor dunders."""

    kind: Literal["filter"] = "filter"
    expression: Annotated[str, Field(min_length=1)]

    @model_validator(mode="after")
    def _safe(self) -> FilterSelection:
        if "__" in self.expression or "@" in self.expression:
            raise ValueError("a filter expression may not use '@' or '__'")
        return self

    def positions(self, frame: pd.DataFrame) -> list[int]:
        import numpy as np
        import pandas as pd

        try:
            mask = frame.reset_index(drop=True).eval(self.expression)
        except (SyntaxError, NameError, TypeError, ValueError, KeyError, AttributeError) as exc:
            raise CertificateError(f"filter {self.expression!r} failed: {exc}") from exc
        if not isinstance(mask, pd.Series) or mask.dtype != bool:
            raise CertificateError(f"filter {self.expression!r} does not give one boolean per row")
        return [int(i) for i in np.flatnonzero(mask.to_numpy())]


_SAMPLE_DOMAIN = b"provenance/sample/v1"


class SampleSelection(Frozen):
    """A reproducible hash-based sample: row ``i`` is kept iff
    ``int(SHA-256("provenance/sample/v1" || seed (8 bytes BE) || i (8 bytes BE))[:8]) <
    fraction * 2**64``; ``complement`` keeps the other rows (the held-out side of a split)."""

    kind: Literal["sample"] = "sample"
    seed: Annotated[int, Field(ge=0, lt=2**53)]
    fraction: Annotated[float, Field(gt=0, le=1)]
    complement: bool = False

    def positions(self, rows: int) -> list[int]:
        threshold = int(self.fraction * 2**64)
        head = _SAMPLE_DOMAIN + self.seed.to_bytes(8, "big")
        out = []
        for i in range(rows):
            value = int.from_bytes(hashlib.sha256(head + i.to_bytes(8, "big")).digest()[:8], "big")
            if (value < threshold) != self.complement:
                out.append(i)
        return out


Selection = Annotated[
    IndexSelection | FilterSelection | SampleSelection, Field(discriminator="kind")
]


def select(selection: Selection, table: Table, rows: int) -> list[int]:
    """The source positions a selection picks, in training order."""
    if isinstance(selection, FilterSelection):
        frame = table.frame()
        if len(frame) != rows:
            raise IntegrityError(
                f"the typed reading of the source has {len(frame)} rows, its canonical rows are {rows}"
            )
        return selection.positions(frame)
    return selection.positions(rows)


class SubsetOf(Frozen):
    """Where a subset comes from: the source table's manifest and the selection applied."""

    source: TableManifest
    selection: Selection


@dataclass(frozen=True)
class SubsetResult:
    manifest: TableManifest  # of the rows selected
    subset: SubsetOf
    positions: tuple[int, ...]
    leaves: tuple[bytes, ...]  # leaf hashes of the selected rows, in order


def subset_of(table: Table, selection: Selection) -> SubsetResult:
    """Select rows of a source table; the subset's manifest has the source's format and
    columns, the selected row count and the root over the selected rows."""
    leaves = table.leaf_hashes()
    source = table._manifest(len(leaves), merkle_root_of_hashes(leaves))
    positions = tuple(select(selection, table, len(leaves)))
    chosen = tuple(leaves[p] for p in positions)
    manifest = table._manifest(len(chosen), merkle_root_of_hashes(chosen))
    return SubsetResult(manifest, SubsetOf(source=source, selection=selection), positions, chosen)


def verify_subset(manifest: TableManifest, subset: SubsetOf, table: Table) -> None:
    """Recompute a subset from its source table and check both roots; raises IntegrityError."""
    verify_table(subset.source, table)
    result = subset_of(table, subset.selection)
    _compare("subset row count", str(manifest.rows), str(result.manifest.rows))
    _compare("subset root", manifest.root, result.manifest.root)
