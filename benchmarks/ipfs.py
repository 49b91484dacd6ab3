"""Add throughput on one file: LocalStore, our kubo client, and the `ipfs add` command line.

    .venv/bin/python benchmarks/ipfs.py                # 1 GiB, best of 3
    .venv/bin/python benchmarks/ipfs.py --size-mib 256 --repeat 3

A throwaway kubo daemon (own repo, offline, loopback ports) serves both kubo figures. Every
run starts from an empty store: after each add the file is unpinned and the store (LocalStore's
or kubo's) garbage-collected, then dirty pages are synced before the next run. The file is random and sits in the page
cache for all three. All three must give the same CID. Prints the machine, the command and
the figures; the goal is LocalStore >= 1.0x `ipfs add`. ``--dir /dev/shm`` puts the stores on
tmpfs, which takes the disk (on small VMs, ext4's inode allocation for 4096 new block files)
out of the comparison.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from provenance.errors import ServiceError
from provenance.stack import configure_kubo_repo, free_port
from provenance.storage import Kubo, LocalStore

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def find_ipfs() -> str:
    for candidate in (Path(sys.executable).parent / "ipfs", ROOT / ".tools" / "bin" / "ipfs"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("ipfs")
    if not found:
        sys.exit("benchmark: no ipfs binary (run scripts/setup.sh)")
    return found


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (from /proc/mounts)."""
    best, kind = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mountpoint, fstype, *_ = line.split()
            if str(path).startswith(mountpoint) and len(mountpoint) > len(best):
                best, kind = mountpoint, fstype
    except OSError:
        pass
    return kind


def start_kubo(ipfs: str, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    repo = folder / "repo"
    repo.mkdir()
    env = {**os.environ, "IPFS_PATH": str(repo)}
    subprocess.run([ipfs, "init", "--empty-repo"], env=env, check=True, capture_output=True)
    api_port = free_port()
    configure_kubo_repo(
        repo,
        api=f"/ip4/127.0.0.1/tcp/{api_port}",
        gateway=f"/ip4/127.0.0.1/tcp/{free_port()}",
        swarm_port=free_port(),
    )
    log = open(folder / "daemon.log", "wb")  # noqa: SIM115 - the daemon writes to it
    daemon = subprocess.Popen([ipfs, "daemon", "--migrate=false"], env=env, stdout=log, stderr=log)
    log.close()
    api = f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + 60
    with Kubo(api, timeout=5, retries=0) as kubo:
        while True:
            try:
                kubo.version()
                break
            except ServiceError:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    sys.exit(
                        "benchmark: kubo did not start: " + (folder / "daemon.log").read_text()
                    )
                time.sleep(0.2)
    return daemon, api


def timed(run: Callable[[], str]) -> tuple[float, str]:
    start = time.perf_counter()
    cid = run()
    return time.perf_counter() - start, cid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size (default 1024)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per method, best kept")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds idle before a run")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: temp)")
    args = parser.parse_args()

    ipfs = find_ipfs()
    work = Path(tempfile.mkdtemp(prefix="provenance-bench-", dir=args.dir))
    where = f"{work.parent} ({filesystem(work)})"
    daemon = None
    try:
        src = work / "data.bin"
        with open(src, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(MiB))
        size = src.stat().st_size
        daemon, api = start_kubo(ipfs, work)
        kubo = Kubo(api, timeout=600)
        multiaddr = "/ip4/127.0.0.1/tcp/" + api.rsplit(":", 1)[1]

        store = LocalStore(work / "store")

        def local() -> str:
            return store.put_path(src)

        def reset_local(cid: str) -> None:
            store.unpin(cid)
            store.gc()

        def client() -> str:
            return kubo.put_path(src)

        def cli() -> str:
            argv = [ipfs, "--api", multiaddr, "add", "--cid-version=1", "-Q", str(src)]
            return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()

        def reset_kubo(cid: str) -> None:
            kubo.unpin(cid)
            kubo.gc()

        methods: list[tuple[str, Callable[[], str], Callable[[str], None]]] = [
            ("LocalStore.put_path", local, reset_local),
            ("Kubo.put_path (our client)", client, reset_kubo),
            ("ipfs add --cid-version=1", cli, reset_kubo),
        ]
        times: dict[str, list[float]] = {name: [] for name, _, _ in methods}
        cids: set[str] = set()
        for round_ in range(args.repeat):
            # rotate the order, and let writeback settle before each run: the disk's state
            # after one method's writes and deletes must not weigh on the next one
            for name, run, reset in methods[round_ % 3 :] + methods[: round_ % 3]:
                os.sync()
                time.sleep(args.settle)
                seconds, cid = timed(run)
                cids.add(cid)
                times[name].append(seconds)
                reset(cid)
        version = kubo.version()
        kubo.close()
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    if len(cids) != 1:
        sys.exit(f"benchmark: the methods disagree on the CID: {sorted(cids)}")
    best = {name: min(ts) for name, ts in times.items()}
    reference = best["ipfs add --cid-version=1"]
    print(
        f"machine : {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    )
    print(f"software: Python {platform.python_version()}, kubo {version}")
    print(f"command : {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"file    : {size // MiB} MiB of random bytes; {args.repeat} rounds, order rotated")
    print(f"stores  : LocalStore folder and kubo repo in {where}")
    print(f"cid     : {cids.pop()} (the same from all three)")
    print()
    print(f"{'method':<28} {'best s':>7} {'MiB/s':>6} {'median s':>9} {'vs ipfs add':>12}")
    for name, seconds in best.items():
        median = statistics.median(times[name])
        ratio = reference / seconds
        print(
            f"{name:<28} {seconds:>7.2f} {size / MiB / seconds:>6.0f} {median:>9.2f} "
            f"{ratio:>11.2f}x"
        )


if __name__ == "__main__":
    main()
