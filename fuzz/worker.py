"""One batch of fuzz inputs for one parser, in its own process (so a segfault ends the batch,
not the run). Three quarters of the inputs come from the mutator, one quarter from hypothesis
(structured: JSON documents with a generated value grafted in at a generated place, binary
seeds with generated patches).

Progress is written to ``--status`` before every input (``done clean other slowest_ms``), so
the parent can count a crash and resume after the input that caused it. The final counts and
a few examples of other exceptions are one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``fuzz`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuzz.mutate import mutate
from fuzz.targets import TARGETS, Target


class Counts:
    def __init__(self, status: Path | None, start: tuple[int, int, int]) -> None:
        self.done, self.clean, self.other = start
        self.slowest_ms = 0.0
        self.examples: list[str] = []
        self._fd = os.open(status, os.O_WRONLY | os.O_CREAT, 0o644) if status else None

    def before(self) -> None:
        if self._fd is not None:
            line = f"{self.done} {self.clean} {self.other} {self.slowest_ms:.1f}".ljust(60)
            os.pwrite(self._fd, line.encode(), 0)

    def run(self, target: Target, data: bytes) -> None:
        self.before()
        started = time.perf_counter()
        try:
            if target.run(data) == "clean":
                self.clean += 1
        except Exception as exc:
            self.other += 1
            if len(self.examples) < 5:
                where = traceback.extract_tb(exc.__traceback__)[-1]
                self.examples.append(
                    f"{type(exc).__name__}: {str(exc)[:160]} at {where.filename}:{where.lineno} "
                    f"input {data[:80]!r}"
                )
        self.slowest_ms = max(self.slowest_ms, (time.perf_counter() - started) * 1000)
        self.done += 1


def structured(target: Target, seeds: list[bytes], count: int, counts: Counts, seed: int) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    json_values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    )

    def graft(document: Any, path: list[int], value: Any) -> Any:
        node = document
        for step in path:
            if isinstance(node, dict) and node:
                key = sorted(node)[step % len(node)]
                if not isinstance(node[key], dict | list) or step % 3 == 0:
                    node[key] = value
                    return document
                node = node[key]
            elif isinstance(node, list) and node:
                i = step % len(node)
                if not isinstance(node[i], dict | list) or step % 3 == 0:
                    node[i] = value
                    return document
                node = node[i]
        return document

    if target.json:
        documents = [json.loads(s) for s in seeds if s.strip()]
        inputs = st.builds(
            lambda i, path, value: json.dumps(
                graft(json.loads(json.dumps(documents[i % len(documents)])), path, value)
            ).encode(),
            st.integers(0, 100),
            st.lists(st.integers(0, 1000), min_size=1, max_size=6),
            json_values,
        )
    else:
        inputs = st.builds(
            lambda i, patches: _patch(seeds[i % len(seeds)], patches),
            st.integers(0, 100),
            st.lists(st.tuples(st.integers(0, 1 << 20), st.binary(max_size=8)), max_size=4),
        )

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @hypothesis_seed(seed)
    @given(inputs)
    def drive(data: bytes) -> None:
        counts.run(target, data)

    drive()


def _patch(seed: bytes, patches: list[tuple[int, bytes]]) -> bytes:
    out = bytearray(seed)
    for position, data in patches:
        i = position % (len(out) + 1)
        out[i : i + len(data)] = data
    return bytes(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parser", required=True, choices=sorted(TARGETS))
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--status", type=Path)
    args = parser.parse_args(argv)
    target = TARGETS[args.parser]
    seeds = target.seeds()
    counts = Counts(args.status, (0, 0, 0))
    rng = random.Random(args.seed)
    mutated = args.count - args.count // 4
    for _ in range(mutated):
        counts.run(target, mutate(seeds, rng))
    if args.count - mutated:
        structured(target, seeds, args.count - mutated, counts, args.seed)
    counts.before()
    report = {
        "inputs": counts.done,
        "clean": counts.clean,
        "other": counts.other,
        "slowest_ms": round(counts.slowest_ms, 1),
        "examples": counts.examples,
    }
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
