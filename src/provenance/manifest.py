"""Manifests of model artifacts and datasets; row-level subsets, proofs and confidential
commitments.

Pure: no network, no chain. numpy, pandas and pyarrow are imported only when a table needs them
(the ``ml`` extra).

**File manifests.** Per-file digests (:mod:`provenance.hashing`: plain SHA-256, or a shard-list
digest for files over the shard size) of a file or a directory tree, sorted by path, and a
Merkle root whose leaves are the RFC 8785 canonical JSON of each entry
``{"digest", "path", "shard_size", "size"}``. The root is the model digest anchored on chain.

**Tables** (CSV, Parquet, pandas DataFrame/Series, numpy arrays): a Merkle root over the
canonical encodings of the rows, in order, so a changed, added, removed or reordered row changes
the root, and a row can be proven to be row *i* of the training set. The canonical encoding of a
row concatenates, per cell, ``tag (1 byte) || payload length (8 bytes, big-endian) || payload``:

=====  ==================================================================================
tag    payload
=====  ==================================================================================
``n``  nothing: a missing value (None, pd.NA, NaT; in a pandas column that is not of a
       numpy float dtype, whatever ``pd.isna`` calls missing, NaN included)
``b``  1 byte, 0 or 1
``i``  a signed integer, big-endian two's complement in the column's width (1, 2, 4, 8)
``u``  an unsigned integer, big-endian in the column's width
``f``  an IEEE 754 float, big-endian in the column's width (2, 4, 8); every NaN is the
       canonical quiet NaN; -0.0 and 0.0 differ
``c``  a complex number: real then imaginary part, as ``f``
``I``  a Python int (object column): ASCII decimal
``s``  text: UTF-8 (every CSV cell is text, exactly as in the file)
``y``  bytes
``M``  a datetime64/timedelta64 (``m``) value: ``<dtype>:<integer count of units>`` in ASCII
``T``  a Python date/time/datetime (object column): ISO 8601 (``isoformat()``)
``D``  a decimal.Decimal: ``str()``
=====  ==================================================================================

So the encoding is dtype-sensitive (an int32 1, an int64 1, a float 1.0 and a text "1" all
differ) and unambiguous. A table's index (pandas) is not data and is not hashed; a CSV's header
is the column list, blank lines are skipped (as pandas does). The manifest records the format
and the columns with their dtypes (``text`` for CSV cells), and its digest is the SHA-256 of its
canonical JSON.

**Subsets** are the rows of a source table picked by a selection: explicit row positions (as
ranges), a pandas ``DataFrame.eval`` filter expression, or a hash-based sample (row ``i`` is kept
iff the first 8 bytes of ``SHA-256("provenance/sample/v1" || seed || i)`` read as an integer are
below ``fraction * 2**64``: stable forever, unlike a library's random generator). A subset's rows
are rows of its source with the same encoding, so the subset root is recomputed from the source
and its selection (:func:`verify_subset`).

**Confidential datasets** publish only ``HMAC-SHA256(salt, manifest digest)`` with a random
32-byte salt that the owner keeps (in a :class:`DatasetOpening`): without the salt nobody can
confirm a guessed dataset, however small or well known, against the published value.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import hashlib
import hmac
import math
import os
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import rfc8785
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    model_validator,
)

from provenance import hashing
from provenance.errors import CertificateError, ConfigError, IntegrityError
from provenance.hashing import (
    DEFAULT_SHARD_SIZE,
    MerkleBuilder,
    MerkleProof,
    Progress,
    format_digest,
    leaf_hash,
    merkle_proof_of_hashes,
    merkle_root,
    merkle_root_of_hashes,
    parse_digest,
    verify_merkle_proof,
)
from provenance.untrusted import unsafe_path_reason

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Digest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
"""``sha256:<64 lower-case hex digits>``."""

HexBytes = Annotated[str, StringConstraints(pattern=r"^0x([0-9a-f]{2})*$")]


class Frozen(BaseModel):
    """Base of every schema model: immutable, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def canonical_json(value: BaseModel | JsonValue) -> bytes:
    """RFC 8785 (JCS) bytes of a model (``None`` fields omitted) or a JSON value."""
    data = (
        value.model_dump(mode="json", exclude_none=True) if isinstance(value, BaseModel) else value
    )
    try:
        return rfc8785.dumps(data)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise CertificateError(f"not canonicalisable as RFC 8785 JSON: {exc}") from exc


