"""Hashing throughput, side by side in one run: our manifest (SHA-256, and BLAKE3), ``openssl
dgst -sha256`` and OpenSSF ``model_signing`` (the ``bench`` extra) in each of its
configurations, on the same 1 GiB file and the same folder of 4 x 1 GiB files.

    python benchmarks/hashing.py [--size-mib 1024] [--files 4] [--repeat 3] [--dir /tmp]

Files are written to a temporary directory (removed afterwards) and read once before timing,
so every tool reads from the warm page cache: the figures compare hashing, not the disk. The
tools take turns, round after round (``--repeat``), so a burst of load from other jobs on a
shared machine hits them all alike; each row gives the best round and the median, and the CPU
seconds per GB (user + system, this process or openssl's), which load barely moves: it says how
much work a tool does per byte, where GB/s also says how much of the machine it got.

Goals (issue 18): our SHA-256 manifest >= 1.0x model_signing's best configuration on both
shapes, and >= 0.9x of (cores x one openssl process); BLAKE3's figure beside model_signing's.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

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


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (openssl), user + system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class Tool:
    label: str
    single: Callable[[], object] | None
    folder: Callable[[], object] | None
    times: dict[str, list[float]] = field(default_factory=lambda: {"single": [], "folder": []})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {"single": [], "folder": []})

    def run(self) -> None:
        for shape, fn in (("single", self.single), ("folder", self.folder)):
            if fn is None:
                continue
            c0, t0 = cpu_seconds(), time.perf_counter()
            fn()
            self.times[shape].append(time.perf_counter() - t0)
            self.cpu[shape].append(cpu_seconds() - c0)

    def best(self, shape: str, size: int) -> float:
        """GB/s of the fastest round (0 when not run)."""
        return size / min(self.times[shape]) / 1e9 if self.times[shape] else 0.0

    def median(self, shape: str, size: int) -> float:
        return size / statistics.median(self.times[shape]) / 1e9 if self.times[shape] else 0.0

    def cell(self, shape: str, size: int) -> str:
        if not self.times[shape]:
            return "-"
        slowest = size / max(self.times[shape]) / 1e9
        return f"{self.best(shape, size):.2f} ({self.median(shape, size):.2f}, {slowest:.2f})"

    def cpu_min(self, shape: str, size: int) -> float:
        """CPU seconds per GB, the least of the rounds."""
        return min(self.cpu[shape]) / (size / 1e9) if self.cpu[shape] else float("nan")

    def cpu_per_gb(self, shape: str, size: int) -> str:
        return f"{self.cpu_min(shape, size):.2f}" if self.cpu[shape] else "-"


def openssl(paths: list[Path]) -> None:
    subprocess.run(
        ["openssl", "dgst", "-sha256", *map(str, paths)], check=True, stdout=subprocess.DEVNULL
    )


def openssl_parallel(paths: list[Path], processes: int) -> None:
    """``processes`` openssl processes at once, the files dealt out among them."""
    groups = [paths[i::processes] for i in range(processes)]
    running = [
        subprocess.Popen(["openssl", "dgst", "-sha256", *map(str, g)], stdout=subprocess.DEVNULL)
        for g in groups
        if g
    ]
    for p in running:
        if p.wait() != 0:
            raise RuntimeError("openssl dgst failed")


def openssl_speed() -> float:
    """One core's in-memory SHA-256 speed (GB/s) by ``openssl speed -evp sha256``, 1 MiB
    blocks, one second."""
    out = subprocess.run(
        ["openssl", "speed", "-seconds", "1", "-bytes", str(MiB), "-evp", "sha256"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    last = out.strip().splitlines()[-1].split()
    return float(last[-1].rstrip("k")) * 1000 / 1e9


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
    try:
        importlib.import_module("blake3")
        blake3_ok = True
    except ImportError:
        blake3_ok = False
    cores = os.cpu_count() or 1
    size = args.size_mib * MiB
    openssl_version = subprocess.run(
        ["openssl", "version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(f"machine: {describe()}; {openssl_version}")
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min)")
    print(
        f"data: one {args.size_mib} MiB file; a folder of {args.files} x {args.size_mib} MiB; "
        f"warm page cache; {args.repeat} rounds, tools in turn; GB = 1e9 bytes"
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

        def ours(workers: int, algorithm: str = "sha256") -> Tool:
            name = "SHA-256" if algorithm == "sha256" else "BLAKE3"
            return Tool(
                f"provenance manifest {name}, {workers} thread{'s' if workers > 1 else ''}",
                lambda: manifest_of(single, workers=workers, algorithm=algorithm),  # type: ignore[arg-type]
                lambda: manifest_of(folder, workers=workers, algorithm=algorithm),  # type: ignore[arg-type]
            )

        ours_1, ours_n = ours(1), ours(cores)
        tools = [ours_1, ours_n]
        ours_b3 = ours(cores, "blake3") if blake3_ok else None
        if ours_b3 is not None:
            tools.append(ours_b3)
        ssl_1 = Tool(
            "openssl dgst -sha256, 1 process", lambda: openssl([single]), lambda: openssl(parts)
        )
        ssl_n = Tool(
            f"openssl dgst -sha256, {cores} processes",
            None,
            lambda: openssl_parallel(parts, cores),
        )
        tools += [ssl_1, ssl_n]
        ms_sha: list[Tool] = []
        ms_b3: Tool | None = None
        if ms_hashing is not None:

            def ms(target: Path, method: str, algorithm: str = "sha256", **kw: Any) -> object:
                config = getattr(ms_hashing.Config(), method)(hashing_algorithm=algorithm, **kw)
                return config.hash(target)

            for label, method, kw in (
                ("model_signing, per file", "use_file_serialization", {}),
                ("model_signing, 1 GB shards", "use_shard_serialization", {}),
                (
                    f"model_signing, 1 GB shards, {cores} threads",
                    "use_shard_serialization",
                    {"max_workers": cores},
                ),
            ):
                ms_sha.append(
                    Tool(
                        label,
                        functools.partial(ms, single.parent, method, **kw),
                        functools.partial(ms, folder, method, **kw),
                    )
                )
            tools += ms_sha
            if blake3_ok:
                ms_b3 = Tool(
                    "model_signing, per file, BLAKE3",
                    functools.partial(ms, single.parent, "use_file_serialization", "blake3"),
                    functools.partial(ms, folder, "use_file_serialization", "blake3"),
                )
                tools.append(ms_b3)
        for round_number in range(args.repeat):
            # rotate who goes first, so no tool always follows the same one
            shift = round_number % len(tools)
            for tool in tools[shift:] + tools[:shift]:
                tool.run()
        speed = openssl_speed()
    load_after = os.getloadavg()

    width = max(len(t.label) for t in tools)
    print()
    print("GB/s: best round (median, slowest); CPU s/GB: least of the rounds")
    head = f"{'tool':<{width}}  {'1 file GB/s':>20}  {f'{args.files} files GB/s':>20}  "
    print(head + f"{'CPU s/GB 1 file':>15}  {'CPU s/GB files':>14}")
    for t in tools:
        print(
            f"{t.label:<{width}}  {t.cell('single', one_bytes):>20}  "
            f"{t.cell('folder', dir_bytes):>20}  {t.cpu_per_gb('single', one_bytes):>15}  "
            f"{t.cpu_per_gb('folder', dir_bytes):>14}"
        )
    print()
    print(
        f"shard size {DEFAULT_SHARD_SIZE // MiB} MiB (SHA-256 files above it: digest of shard "
        "digests; BLAKE3: never sharded)"
    )
    print(f"openssl speed -evp sha256 (1 core, in memory, 1 MiB blocks): {speed:.2f} GB/s")
    print(f"load after: {' '.join(f'{x:.2f}' for x in load_after)}")

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    us = (ours_n.best("single", one_bytes), ours_n.best("folder", dir_bytes))
    us_med = (ours_n.median("single", one_bytes), ours_n.median("folder", dir_bytes))
    ref = cores * ssl_1.best("single", one_bytes)
    print()
    print(f"goal: SHA-256 manifest ({cores} threads) >= 0.9x cores x one openssl dgst process")
    print(
        f"  reference {cores} x {ssl_1.best('single', one_bytes):.2f} = {ref:.2f} GB/s; "
        f"1 file {us[0] / ref:.2f}x, folder {us[1] / ref:.2f}x  "
        f"{verdict(min(us) >= 0.9 * ref)}"
    )
    print(
        f"  against cores x openssl speed ({cores} x {speed:.2f} = {cores * speed:.2f} GB/s, "
        f"no file reads): 1 file {us[0] / (cores * speed):.2f}x, "
        f"folder {us[1] / (cores * speed):.2f}x"
    )
    # CPU per byte: what the code controls; GB/s also measures the share of a busy machine
    eff_us = ours_n.cpu_min("folder", dir_bytes)
    eff_ssl = ssl_1.cpu_min("single", one_bytes)
    print(
        f"  CPU s/GB: manifest {eff_us:.3f} (folder), one openssl process {eff_ssl:.3f} (1 file): "
        f"per core the manifest hashes {eff_ssl / eff_us:.2f}x openssl's bytes"
    )
    if ms_sha:
        eff_ms = min(t.cpu_min("folder", dir_bytes) for t in ms_sha)
        print(
            f"  CPU s/GB: model_signing's least {eff_ms:.3f} (folder): the manifest does "
            f"{eff_ms / eff_us:.2f}x its bytes per CPU second"
        )
        best_single = max(ms_sha, key=lambda t: t.best("single", one_bytes))
        best_folder = max(ms_sha, key=lambda t: t.best("folder", dir_bytes))
        x = us[0] / best_single.best("single", one_bytes)
        y = us[1] / best_folder.best("folder", dir_bytes)
        xm = us_med[0] / best_single.median("single", one_bytes)
        ym = us_med[1] / best_folder.median("folder", dir_bytes)
        print("goal: SHA-256 manifest >= 1.0x model_signing's best configuration, both shapes")
        print(
            f"  1 file {x:.2f}x ({best_single.label}), folder {y:.2f}x ({best_folder.label}); "
            f"median against median {xm:.2f}x, {ym:.2f}x  {verdict(min(x, y) >= 1.0)}"
        )
        if ours_b3 is not None and ms_b3 is not None:
            print(
                "BLAKE3: manifest "
                f"{ours_b3.best('single', one_bytes):.2f} / {ours_b3.best('folder', dir_bytes):.2f}"
                " GB/s (1 file / folder) beside model_signing's BLAKE3 "
                f"{ms_b3.best('single', one_bytes):.2f} / {ms_b3.best('folder', dir_bytes):.2f}"
            )
    else:
        print(f"model_signing: {ms_reason}")


if __name__ == "__main__":
    main()
