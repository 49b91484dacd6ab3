"""The canonical encoding of table rows, and its decoding for people reading a proof.

A row concatenates, per cell, ``tag (1 byte) || payload length (8 bytes, big-endian) ||
payload``:

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
differ) and unambiguous. numpy and pandas are imported only when a value needs them.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import JsonValue

from provenance.errors import CertificateError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

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
