"""Hashing throughput, side by side: our manifest, ``openssl dgst -sha256`` and OpenSSF
``model_signing`` (PyPI ``model-signing``, the ``bench`` extra) on the same 1 GiB file and the
same directory of 4 x 1 GiB files, all SHA-256.

    python benchmarks/hashing.py [--size-mib 1024] [--files 4] [--repeat 3] [--dir /tmp]

Files are written to a temporary directory (removed afterwards) and read once before timing,
so every tool reads from the warm page cache: the figures compare hashing, not the disk.
GB/s are 10**9 bytes per second, best of ``--repeat`` runs. Goals (issue 4): >= 1.0 GB/s on one
thread; >= 2 GB/s on two cores for the directory; >= 2x model_signing.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import platform
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provenance.hashing import DEFAULT_SHARD_SIZE
from provenance.manifest import manifest_of

MiB = 1 << 20


def write_file(path: Path, size: int) -> None:
    block = bytearray(os.urandom(64 * MiB))
    with open(path, "wb") as f:
        written, counter = 0, 0
        while written < size:
            counter += 1
            block[:8] = counter.to_bytes(8, "big")  # no two blocks alike
            n = min(len(block), size - written)
            f.write(memoryview(block)[:n])
            written += n


def warm(paths: list[Path]) -> None:
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.read(16 * MiB):
                pass


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def openssl(paths: list[Path]) -> None:
    subprocess.run(
        ["openssl", "dgst", "-sha256", *map(str, paths)], check=True, stdout=subprocess.DEVNULL
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    args = parser.parse_args()

    if shutil.which("openssl") is None:
        sys.exit("openssl not found on PATH")
    ms_reason = ""
    ms_hashing: Any = None
    try:
        ms_hashing = importlib.import_module("model_signing.hashing")
    except ImportError as exc:
        ms_reason = f"not installed ({exc}); pip install -e '.[bench]'"
    cores = os.cpu_count() or 1
    size = args.size_mib * MiB
    print(
        f"machine: {cpu_model()}, {cores} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {ssl.OPENSSL_VERSION}"
    )
    openssl_version = subprocess.run(
        ["openssl", "version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(
        f"data: one {args.size_mib} MiB file; a directory of {args.files} x {args.size_mib} MiB; "
        f"warm page cache; best of {args.repeat}; GB = 1e9 bytes; openssl CLI: {openssl_version}"
    )
    with tempfile.TemporaryDirectory(prefix="provenance-bench-", dir=args.dir) as scratch:
        root = Path(scratch)
        single = root / "single" / "model.bin"
        folder = root / "folder"
        single.parent.mkdir()
        folder.mkdir()
        write_file(single, size)
        parts = [folder / f"part-{i}.bin" for i in range(args.files)]
        for p in parts:
            write_file(p, size)
        warm([single, *parts])
        one_bytes, dir_bytes = size, size * len(parts)

        rows: list[tuple[str, float, float]] = []

        def ours(workers: int) -> tuple[float, float]:
            a = best(lambda: manifest_of(single, workers=workers), args.repeat)
            b = best(lambda: manifest_of(folder, workers=workers), args.repeat)
            return one_bytes / a / 1e9, dir_bytes / b / 1e9

        r1 = ours(1)
        rows.append(("provenance manifest, 1 thread", *r1))
        rn = ours(cores)
        rows.append((f"provenance manifest, {cores} threads", *rn))
        a = best(lambda: openssl([single]), args.repeat)
        b = best(lambda: openssl(parts), args.repeat)
        rows.append(("openssl dgst -sha256 (1 process)", one_bytes / a / 1e9, dir_bytes / b / 1e9))
        ms_rows: list[tuple[str, float, float]] = []
        if ms_hashing is not None:
            configs = {
                "model_signing, per file": "use_file_serialization",
                "model_signing, 1 GB shards": "use_shard_serialization",
            }
            for label, method in configs.items():

                def ms(target: Path, method: str = method) -> object:
                    config = getattr(ms_hashing.Config(), method)(hashing_algorithm="sha256")
                    return config.hash(target)

                a = best(functools.partial(ms, single.parent), args.repeat)
                b = best(functools.partial(ms, folder), args.repeat)
                ms_rows.append((label, one_bytes / a / 1e9, dir_bytes / b / 1e9))
            rows.extend(ms_rows)

    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'tool':<{width}}  {'1 file GB/s':>11}  {f'{args.files} files GB/s':>12}")
    for label, x, y in rows:
        print(f"{label:<{width}}  {x:>11.2f}  {y:>12.2f}")
    print()
    print(f"shard size {DEFAULT_SHARD_SIZE // MiB} MiB (files above it: digest of shard digests)")
    goal1 = r1[0] >= 1.0
    goal2 = rn[1] >= 2.0
    print(
        f"goal >= 1.0 GB/s on one thread (1 file):        {r1[0]:.2f}  {'met' if goal1 else 'NOT met'}"
    )
    print(
        f"goal >= 2.0 GB/s on {cores} cores (directory):       {rn[1]:.2f}  {'met' if goal2 else 'NOT met'}"
    )
    if ms_rows:
        best_ms = (max(r[1] for r in ms_rows), max(r[2] for r in ms_rows))
        x, y = rn[0] / best_ms[0], rn[1] / best_ms[1]
        print(
            f"goal >= 2x model_signing (its best config):     {x:.2f}x file, {y:.2f}x directory  "
            f"{'met' if min(x, y) >= 2 else 'NOT met'}"
        )
    else:
        print(f"model_signing: {ms_reason}")


if __name__ == "__main__":
    main()