def digest_of(value: BaseModel | JsonValue) -> str:
    """``sha256:`` of the canonical JSON."""
    return format_digest(hashlib.sha256(canonical_json(value)).digest())


# -- file manifests ---------------------------------------------------------------------------


def _safe_path(value: str, what: str) -> str:
    """A relative POSIX path that stays inside its folder: no absolute path, ``..``/``.`` or
    empty segment, backslash, NUL or other control character."""
    reason = unsafe_path_reason(value)
    if reason is not None:
        raise ValueError(f"{what} has the unsafe path {value!r}: {reason}")
    return value


def check_extractable(manifest: FileManifest, what: str) -> None:
    """Refuse a manifest whose files could not be written inside one folder (a model's or a
    dataset's files are; the files a training run read or wrote are only recorded)."""
    for entry in manifest.files:
        _safe_path(entry.path, what)


class FileEntry(Frozen):
    """One file: POSIX path relative to the manifest's root, size, digest (plain SHA-256, or the
    shard-list digest when ``shard_size`` is set)."""

    path: Annotated[str, Field(min_length=1)]
    size: Annotated[int, Field(ge=0)]
    digest: Digest
    shard_size: Annotated[int, Field(gt=0)] | None = None

    def leaf(self) -> bytes:
        return canonical_json(self)


class FileManifest(Frozen):
    """Files (sorted by path, unique) and the Merkle root over their entries."""

    kind: Literal["files"] = "files"
    root: Digest
    files: tuple[FileEntry, ...]

    @model_validator(mode="after")
    def _consistent(self) -> FileManifest:
        paths = [f.path.encode() for f in self.files]
        if paths != sorted(set(paths)):
            raise ValueError("files must be sorted by path, each path once")
        if self.root != _files_root(self.files):
            raise ValueError(f"root {self.root} is not the Merkle root of the files")
        return self

    @property
    def digest(self) -> str:
        """What identifies the files: the root."""
        return self.root

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @classmethod
    def of(cls, entries: Sequence[FileEntry]) -> FileManifest:
        ordered = tuple(sorted(entries, key=lambda e: e.path.encode()))
        return cls(root=_files_root(ordered), files=ordered)


def _files_root(files: Sequence[FileEntry]) -> str:
    return format_digest(merkle_root(f.leaf() for f in files))


def manifest_of_files(
    files: Mapping[str, Path],
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int | None = None,
    progress: Progress | None = None,
) -> FileManifest:
    """The manifest of named files (name: POSIX path as recorded)."""
    digests = hashing.hash_files(
        files.values(), shard_size=shard_size, workers=workers, progress=progress
    )
    return FileManifest.of(
        [
            FileEntry(
                path=name,
                size=digests[p].size,
                digest=format_digest(digests[p].digest),
                shard_size=digests[p].shard_size,
            )
            for name, p in files.items()
        ]
    )


def files_at(path: Path) -> dict[str, Path]:
    """The files a manifest of ``path`` covers: the file itself (by its name), or every
    regular file under the directory."""
    if path.is_dir():
        return hashing.list_files(path)
    if path.is_file():
        return {path.name: path}
    raise IntegrityError(f"{path} does not exist or is not a file or directory")


def manifest_of(
    path: Path,
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int | None = None,
    progress: Progress | None = None,
) -> FileManifest:
    """The manifest of a file or of a directory tree (see :func:`hashing.list_files`)."""
    return manifest_of_files(
        files_at(path), shard_size=shard_size, workers=workers, progress=progress
    )


