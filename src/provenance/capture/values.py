"""How captured values enter a certificate: JSON-safe values as they are, data (bytes, files,
arrays, tables) by digest, anything else as type + bounded repr + digest.

- bytes: SHA-256 of the bytes;
- a path: a file's digest (:func:`provenance.hashing.hash_file`), a directory's manifest root;
- a numpy array: SHA-256 over ``"ndarray" || dtype.str || shape || C-order bytes`` (order,
  dtype and shape sensitive); object arrays as tables;
- a pandas DataFrame or Series: its :class:`~provenance.manifest.TableManifest` digest (row
  Merkle root, dtypes, columns);
- any other object: SHA-256 of its pickle (protocol 5) when it pickles, else no digest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import JsonValue

from provenance.certificate import OpaqueValue, ValueRef
from provenance.hashing import format_digest, hash_file
from provenance.manifest import manifest_of, open_table
from provenance.schema import canonical_json

MAX_REPR = 200
_SAFE_INT = 2**53 - 1


class _NotJson(Exception):
    pass


def _json(value: object, depth: int = 0) -> JsonValue:
    if depth > 50:
        raise _NotJson
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if abs(value) > _SAFE_INT:
            raise _NotJson
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJson
        return float(value)
    if (
        type(value).__module__ == "numpy"
        and hasattr(value, "item")
        and getattr(value, "ndim", 1) == 0
    ):
        return _json(value.item(), depth + 1)
    if isinstance(value, list | tuple):
        return [_json(v, depth + 1) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise _NotJson
        return {k: _json(v, depth + 1) for k, v in value.items()}
    raise _NotJson


def as_json(value: object) -> tuple[bool, JsonValue]:
    """``(True, value as JSON)`` for a JSON-safe value (numpy scalars become Python numbers,
    tuples lists; integers beyond 2**53 and non-finite floats are not JSON-safe)."""
    try:
        return True, _json(value)
    except (_NotJson, RecursionError):
        return False, None


def type_name(value: object) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def bounded_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a user __repr__ may raise anything; capture must go on
        return f"<repr failed: {type(exc).__name__}>"
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."


def pickle_digest(value: object) -> str | None:
    """SHA-256 of the pickle of ``value``, or None when it does not pickle."""
    h = hashlib.sha256()

    class _Sink:
        def write(self, data: bytes) -> int:
            h.update(data)
            return len(data)

    try:
        pickle.dump(value, _Sink(), protocol=5)
    except Exception:  # a user __reduce__ may raise anything; no digest then
        return None
    return format_digest(h.digest())


def opaque(value: object) -> OpaqueValue:
    return OpaqueValue(type=type_name(value), repr=bounded_repr(value), digest=pickle_digest(value))


def is_data(value: object) -> bool:
    """Bytes, paths, numpy arrays and pandas frames/series: values recorded by digest."""
    if isinstance(value, bytes | bytearray | memoryview | os.PathLike):
        return True
    module = type(value).__module__
    name = type(value).__name__
    return (module == "numpy" and name == "ndarray") or (
        module.startswith("pandas") and name in ("DataFrame", "Series")
    )


def array_digest(array: Any) -> str:
    import numpy as np

    if array.dtype.hasobject:
        return open_table(array).manifest().digest
    h = hashlib.sha256(b"ndarray\x00")
    h.update(array.dtype.str.encode() + b"\x00")
    h.update(json.dumps(list(array.shape)).encode() + b"\x00")
    h.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)
    return format_digest(h.digest())


def data_ref(name: str, value: object) -> ValueRef:
    """The digest of a data value (see :func:`is_data`)."""
    kind = type_name(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return ValueRef(
            name=name, kind="bytes", type=kind, digest=format_digest(hashlib.sha256(value).digest())
        )
    if isinstance(value, os.PathLike):
        path = Path(value)
        if path.is_dir():
            return ValueRef(name=name, kind="directory", type=kind, digest=manifest_of(path).root)
        return ValueRef(name=name, kind="file", type=kind, digest=str(hash_file(path)))
    module = type(value).__module__
    if module == "numpy":
        return ValueRef(
            name=name,
            kind="ndarray",
            type=kind,
            digest=array_digest(value),
            shape=tuple(int(n) for n in value.shape),  # type: ignore[attr-defined]
            dtype=str(value.dtype),  # type: ignore[attr-defined]
        )
    manifest = open_table(value).manifest()
    return ValueRef(
        name=name,
        kind="table",
        type=kind,
        digest=manifest.digest,
        shape=tuple(int(n) for n in value.shape),  # type: ignore[attr-defined]
        rows=manifest.rows,
    )


def value_ref(name: str, value: object) -> ValueRef:
    """A step input/output: data by digest, JSON by the digest of its canonical form, other
    objects by type and pickle digest."""
    if is_data(value):
        return data_ref(name, value)
    ok, converted = as_json(value)
    if ok:
        return ValueRef(
            name=name,
            kind="json",
            type=type_name(value),
            digest=format_digest(hashlib.sha256(canonical_json(converted)).digest()),
        )
    return ValueRef(name=name, kind="object", type=type_name(value), digest=pickle_digest(value))


def split_values(
    values: Mapping[str, object],
) -> tuple[dict[str, JsonValue], dict[str, OpaqueValue]]:
    """Parameters split into JSON-safe ones (as they are) and the rest (type, repr, digest)."""
    plain: dict[str, JsonValue] = {}
    other: dict[str, OpaqueValue] = {}
    for key, value in values.items():
        ok, converted = as_json(value)
        if ok:
            plain[key] = converted
        else:
            other[key] = opaque(value)
    return plain, other
