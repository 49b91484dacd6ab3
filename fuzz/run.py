"""Fuzz the parsers of untrusted bytes and print a table.

    python fuzz/run.py [--n 100000] [--parser NAME] [--batch 5000] [--seed 1]

Each batch runs in a child process (``fuzz/worker.py``): a crash (a signal, e.g. a segfault)
is counted and the run resumes after the input that caused it; a batch that hangs past
``--timeout`` seconds counts as a crash too. Columns: inputs run, accepted (parsed), clean
errors (ProvenanceError or an HTTP 4xx), other exceptions (bugs), crashes, and the slowest
single input in milliseconds (runaway work shows there).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PARSERS = (
    "certificate-body",
    "certificate-envelope",
    "receipt",
    "car",
    "dagpb-unixfs",
    "docker-archive",
    "config-toml",
    "predict-body",
    "explorer-query",
    "oci-layout",
    "sidecar-attestation",
    "model-file",
)


@dataclass
class Tally:
    parser: str
    inputs: int = 0
    clean: int = 0
    other: int = 0
    crashes: int = 0
    slowest_ms: float = 0.0
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.inputs - self.clean - self.other - self.crashes


def run_parser(parser: str, n: int, *, batch: int, seed: int, timeout: float) -> Tally:
    """Run ``n`` inputs against ``parser`` in child processes of ``batch`` inputs each."""
    tally = Tally(parser)
    started = time.monotonic()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    with tempfile.TemporaryDirectory(prefix="fuzz-status-") as folder:
        status = Path(folder) / "status"
        round_ = 0
        while tally.inputs < n:
            count = min(batch, n - tally.inputs)
            round_ += 1
            status.write_bytes(b"")
            argv = [
                sys.executable,
                str(ROOT / "fuzz" / "worker.py"),
                f"--parser={parser}",
                f"--count={count}",
                f"--seed={seed * 1_000_003 + round_}",
                f"--status={status}",
            ]
            try:
                done = subprocess.run(
                    argv, capture_output=True, text=True, env=env, timeout=timeout
                )
                hung = False
            except subprocess.TimeoutExpired:
                done, hung = None, True
            report = _report(done)
            if report is not None:
                tally.inputs += report["inputs"]
                tally.clean += report["clean"]
                tally.other += report["other"]
                tally.slowest_ms = max(tally.slowest_ms, report["slowest_ms"])
                tally.examples += report["examples"][: 5 - len(tally.examples)]
                continue
            # crashed or hung: count what ran before the input that crashed, and that input
            fields = status.read_text().split()
            if not fields:
                tail = done.stderr.strip().splitlines()[-1:] if done else ["hung"]
                raise SystemExit(f"{parser}: the worker failed before any input: {tail}")
            ran, clean, other = (int(x) for x in fields[:3]) if fields else (0, 0, 0)
            tally.inputs += ran + 1
            tally.clean += clean
            tally.other += other
            tally.crashes += 1
            reason = "hung" if hung else f"exit {done.returncode if done else '?'}"
            if len(tally.examples) < 5:
                last = (done.stderr.strip().splitlines() or [""])[-1] if done else ""
                tally.examples.append(f"crash ({reason}) at input {ran} of a batch: {last}")
    tally.seconds = time.monotonic() - started
    return tally


def _report(done: subprocess.CompletedProcess[str] | None) -> dict[str, Any] | None:
    if done is None or done.returncode != 0:
        return None
    lines = done.stdout.strip().splitlines()
    try:
        report: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return None
    return report


def table(tallies: list[Tally]) -> str:
    head = ("parser", "inputs", "accepted", "clean errors", "other exceptions", "crashes")
    rows = [
        (t.parser, t.inputs, t.accepted, t.clean, t.other, t.crashes, f"{t.slowest_ms:.0f}")
        for t in tallies
    ]
    lines = [
        "| " + " | ".join((*head, "slowest input (ms)")) + " |",
        "|" + "|".join(["---"] + ["---:"] * 6) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="inputs per parser")
    parser.add_argument("--parser", choices=PARSERS, action="append", help="only these")
    parser.add_argument("--batch", type=int, default=5000, help="inputs per child process")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per batch")
    args = parser.parse_args(argv)
    tallies = []
    for name in args.parser or PARSERS:
        tally = run_parser(name, args.n, batch=args.batch, seed=args.seed, timeout=args.timeout)
        tallies.append(tally)
        print(
            f"{name}: {tally.inputs} inputs in {tally.seconds:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        for example in tally.examples:
            print(f"  {example}", file=sys.stderr)
    print(table(tallies))
    return 1 if any(t.other or t.crashes for t in tallies) else 0


if __name__ == "__main__":
    sys.exit(main())