def verify_manifest(manifest: FileManifest, path: Path, *, workers: int | None = None) -> None:
    """Check that ``path`` holds exactly the manifest's files with the same digests; raises
    IntegrityError naming the first difference."""
    files = files_at(path)
    expected = {f.path: f for f in manifest.files}
    if missing := sorted(set(expected) - set(files)):
        raise IntegrityError(f"{path}: {missing[0]} is in the manifest but missing")
    if extra := sorted(set(files) - set(expected)):
        raise IntegrityError(f"{path}: {extra[0]} is not in the manifest")
    found = {}
    by_shard: dict[int, list[str]] = {}
    plain = max([e.size for e in expected.values() if e.shard_size is None] + [1])
    for name, entry in expected.items():
        # plain entries are hashed with a shard size that keeps them plain
        by_shard.setdefault(entry.shard_size or plain, []).append(name)
    for shard_size, names in by_shard.items():
        digests = hashing.hash_files(
            [files[n] for n in names], shard_size=shard_size, workers=workers
        )
        found.update({n: digests[files[n]] for n in names})
    for name, entry in expected.items():
        got = found[name]
        if got.size != entry.size or format_digest(got.digest) != entry.digest:
            raise IntegrityError(
                f"{path}: {name} has {got.size} bytes and digest {format_digest(got.digest)}, "
                f"the manifest says {entry.size} bytes and {entry.digest}"
            )


# -- row encoding -----------------------------------------------------------------------------

_CANONICAL_NAN = {2: b"\x7e\x00", 4: b"\x7f\xc0\x00\x00", 8: b"\x7f\xf8\x00\x00\x00\x00\x00\x00"}


def _cell(tag: bytes, payload: bytes) -> bytes:
    return tag + len(payload).to_bytes(8, "big") + payload


_NULL = _cell(b"n", b"")


def encode_text_row(cells: Sequence[str]) -> bytes:
    """The canonical encoding of a row of text cells (a CSV row)."""
    return b"".join(_cell(b"s", c.encode()) for c in cells)


def encode_value(value: object) -> bytes:
    """The canonical cell of one Python (or numpy scalar) value, as found in object columns."""
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return _cell(b"b", b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return _cell(b"I", str(value).encode())
    if isinstance(value, float):
        return _cell(b"f", _CANONICAL_NAN[8] if math.isnan(value) else struct.pack(">d", value))
    if isinstance(value, str):
        return _cell(b"s", value.encode())
    if isinstance(value, bytes | bytearray | memoryview):
        return _cell(b"y", bytes(value))
    if isinstance(value, decimal.Decimal):
        return _cell(b"D", str(value).encode())
    if isinstance(value, dt.datetime | dt.date | dt.time):
        if type(value).__name__ == "NaTType":
            return _NULL
        return _cell(b"T", value.isoformat().encode())
    module = type(value).__module__
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.generic):
            return _encode_array(np.asarray(value).reshape(1), _dtype_name(value.dtype))[0]
    if module.startswith("pandas") and type(value).__name__ in ("NAType", "NaTType"):
        return _NULL
    raise CertificateError(f"cannot encode a {type(value).__qualname__} cell canonically")


def _dtype_name(dtype: Any) -> str:
    return str(dtype)


