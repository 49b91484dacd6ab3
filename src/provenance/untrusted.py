"""Bounded decoding of untrusted bytes: JSON and DAG-CBOR with depth, size and number limits,
paths that cannot leave their folder, text that cannot drive a terminal, and the ``Limits``
every extraction and download is held to.

Why a pre-scan: importing ``eth_account`` imports ``py_ecc``, which raises the interpreter's
recursion limit to 100000. The C JSON decoder and libipld's CBOR decoder recurse once per
nesting level, so ~100 KB of ``[`` then overflows the C stack (a segfault, not an exception).
Every untrusted document is therefore scanned for its nesting depth, linearly and without
recursion, before anything decodes it; and :func:`keep_recursion_limit` makes ``py_ecc``'s
import leave the limit as it was.

Pure: standard library only.

>>> loads_json(b'{"a": [1, 2]}', what="request")
{'a': [1, 2]}
>>> loads_json(b"[" * 300 + b"]" * 300, what="request")
Traceback (most recent call last):
...
provenance.untrusted.UntrustedInputError: request is nested deeper than 256 levels
"""

from __future__ import annotations

import json
import math
import re
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec, PathFinder
from types import ModuleType
from typing import Any

from provenance.errors import ProvenanceError

MAX_DEPTH = 256
"""Deepest nesting of arrays/objects (JSON) or arrays/maps/tags (CBOR) accepted."""
MAX_INT_DIGITS = 300
"""Longest integer literal accepted in JSON (a uint256 has 78 digits)."""
MAX_JSON_BYTES = 64 << 20
"""Default size limit of a JSON document when the caller has no tighter one."""


class UntrustedInputError(ProvenanceError):
    """Untrusted bytes were refused before or while decoding them: too large, too deep, not
    UTF-8, not well-formed, duplicate keys, non-finite or oversized numbers, unsafe paths."""


@dataclass(frozen=True)
class Limits:
    """How much untrusted content one operation may produce: bytes written by a download or an
    extraction, files and folders it creates, and the depth of folders and of nested documents.
    Set under ``[limits]`` in the config file."""

    max_download_bytes: int = 64 << 30
    max_entries: int = 100_000
    max_depth: int = MAX_DEPTH

    def __post_init__(self) -> None:
        for name in ("max_download_bytes", "max_entries", "max_depth"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"limits: {name} must be a positive integer, not {value!r}")


DEFAULT_LIMITS = Limits()


# -- recursion limit ---------------------------------------------------------------------------


class _KeepRecursionLimit(MetaPathFinder, Loader):
    """Runs ``py_ecc``'s import (what ``eth_account`` and web3 import) and puts the recursion
    limit back afterwards: py_ecc sets it to 100000 on import. Hand-written: no library does
    this, and importing py_ecc eagerly instead costs every CLI start a quarter of a second."""

    def __init__(self) -> None:
        self._loader: Loader | None = None

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "py_ecc":
            return None
        spec = PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        self._loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        assert self._loader is not None
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        assert self._loader is not None
        before = sys.getrecursionlimit()
        try:
            self._loader.exec_module(module)
        finally:
            sys.setrecursionlimit(before)


def keep_recursion_limit() -> None:
    """Make sure importing ``py_ecc`` (eth_account imports it) leaves the recursion limit as it
    is: installs :class:`_KeepRecursionLimit` once, without importing anything. Call it before
    ``eth_account`` is imported; once py_ecc is imported there is nothing left to guard."""
    if "py_ecc" in sys.modules:
        return
    if not any(isinstance(finder, _KeepRecursionLimit) for finder in sys.meta_path):
        sys.meta_path.insert(0, _KeepRecursionLimit())


# -- JSON --------------------------------------------------------------------------------------

_JSON_TOKENS = re.compile(r'[\[\]{}"\\]')


def json_depth_check(text: str, max_depth: int = MAX_DEPTH, what: str = "JSON") -> None:
    """Refuse JSON text nested deeper than ``max_depth``; linear, strings skipped, no recursion.
    Malformed text is left for the decoder to report."""
    _depth_check(text, max_depth, what, _JSON_TOKENS, toml=False)


_TOML_TOKENS = re.compile(r"[\[\]{}\"\\'#\n]")


def toml_depth_check(text: str, max_depth: int, what: str = "TOML") -> None:
    """The same for TOML (arrays and inline tables; basic and literal strings and comments
    skipped): ``tomllib`` recurses once per level."""
    _depth_check(text, max_depth, what, _TOML_TOKENS, toml=True)


def _depth_check(
    text: str, max_depth: int, what: str, tokens: re.Pattern[str], *, toml: bool
) -> None:
    depth = 0
    state = ""  # "": structure; '"': basic string; "'": literal string; "#": comment
    skip = -1
    for match in tokens.finditer(text):
        i = match.start()
        if i == skip:
            continue
        c = text[i]
        if state == '"':
            if c == "\\":
                skip = i + 1
            elif c == '"':
                state = ""
        elif state == "'":
            if c == "'":
                state = ""
        elif state == "#":
            if c == "\n":
                state = ""
        elif c == '"' or (toml and c in "'#"):
            state = c
        elif c in "[{":
            depth += 1
            if depth > max_depth:
                raise UntrustedInputError(f"{what} is nested deeper than {max_depth} levels")
        elif c in "]}":
            depth -= 1


