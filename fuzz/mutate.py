"""A small mutator of seed inputs: bit flips, byte edits, truncation, splices of two seeds,
deep nesting, huge and non-finite numbers, repeated keys and control characters. Deterministic
for a given ``random.Random``."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

_NUMBER = re.compile(rb"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_INTERESTING = [
    b"9" * 5000,
    b"1e999",
    b"-1",
    b"NaN",
    b"Infinity",
    b"1.5",
    b"true",
    b"null",
    b"18446744073709551616",
    b"4611686018427387904",
    b"0",
]
_TOKENS = [
    b'"../../etc/passwd"',
    b'"/abs"',
    b'"a\\\\b"',
    b'"\\u0000"',
    b'"\\u001b[31m"',
    b'"\\ud800"',
    b'"2024-13-45T99:99:99Z"',
    b'"0x"',
    b'"0x' + b"ff" * 65 + b'"',
    b"{}",
    b"[]",
    b'""',
    b"\xff\xfe",
    b"\x00",
    b"[[[[[[[[",
    b"]]]]",
    b'"a": 1, "a": 2',
]


def _flip(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return b"\x00"
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _byte_edit(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randint(0, len(out))
        choice = rng.randrange(3)
        if choice == 0 and out:
            del out[min(i, len(out) - 1)]
        elif choice == 1:
            out[i:i] = bytes([rng.randrange(256)])
        elif out:
            out[min(i, len(out) - 1)] = rng.choice(b'\x00\xff\x7f\x80[]{}",:\\')
    return bytes(out)


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randint(0, len(data))] if data else data


def _splice(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    other = rng.choice(seeds)
    a = rng.randint(0, len(data))
    b = rng.randint(0, len(other))
    return data[:a] + other[b:]


def _nest(data: bytes, rng: random.Random) -> bytes:
    depth = rng.choice([300, 5000, 100_000])
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}"), (b"\x81", b"")])
    i = rng.randint(0, len(data))
    return data[:i] + opener * depth + closer * depth + data[i:]


def _number(data: bytes, rng: random.Random) -> bytes:
    found = list(_NUMBER.finditer(data))
    if not found:
        return data + rng.choice(_INTERESTING)
    m = rng.choice(found)
    return data[: m.start()] + rng.choice(_INTERESTING) + data[m.end() :]


def _token(data: bytes, rng: random.Random) -> bytes:
    i = rng.randint(0, len(data))
    quote = data.find(b'"', i)
    if quote >= 0 and rng.random() < 0.7:
        end = data.find(b'"', quote + 1)
        if end > 0:
            return data[:quote] + rng.choice(_TOKENS) + data[end + 1 :]
    return data[:i] + rng.choice(_TOKENS) + data[i:]


def _duplicate(data: bytes, rng: random.Random) -> bytes:
    found = [m.start() for m in re.finditer(rb'"[a-z_]+":', data)]
    if not found:
        return data
    start = rng.choice(found)
    end = data.find(b",", start)
    if end < 0:
        return data
    return data[:end] + b"," + data[start:end] + data[end:]


_MUTATIONS: list[Callable[[bytes, random.Random], bytes]] = [
    _flip,
    _byte_edit,
    _truncate,
    _nest,
    _number,
    _token,
    _duplicate,
]


def mutate(seeds: Sequence[bytes], rng: random.Random) -> bytes:
    """One input: a seed with one to three mutations (sometimes none: seeds must pass too)."""
    data = rng.choice(seeds)
    if rng.random() < 0.02:
        return data
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if rng.random() < 0.1:
            data = _splice(data, rng, seeds)
        else:
            data = rng.choice(_MUTATIONS)(data, rng)
    return data