def _encode_array(values: np.ndarray, dtype_name: str, mask: Any = None) -> list[bytes]:
    """Canonical cells of a 1-D numpy array (``mask``: True where the value is missing)."""
    import numpy as np

    kind = values.dtype.kind
    n = len(values)
    if kind in "biufc":
        width = values.dtype.itemsize
        if kind == "f":
            values = np.where(np.isnan(values), np.nan, values).astype(values.dtype)
        elif kind == "c":
            real = np.where(np.isnan(values.real), np.nan, values.real)
            imag = np.where(np.isnan(values.imag), np.nan, values.imag)
            values = (real + 1j * imag).astype(values.dtype)
        raw = values.astype(values.dtype.newbyteorder(">")).tobytes()
        tag = {"b": b"b", "i": b"i", "u": b"u", "f": b"f", "c": b"c"}[kind]
        prefix = tag + width.to_bytes(8, "big")
        cells = [prefix + raw[k * width : (k + 1) * width] for k in range(n)]
    elif kind in "Mm":
        ints = values.view("i8")
        nat = np.isnat(values)
        tag = b"M" if kind == "M" else b"m"
        head = dtype_name.encode() + b":"
        cells = [
            _NULL if nat[k] else _cell(tag, head + str(int(ints[k])).encode()) for k in range(n)
        ]
    elif kind == "U":
        cells = [_cell(b"s", str(v).encode()) for v in values]
    elif kind == "S":
        cells = [_cell(b"y", bytes(v)) for v in values]
    else:
        cells = [encode_value(v) for v in values.tolist()]
    if mask is not None:
        missing = np.asarray(mask, dtype=bool)
        cells = [_NULL if missing[k] else cells[k] for k in range(n)]
    return cells


def _encode_series(series: pd.Series) -> list[bytes]:
    import numpy as np
    import pandas as pd

    dtype = series.dtype
    name = _dtype_name(dtype)
    if isinstance(dtype, np.dtype) and dtype.kind != "O":
        return _encode_array(series.to_numpy(), name)
    if isinstance(dtype, pd.DatetimeTZDtype):
        ints = series.array.asi8
        nat = series.isna().to_numpy()
        head = name.encode() + b":"
        return [
            _NULL if nat[k] else _cell(b"M", head + str(int(ints[k])).encode())
            for k in range(len(series))
        ]
    numpy_dtype = getattr(dtype, "numpy_dtype", None)
    if numpy_dtype is not None and numpy_dtype.kind in "biuf":
        mask = series.isna().to_numpy()
        values = series.to_numpy(dtype=numpy_dtype, na_value=0)
        return _encode_array(values, name, mask)
    missing = series.isna().to_numpy()
    objects = series.astype(object).to_numpy()
    return [_NULL if missing[k] else encode_value(v) for k, v in enumerate(objects)]


def decode_row(encoded: bytes) -> list[JsonValue]:
    """The cells of a canonical row, as JSON values (for people reading a proof): numbers as
    numbers (a NaN or infinity as its name), text as text, bytes as 0x-hex, the rest as the
    text of their payload."""
    cells: list[JsonValue] = []
    pos = 0
    while pos < len(encoded):
        if pos + 9 > len(encoded):
            raise CertificateError("truncated row encoding")
        tag = encoded[pos : pos + 1]
        size = int.from_bytes(encoded[pos + 1 : pos + 9], "big")
        payload = encoded[pos + 9 : pos + 9 + size]
        if len(payload) != size:
            raise CertificateError("truncated row encoding")
        pos += 9 + size
        cells.append(_decode_cell(tag, payload))
    return cells


def _decode_cell(tag: bytes, payload: bytes) -> JsonValue:
    if tag == b"n":
        return None
    if tag == b"b":
        return payload != b"\x00"
    if tag in (b"i", b"u"):
        return int.from_bytes(payload, "big", signed=tag == b"i")
    if tag == b"f":
        fmt = {2: ">e", 4: ">f", 8: ">d"}.get(len(payload))
        if fmt is None:
            raise CertificateError(f"a float cell of {len(payload)} bytes")
        value = struct.unpack(fmt, payload)[0]
        return value if math.isfinite(value) else str(value)
    if tag == b"I":
        return int(payload.decode())
    if tag == b"y":
        return "0x" + payload.hex()
    if tag in (b"s", b"M", b"m", b"T", b"D"):
        return payload.decode()
    if tag == b"c":
        half = len(payload) // 2
        return [_decode_cell(b"f", payload[:half]), _decode_cell(b"f", payload[half:])]
    raise CertificateError(f"unknown cell tag {tag!r}")


# -- tables -----------------------------------------------------------------------------------

TableFormat = Literal["csv", "parquet", "dataframe", "ndarray"]


class Column(Frozen):
    name: str
    dtype: str


