"""Tables (CSV, Parquet, pandas DataFrame/Series, numpy arrays): a Merkle root over the
canonical encodings of the rows (:mod:`provenance.manifest.rows`), in order, so a changed,
added, removed or reordered row changes the root, and a row can be proven to be row *i* of the
training set.

A table's index (pandas) is not data and is not hashed; a CSV's header is the column list,
blank lines are skipped (as pandas does). A CSV without a header row is read with
``header=False`` (its columns are named ``0``, ``1``, …, every row is data) and its manifest
records ``"header": false``, so a verifier reads it the same way; a CSV whose first row reads as
data is refused unless the caller says which it is (``header=True`` or ``header=False``). The manifest records the format and the columns with
their dtypes (``text`` for CSV cells), and its digest is the SHA-256 of its canonical JSON.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from provenance.errors import CertificateError, IntegrityError
from provenance.hashing import MerkleBuilder, format_digest, leaf_hash
from provenance.manifest.rows import _dtype_name, _encode_array, _encode_series, encode_text_row
from provenance.schema import Digest, Frozen, digest_of

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

TableFormat = Literal["csv", "parquet", "dataframe", "ndarray"]


class Column(Frozen):
    name: str
    dtype: str


class TableManifest(Frozen):
    """A table's rows as a Merkle root; ``digest`` (SHA-256 of this manifest's canonical JSON)
    binds the root to the format, columns and row count. ``header`` is ``false`` for a CSV
    read without a header row (absent when its first row was the column names)."""

    kind: Literal["table"] = "table"
    format: TableFormat
    delimiter: str | None = None
    header: Literal[False] | None = None
    columns: tuple[Column, ...]
    rows: Annotated[int, Field(ge=0)]
    root: Digest

    @property
    def digest(self) -> str:
        return digest_of(self)


_BATCH = 65536


@dataclass(frozen=True)
class Table:
    """A table to hash, prove or select from; build with :func:`open_table`."""

    format: TableFormat
    columns: tuple[Column, ...]
    _rows: Callable[[], Iterator[bytes]]
    _frame: Callable[[], pd.DataFrame]
    delimiter: str | None = None
    header: Literal[False] | None = None

    def rows(self) -> Iterator[bytes]:
        """The canonical encodings of the rows, in order (streamed)."""
        return self._rows()

    def frame(self) -> pd.DataFrame:
        """The table as a pandas DataFrame (typed; for filter expressions)."""
        return self._frame()

    def leaf_hashes(self) -> list[bytes]:
        return [leaf_hash(r) for r in self.rows()]

    def manifest(self) -> TableManifest:
        builder = MerkleBuilder()
        for row in self.rows():
            builder.add(row)
        return self._manifest(builder.size, builder.root())

    def _manifest(self, rows: int, root: bytes) -> TableManifest:
        return TableManifest(
            format=self.format,
            delimiter=self.delimiter,
            header=self.header,
            columns=self.columns,
            rows=rows,
            root=format_digest(root),
        )


def open_table(
    source: object,
    *,
    format: TableFormat | None = None,
    delimiter: str | None = None,
    header: bool | None = None,
) -> Table:
    """A table from a CSV or Parquet path (by suffix, or ``format``), a pandas DataFrame or
    Series, or a numpy array (rows along the first axis).

    ``header`` (CSV only): ``True``, the first row is the column names; ``False``, there is no
    header row (columns ``0``, ``1``, …; recorded in the manifest); ``None``, the first row is
    the column names unless it reads as data (numbers where the rows below have numbers, and no
    name above a column of numbers), which is refused: say which it is."""
    if header is not None and not (
        isinstance(source, str | os.PathLike) and (format or _format_of(Path(source))) == "csv"
    ):
        raise CertificateError(
            "only a CSV file has a header row to read or not (header=, --header/--no-header)"
        )
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        fmt = format or _format_of(path)
        if fmt == "csv":
            sep = delimiter or ("\t" if path.suffix.lower() in (".tsv", ".tab") else ",")
            return _csv_table(path, sep, header)
        if fmt == "parquet":
            return _parquet_table(path)
        raise CertificateError(f"{path}: a table from a file must be csv or parquet, not {fmt}")
    module = type(source).__module__
    if module.startswith("pandas"):
        import pandas as pd

        if isinstance(source, pd.Series):
            source = source.to_frame()
        if isinstance(source, pd.DataFrame):
            return _frame_table(source)
    if module == "numpy":
        import numpy as np

        if isinstance(source, np.ndarray):
            return _array_table(source)
    raise CertificateError(
        f"cannot read a {type(source).__qualname__} as a table: pass a CSV or Parquet path, "
        "a pandas DataFrame or Series, or a numpy array"
    )


def _format_of(path: Path) -> TableFormat:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".tab", ".txt"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise CertificateError(f"{path}: unknown table format (expected .csv, .tsv or .parquet)")


_SNIFF_ROWS = 100
"""How many rows below the first one decide whether the first row reads as data."""

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _is_number(cell: str) -> bool:
    return _NUMBER.fullmatch(cell.strip()) is not None


def first_row_is_data(first: Sequence[str], below: Sequence[Sequence[str]]) -> bool:
    """Whether a CSV's first row reads as data rather than column names: at least one column
    holds numbers from the first row down, and no column has a name (a non-number) above
    numbers. Empty cells do not count; a first row ``0, 1, …`` (what pandas writes for unnamed
    columns, after an unnamed index or not) is a header; with no rows below, it is one too."""
    names = list(first[1:] if first and first[0] == "" else first)
    if not below or names == [str(j) for j in range(len(names))]:
        return False
    numbers_throughout = False
    for j, cell in enumerate(first):
        column = [row[j] for row in below if j < len(row) and row[j].strip()]
        if not column or not all(_is_number(c) for c in column) or not cell.strip():
            continue
        if not _is_number(cell):
            return False
        numbers_throughout = True
    return numbers_throughout


def _csv_head(path: Path, delimiter: str) -> tuple[list[str] | None, list[list[str]]]:
    """The first row of a CSV file and up to :data:`_SNIFF_ROWS` non-blank rows below it."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            first = next(reader, None)
            below = []
            for cells in reader:
                if cells:
                    below.append(cells)
                    if len(below) == _SNIFF_ROWS:
                        break
    except FileNotFoundError:
        raise IntegrityError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise IntegrityError(f"cannot read {path} as CSV: {exc}") from exc
    return first, below


