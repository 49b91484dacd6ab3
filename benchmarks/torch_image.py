"""The base of TorchScript model images (provenance/torch:bookworm): how long
``scripts/base-image.sh --torch`` takes from Debian packages and how big its root file system
is, beside the reference it replaces: copying this environment's torch with the CUDA libraries
its wheel requires (what the image would hold if torch were copied as other packages are).

    .venv/bin/python benchmarks/torch_image.py      # builds into a temporary folder (minutes)
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

ROOT = Path(__file__).resolve().parents[1]


def wheel_bytes(names: list[str]) -> int:
    """The installed size of these distributions (their RECORD's files)."""
    total = 0
    for name in names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for item in dist.files or ():
            path = Path(str(dist.locate_file(item)))
            if path.is_file():
                total += path.stat().st_size
    return total


def torch_and_cuda() -> list[str]:
    names = ["torch", "triton"]
    names += [d.metadata["Name"] for d in metadata.distributions()]
    return sorted(
        {n for n in names if n and n.lower().startswith(("torch", "triton", "nvidia-", "cuda-"))}
    )


def main() -> None:
    print(f"machine: {describe()}; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="torch-image-") as out:
        start = time.perf_counter()
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "base-image.sh"), "--torch", out],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        seconds = time.perf_counter() - start
        size = (Path(out) / "torch-bookworm.tar").stat().st_size
    reference = wheel_bytes(torch_and_cuda())
    print(
        f"torch base root file system (Debian python3-torch, CPU): {size / 2**20:,.0f} MiB, "
        f"built in {seconds:.0f} s; load average after {os.getloadavg()[0]:.2f}"
    )
    print(
        f"reference, this environment's torch {metadata.version('torch')} with its CUDA "
        f"libraries: {reference / 2**20:,.0f} MiB ({reference / size:.1f}x)"
    )


if __name__ == "__main__":
    main()