class TableManifest(Frozen):
    """A table's rows as a Merkle root; ``digest`` (SHA-256 of this manifest's canonical JSON)
    binds the root to the format, columns and row count."""

    kind: Literal["table"] = "table"
    format: TableFormat
    delimiter: str | None = None
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
            columns=self.columns,
            rows=rows,
            root=format_digest(root),
        )


def open_table(
    source: object, *, format: TableFormat | None = None, delimiter: str | None = None
) -> Table:
    """A table from a CSV or Parquet path (by suffix, or ``format``), a pandas DataFrame or
    Series, or a numpy array (rows along the first axis)."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        fmt = format or _format_of(path)
        if fmt == "csv":
            sep = delimiter or ("\t" if path.suffix.lower() in (".tsv", ".tab") else ",")
            return _csv_table(path, sep)
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


def _csv_table(path: Path, delimiter: str) -> Table:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f, delimiter=delimiter), None)
    except FileNotFoundError:
        raise IntegrityError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise IntegrityError(f"cannot read {path} as CSV: {exc}") from exc
    if header is None:
        raise IntegrityError(f"{path} is empty: a CSV table needs a header row")
    columns = tuple(Column(name=name, dtype="text") for name in header)

    def rows() -> Iterator[bytes]:
        try:
            with open(path, newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f, delimiter=delimiter)
                next(reader, None)
                for cells in reader:
                    if cells:
                        yield encode_text_row(cells)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise IntegrityError(f"cannot read {path} as CSV: {exc}") from exc

    def frame() -> pd.DataFrame:
        import pandas as pd

        try:
            return pd.read_csv(path, sep=delimiter, encoding="utf-8-sig")
        except (OSError, ValueError) as exc:  # UnicodeDecodeError, pandas' ParserError
            raise IntegrityError(f"cannot read {path} as CSV: {exc}") from exc

    return Table("csv", columns, rows, frame, delimiter)


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


# -- selections and subsets -------------------------------------------------------------------


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


def verify_subset(manifest: TableManifest, subset: SubsetOf, table: Table) -> None:
    """Recompute a subset from its source table and check both roots; raises IntegrityError."""
    verify_table(subset.source, table)
    result = subset_of(table, subset.selection)
    _compare("subset row count", str(manifest.rows), str(result.manifest.rows))
    _compare("subset root", manifest.root, result.manifest.root)


# -- dataset records, confidential commitments ------------------------------------------------


def salted_commitment(digest: str, salt: bytes) -> str:
    """``HMAC-SHA256(key=salt, message=the 32 digest bytes)`` as ``sha256:<hex>``."""
    if len(salt) < 16:
        raise CertificateError(f"a salt needs at least 16 bytes, got {len(salt)}")
    return format_digest(hmac.new(salt, parse_digest(digest), hashlib.sha256).digest())


Manifest = Annotated[FileManifest | TableManifest, Field(discriminator="kind")]


class DatasetRecord(Frozen):
    """One dataset a model was trained on (or evaluated with: ``role``).

    Public: ``manifest`` (and ``subset`` when the rows were selected from a larger source) and
    ``commitment`` = the manifest's digest. Confidential: the ``commitment`` only, salted; the
    manifest, subset and salt stay with the owner in a :class:`DatasetOpening`.
    """

    name: Annotated[str, Field(min_length=1)]
    role: Annotated[str, Field(min_length=1)] = "train"
    commitment: Digest
    confidential: bool = False
    manifest: Manifest | None = None
    subset: SubsetOf | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DatasetRecord:
        if self.confidential:
            if self.manifest is not None or self.subset is not None or self.url is not None:
                raise ValueError(
                    f"confidential dataset {self.name!r} may publish its commitment only"
                )
            return self
        if self.manifest is None:
            raise ValueError(f"dataset {self.name!r} needs a manifest (or confidential: true)")
        if self.commitment != self.manifest.digest:
            raise ValueError(
                f"dataset {self.name!r}: commitment {self.commitment} is not its manifest digest "
                f"{self.manifest.digest}"
            )
        if self.subset is not None and not isinstance(self.manifest, TableManifest):
            raise ValueError(f"dataset {self.name!r}: only a table can be a subset")
        if isinstance(self.manifest, FileManifest):
            check_extractable(self.manifest, f"dataset {self.name!r}")
        return self


class DatasetOpening(Frozen):
    """What the owner of a confidential dataset keeps: the salt, the manifest (and subset)."""

    name: str
    role: str = "train"
    salt: HexBytes
    manifest: Manifest
    subset: SubsetOf | None = None

    @property
    def commitment(self) -> str:
        return salted_commitment(self.manifest.digest, bytes.fromhex(self.salt[2:]))

    def record(self) -> DatasetRecord:
        return DatasetRecord(
            name=self.name, role=self.role, commitment=self.commitment, confidential=True
        )


def dataset_record(
    name: str,
    manifest: FileManifest | TableManifest,
    *,
    role: str = "train",
    subset: SubsetOf | None = None,
    url: str | None = None,
    confidential: bool = False,
    salt: bytes | None = None,
) -> tuple[DatasetRecord, DatasetOpening | None]:
    """A dataset's record, and for a confidential one the opening its owner must keep."""
    if not confidential:
        return (
            DatasetRecord(
                name=name,
                role=role,
                commitment=manifest.digest,
                manifest=manifest,
                subset=subset,
                url=url,
            ),
            None,
        )
    if url is not None:
        raise CertificateError(f"confidential dataset {name!r} cannot have a public URL")
    opening = DatasetOpening(
        name=name,
        role=role,
        salt="0x" + (salt if salt is not None else os.urandom(32)).hex(),
        manifest=manifest,
        subset=subset,
    )
    return opening.record(), opening