def _csv_table(path: Path, delimiter: str, header: bool | None) -> Table:
    first, below = _csv_head(path, delimiter)
    if first is None:
        raise IntegrityError(f"{path} is empty: a CSV table needs a header row or a data row")
    if header is None and first_row_is_data(first, below):
        shown = delimiter.join(first)
        raise CertificateError(
            f"{path}: the first row ({shown[:60]}{'…' if len(shown) > 60 else ''}) reads as "
            "data, not column names: say whether it is a header (header=True, --header) or "
            "the file has none (header=False, --no-header)"
        )
    headerless = header is False
    names = [str(j) for j in range(len(first))] if headerless else first
    columns = tuple(Column(name=name, dtype="text") for name in names)

    def rows() -> Iterator[bytes]:
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f, delimiter=delimiter)
                if not headerless:
                    next(reader, None)
                for cells in reader:
                    if cells:
                        yield encode_text_row(cells)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise IntegrityError(f"cannot read {path} as CSV: {exc}") from exc

    def frame() -> pd.DataFrame:
        import pandas as pd

        try:
            if headerless:
                return pd.read_csv(
                    path, sep=delimiter, encoding="utf-8-sig", header=None, names=names
                )
            return pd.read_csv(path, sep=delimiter, encoding="utf-8-sig")
        except (OSError, ValueError) as exc:  # UnicodeDecodeError, pandas' ParserError
            raise IntegrityError(f"cannot read {path} as CSV: {exc}") from exc

    return Table("csv", columns, rows, frame, delimiter, False if headerless else None)