def loads_json(
    data: bytes | bytearray | str,
    *,
    what: str = "JSON",
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_DEPTH,
    max_int_digits: int = MAX_INT_DIGITS,
    error: type[ProvenanceError] = UntrustedInputError,
) -> Any:
    """Decode untrusted JSON, refusing more than ``max_bytes``, nesting deeper than
    ``max_depth``, text that is not UTF-8, duplicate object keys, ``NaN``/``Infinity`` (and
    floats that overflow to them), and integers longer than ``max_int_digits`` digits. Every
    refusal is ``error`` (default :class:`UntrustedInputError`) with a one-line reason that
    starts with ``what``."""
    if len(data) > max_bytes:
        raise error(f"{what} has {len(data)} bytes; at most {max_bytes} are accepted")
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"{what} is not UTF-8 (byte {exc.start})") from None
    else:
        text = data
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        json_depth_check(text, max_depth, what)
    except UntrustedInputError as exc:
        raise error(str(exc)) from None

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise error(f"{what} has the key {key!r} twice in one object")
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise error(f"{what} holds {name}, which is not JSON")

    def integer(digits: str) -> int:
        if len(digits.lstrip("-")) > max_int_digits:
            raise error(f"{what} holds an integer of more than {max_int_digits} digits")
        return int(digits)

    def real(spelled: str) -> float:
        value = float(spelled)
        if not math.isfinite(value):
            raise error(f"{what} holds the number {spelled[:40]}, too large for a float")
        return value

    try:
        return json.loads(
            text,
            object_pairs_hook=pairs,
            parse_constant=constant,
            parse_int=integer,
            parse_float=real,
        )
    except json.JSONDecodeError as exc:
        raise error(f"{what} is not JSON: {exc}") from None
    except RecursionError:
        raise error(f"{what} is nested too deeply") from None


# -- CBOR --------------------------------------------------------------------------------------


def cbor_depth_check(data: bytes, max_depth: int = MAX_DEPTH, what: str = "CBOR") -> None:
    """Refuse DAG-CBOR nested deeper than ``max_depth`` (arrays, maps and tags count) or using
    indefinite lengths (not DAG-CBOR); linear, no recursion. Other malformations are left to
    the decoder, except truncation, which this finds on the way."""
    pos = 0
    end = len(data)
    remaining = [1]  # items still to read at each open level
    while remaining:
        if remaining[-1] == 0:
            remaining.pop()
            continue
        remaining[-1] -= 1
        if pos >= end:
            raise UntrustedInputError(f"{what} is truncated")
        initial = data[pos]
        pos += 1
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            argument = info
        elif info <= 27:
            n = 1 << (info - 24)
            if pos + n > end:
                raise UntrustedInputError(f"{what} is truncated")
            argument = int.from_bytes(data[pos : pos + n], "big")
            pos += n
        else:
            raise UntrustedInputError(f"{what} uses an indefinite or reserved length")
        if major in (2, 3):
            if argument > end - pos:
                raise UntrustedInputError(f"{what} is truncated")
            pos += argument
        elif major in (4, 5, 6):
            count = 1 if major == 6 else argument * (2 if major == 5 else 1)
            if count > end - pos:
                raise UntrustedInputError(f"{what} is truncated")
            remaining.append(count)
            if len(remaining) > max_depth + 1:
                raise UntrustedInputError(f"{what} is nested deeper than {max_depth} levels")


# -- paths and text ----------------------------------------------------------------------------


def unsafe_path_reason(path: str) -> str | None:
    """Why ``path`` cannot be a relative POSIX path inside a folder, or None when it can: not
    empty, not absolute, no ``.``/``..``/empty segments, no backslash, NUL or control
    characters."""
    if not path:
        return "it is empty"
    if path.startswith("/"):
        return "it is absolute"
    if "\\" in path:
        return "it contains a backslash"
    if any(unicodedata.category(c) == "Cc" for c in path):
        return "it contains a control character"
    for segment in path.split("/"):
        if segment == "":
            return "it has an empty segment"
        if segment in (".", ".."):
            return f"it has a {segment!r} segment"
    return None


def check_entry_name(name: str, what: str) -> str:
    """One file or folder name from untrusted content (a single path segment)."""
    reason = unsafe_path_reason(name) or ("it contains a slash" if "/" in name else None)
    if reason is not None:
        raise UntrustedInputError(f"{what} has the unsafe entry name {name!r}: {reason}")
    return name


_UNSAFE = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufffe\uffff")
"""Bidirectional overrides and isolates (they reorder what a terminal shows), and the two
noncharacters XML refuses."""


def printable(text: object, *, one_line: bool = False) -> str:
    """Untrusted text made safe for a terminal and for XML: control characters (escape
    sequences, carriage returns, ...), lone surrogates and bidirectional overrides become ``\\xNN`` / ``\\uNNNN``
    escapes; newlines and tabs stay unless ``one_line``."""
    kept = "" if one_line else "\n\t"
    return "".join(
        _escape_char(c)
        if (unicodedata.category(c) in ("Cc", "Cs") and c not in kept) or c in _UNSAFE
        else c
        for c in str(text)
    )


def _escape_char(c: str) -> str:
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