def data_commitment(datasets: Sequence[DatasetRecord]) -> str:
    """The one value anchored on chain for all datasets: the Merkle root over their
    commitments (32 bytes each), in recorded order; ``sha256:`` of nothing when none."""
    return format_digest(merkle_root(parse_digest(d.commitment) for d in datasets))


def verify_opening(record: DatasetRecord, opening: DatasetOpening) -> None:
    """Check that an owner's opening matches a published confidential record."""
    _compare(f"commitment of dataset {record.name!r}", record.commitment, opening.commitment)


class NotRecomputableError(ConfigError):
    """A table hashed from an in-memory frame: there is no file to recompute it from."""


def source_table(source: Path, manifest: TableManifest) -> Any:
    """The table at ``source`` read as ``manifest`` was hashed (CSV or Parquet)."""
    if manifest.format not in ("csv", "parquet"):
        raise NotRecomputableError(
            f"hashed from an in-memory {manifest.format}: recompute it with provenance.manifest "
            "from Python"
        )
    return open_table(source, format=manifest.format, delimiter=manifest.delimiter)


def recompute_dataset(
    record: DatasetRecord, source: Path, opening: DatasetOpening | None = None
) -> str:
    """Recompute a dataset from its source: the files, the table's rows, or the subset of a
    source table (a confidential one through its owner's ``opening``). Raises IntegrityError on
    a difference; returns what matched."""
    if opening is not None:
        verify_opening(record, opening)
    manifest = opening.manifest if opening else record.manifest
    subset = opening.subset if opening else record.subset
    if isinstance(manifest, FileManifest):
        verify_manifest(manifest, source)
        return f"{len(manifest.files)} file(s) match {manifest.root}"
    if manifest is None:
        raise CertificateError(f"dataset {record.name!r} publishes no manifest")
    if subset is not None:
        verify_subset(manifest, subset, source_table(source, subset.source))
        return (
            f"{manifest.rows} of {subset.source.rows} rows selected by {subset.selection.kind}, "
            f"subset root {manifest.root} matches"
        )
    verify_table(manifest, source_table(source, manifest))
    return f"{manifest.rows} rows match {manifest.root}"


# -- row proofs -------------------------------------------------------------------------------


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
