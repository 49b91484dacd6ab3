"""CLI start-up time, beside what it cannot beat: ``python -c pass``, ``import typer, rich``
and ``ipfs --version``. Goals (issue 15): ``provenance --help`` and ``--version`` in 0.25 s or
less, ``provenance show ID`` in 0.8 s or less.

    python benchmarks/cli.py [--runs 10] [--rpc-url URL] [--model-id 0x...]

Each command runs ``--runs`` times as a subprocess (output discarded); median and p90 of the
wall-clock times are printed. ``provenance show`` runs only with a model id and a chain that
answers at ``--rpc-url`` (else the config's), and is skipped with a note otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from machine import describe

HERE = Path(__file__).resolve().parent.parent


def timings(command: list[str], runs: int, env: dict[str, str]) -> list[float]:
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, env=env, check=False)
        seconds.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed: {done.stderr.decode(errors='replace')}")
    return seconds


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def answers(rpc_url: str) -> bool:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    request = urllib.request.Request(
        rpc_url, body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return "result" in json.loads(response.read())
    except (OSError, ValueError):
        return False


def ipfs_binary() -> str | None:
    local = HERE / ".tools" / "bin" / "ipfs"
    return str(local) if local.exists() else shutil.which("ipfs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--rpc-url", help="Chain for `provenance show` (default: the config's)")
    parser.add_argument("--model-id", help="A registered model for `provenance show`")
    args = parser.parse_args()

    python = sys.executable
    provenance = [python, "-c", "from provenance.cli import main; main()"]
    env = dict(os.environ)
    commands: list[tuple[str, list[str] | None, str]] = [
        ("python -c pass", [python, "-c", "pass"], ""),
        ('python -c "import typer, rich"', [python, "-c", "import typer, rich"], ""),
    ]
    ipfs = ipfs_binary()
    commands.append(("ipfs --version", [ipfs, "--version"] if ipfs else None, "no ipfs found"))
    commands.append(("provenance --version", [*provenance, "--version"], ""))
    commands.append(("provenance --help", [*provenance, "--help"], ""))

    rpc_url = args.rpc_url
    if rpc_url is None:
        from provenance.config import load_config

        rpc_url = load_config(os.environ, cwd=Path.cwd()).chain.rpc_url
    env["PROVENANCE_RPC_URL"] = rpc_url
    if args.model_id is None:
        commands.append(("provenance show ID", None, "skipped: give --model-id"))
    elif not answers(rpc_url):
        commands.append(("provenance show ID", None, f"skipped: no chain answers at {rpc_url}"))
    else:
        commands.append(("provenance show ID", [*provenance, "show", args.model_id], ""))

    print(f"machine : {describe()}")
    print(f"runs    : {args.runs} each, wall clock of the subprocess")
    print(f"{'command':34s} {'median':>8s} {'p90':>8s}")
    for name, command, note in commands:
        if command is None:
            print(f"{name:34s} {note}")
            continue
        seconds = timings(command, args.runs, env)
        print(f"{name:34s} {statistics.median(seconds):7.3f}s {p90(seconds):7.3f}s")


if __name__ == "__main__":
    main()