def _columns_of(frame: pd.DataFrame) -> tuple[Column, ...]:
    return tuple(
        Column(name=str(name), dtype=_dtype_name(frame[name].dtype)) for name in frame.columns
    )


def _frame_rows(frame: pd.DataFrame) -> Iterator[bytes]:
    for start in range(0, len(frame), _BATCH):
        chunk = frame.iloc[start : start + _BATCH]
        cells = [_encode_series(chunk.iloc[:, j]) for j in range(chunk.shape[1])]
        for row in zip(*cells, strict=True):
            yield b"".join(row)
        if not cells:
            yield from (b"" for _ in range(len(chunk)))


def _frame_table(frame: pd.DataFrame) -> Table:
    if frame.columns.has_duplicates:
        raise CertificateError("a DataFrame with duplicate column names cannot be hashed")
    return Table("dataframe", _columns_of(frame), lambda: _frame_rows(frame), lambda: frame)


def _parquet_table(path: Path) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise CertificateError(
            "reading Parquet needs pyarrow (pip install 'provenance[ml]')"
        ) from exc
    if not path.is_file():
        raise IntegrityError(f"{path} does not exist")
    try:
        schema = pq.read_schema(path)
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"cannot read {path} as Parquet: {exc}") from exc
    columns = _columns_of(schema.empty_table().to_pandas())

    def rows() -> Iterator[bytes]:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=_BATCH):
            yield from _frame_rows(batch.to_pandas())

    def frame() -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(path)

    return Table("parquet", columns, rows, frame)


def _array_table(array: np.ndarray) -> Table:
    import numpy as np

    if array.ndim == 0:
        array = array.reshape(1)
    if array.dtype.names:
        names = array.dtype.names
        columns = tuple(Column(name=n, dtype=_dtype_name(array.dtype[n])) for n in names)

        def rows() -> Iterator[bytes]:
            for start in range(0, len(array), _BATCH):
                chunk = array[start : start + _BATCH]
                cells = [
                    _encode_array(
                        np.ascontiguousarray(chunk[n]).reshape(len(chunk), -1)[:, 0],
                        str(array.dtype[n]),
                    )
                    for n in names
                ]
                for row in zip(*cells, strict=True):
                    yield b"".join(row)
    else:
        flat = array.reshape(len(array), -1)
        width = flat.shape[1]
        name = _dtype_name(array.dtype)
        columns = tuple(Column(name=str(j), dtype=name) for j in range(width))

        def rows() -> Iterator[bytes]:
            for start in range(0, len(flat), _BATCH):
                chunk = flat[start : start + _BATCH]
                cells = _encode_array(np.ascontiguousarray(chunk).reshape(-1), name)
                for k in range(len(chunk)):
                    yield b"".join(cells[k * width : (k + 1) * width])

    def frame() -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(array if array.dtype.names else array.reshape(len(array), -1))

    return Table("ndarray", columns, rows, frame)


def table_manifest(source: object, **options: Any) -> TableManifest:
    """The manifest of a table (see :func:`open_table` for what ``source`` may be)."""
    return open_table(source, **options).manifest()


def _compare(what: str, recorded: str, found: str) -> None:
    if recorded != found:
        raise IntegrityError(f"{what} differs: recorded {recorded}, recomputed {found}")


def verify_table(manifest: TableManifest, table: Table) -> None:
    """Check that a table has exactly the manifest's rows; raises IntegrityError."""
    found = table.manifest()
    if found.columns != manifest.columns:
        raise IntegrityError(
            f"columns differ: recorded {_show(manifest.columns)}, found {_show(found.columns)}"
        )
    _compare("row count", str(manifest.rows), str(found.rows))
    _compare("table root", manifest.root, found.root)


def _show(columns: Sequence[Column]) -> str:
    return ", ".join(f"{c.name}:{c.dtype}" for c in columns)
