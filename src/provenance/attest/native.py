"""The per-output leaf and the tree loop of output attestation, native when built.

:mod:`provenance.attest` defines the values (``OutputRecord.leaf``, ``hash_pair``); the
functions here compute many of them at once, in the Rust extension ``provenance_native``
(``native/``, pinned by its Cargo.lock, built by ``scripts/setup.sh`` when cargo is there)
or, without it, in pure Python with the definitions themselves. ``native_available`` says
which runs; ``benchmarks/attest.py`` and ``scripts/setup.sh`` print it. A parity test
checks that both give the same bytes.

The native functions take bytes and 64-bit integers; anything else (a sequence beyond
``2**64``, a bytearray, a leaf that is not 32 bytes) goes to the pure-Python path, so the
reference decides every value and every error.

    >>> from provenance.attest import OutputRecord
    >>> r = OutputRecord(b"\\1" * 32, b"\\2" * 32, b"\\3" * 32, b"\\4" * 32, 0, 1)
    >>> record_leaves([r]) == [r.leaf]
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, cast

from provenance.errors import ConfigError

if TYPE_CHECKING:
    from provenance.attest.records import OutputRecord


def _load() -> ModuleType | None:
    try:
        import provenance_native
    except ImportError:  # not built: cargo was missing when scripts/setup.sh ran
        return None
    return cast(ModuleType, provenance_native)


_native = _load()

native_available: bool = _native is not None
"""True when the Rust extension is importable (else the pure-Python path runs)."""

_REFUSED = (TypeError, OverflowError)  # what the native side does not take: Python decides


def implementation() -> str:
    """``native (provenance_native 0.1.0)`` or ``pure Python (...)``: one line for status output."""
    if _native is not None:
        return f"native (provenance_native {_native.__version__})"
    return "pure Python (the native extension is not built: scripts/setup.sh needs cargo)"


def _use_native(native: bool | None) -> ModuleType | None:
    if native is None or native is False:
        return _native if native is None else None
    if _native is None:
        raise ConfigError(
            "the native attestation extension is not built: run scripts/setup.sh with cargo"
        )
    return _native


def record_leaves(
    records: Sequence[OutputRecord], *, native: bool | None = None, threads: int = 0
) -> list[bytes]:
    """``[r.leaf for r in records]``. ``native``: None uses the extension when built, False
    never, True always (ConfigError when it is not built); ``threads``: 0 for every core."""
    ext = _use_native(native)
    if ext is not None and records:
        try:
            return cast(
                "list[bytes]",
                ext.record_leaves(
                    [r.model_id for r in records],
                    [r.model_digest for r in records],
                    [r.input_digest for r in records],
                    [r.output_digest for r in records],
                    [r.sequence for r in records],
                    [r.timestamp for r in records],
                    threads,
                ),
            )
        except _REFUSED:
            pass
    return [r.leaf for r in records]


def output_leaves(
    model_id: bytes,
    model_digest: bytes,
    inputs: Sequence[bytes],
    outputs: Sequence[bytes],
    first_sequence: int,
    timestamp: int,
    *,
    native: bool | None = None,
    threads: int = 0,
) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """For raw outputs numbered from ``first_sequence``: the sha-256 of each input, of each
    output, and the leaves of their records (all at ``timestamp``)."""
    if len(inputs) != len(outputs):
        raise ValueError("the record fields are not all of the same length")
    ext = _use_native(native)
    if ext is not None:
        try:
            return cast(
                "tuple[list[bytes], list[bytes], list[bytes]]",
                ext.output_leaves(
                    model_id, model_digest, inputs, outputs, first_sequence, timestamp, threads
                ),
            )
        except _REFUSED:
            pass
    from provenance.attest.records import OutputRecord

    xs = [hashlib.sha256(x).digest() for x in inputs]
    ys = [hashlib.sha256(y).digest() for y in outputs]
    ls = [
        OutputRecord(model_id, model_digest, x, y, first_sequence + i, timestamp).leaf
        for i, (x, y) in enumerate(zip(xs, ys, strict=True))
    ]
    return xs, ys, ls


def tree_levels(leaves: Sequence[bytes], *, native: bool | None = None) -> list[list[bytes]]:
    """The levels of the output tree over ``leaves``, from the leaves up to ``[root]``."""
    if not leaves:
        raise ValueError("an output tree needs at least one leaf")
    levels: list[list[bytes]] = [list(leaves)]
    ext = _use_native(native)
    if ext is not None:
        try:
            levels.extend(ext.tree_levels(levels[0]))
            return levels
        except _REFUSED:
            pass
    from provenance.attest.records import hash_pair

    while len(levels[-1]) > 1:
        level = levels[-1]
        parent = [hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            parent.append(level[-1])
        levels.append(parent)
    return levels
