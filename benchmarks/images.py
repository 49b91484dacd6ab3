"""Model images through IPFS: build times, and save -> IPFS / IPFS -> load throughput of
provenance.images beside the plain command lines.

    .venv/bin/python benchmarks/images.py               # a throwaway stack, best of 2
    .venv/bin/python benchmarks/images.py --repeat 3 --config provenance.toml   # a running one

Figures: loading the base image from its root file system (scripts/setup.sh builds that
tarball, about a minute, not timed here), building the model image of a scikit-learn pipeline
(cold, then again with the package layer cached), ``push_to_ipfs`` against
``docker save | ipfs add``, ``pull_from_ipfs`` (CID-verified, id-checked) against
``ipfs cat | docker load``, and ``docker load`` of a local file as the floor. Both pushes must
give the same CID. MB/s are of the archive's bytes (10^6 bytes per MB).
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from provenance.config import load_config, url_port
from provenance.images import (
    DockerEngine,
    build_model_image,
    import_rootfs,
    pull_from_ipfs,
    push_to_ipfs,
)
from provenance.stack import Stack, Tools, free_port, running_stack
from provenance.storage import Kubo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

ROOT = Path(__file__).resolve().parents[1]
ROOTFS = ROOT / ".tools" / "images" / "base-bookworm.tar"


def best(repeat: int, run: Callable[[], None], before: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def sh(command: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"benchmark: `{command}` failed: {result.stderr.strip()}")
    return result.stdout.strip()


def throwaway_config(folder: Path) -> Path:
    path = folder / "provenance.toml"
    path.write_text(
        f'state_dir = "state"\n[chain]\nrpc_url = "http://127.0.0.1:{free_port()}"\n'
        f'[ipfs]\napi = "http://127.0.0.1:{free_port()}"\n'
        f'gateway = "http://127.0.0.1:{free_port()}"\nswarm_port = {free_port()}\n'
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--config", type=Path, help="use this stack (running) instead")
    args = parser.parse_args()
    if not ROOTFS.is_file():
        sys.exit(f"benchmark: no {ROOTFS} (run scripts/setup.sh)")
    for tool in ("docker", "ipfs"):
        if not (shutil.which(tool) or (ROOT / ".venv" / "bin" / tool).exists()):
            sys.exit(f"benchmark: no `{tool}` command (run scripts/setup.sh)")
    tools = Tools(
        search_path=(Path(sys.executable).parent, ROOT / ".tools" / "bin"),
        path_env=os.environ.get("PATH"),
    )
    with tempfile.TemporaryDirectory(prefix="bench-images-") as scratch:
        folder = Path(scratch)
        config_path = args.config or throwaway_config(folder)
        stack = Stack(load_config({}, cwd=config_path.parent, explicit=config_path), tools)
        if args.config:
            run(stack, tools, folder, args.repeat)
        else:
            with running_stack(stack):
                run(stack, tools, folder, args.repeat)


def run(stack: Stack, tools: Tools, folder: Path, repeat: int) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    host = stack.docker_host()
    api = stack.config.ipfs.api
    env = {
        **os.environ,
        "DOCKER_HOST": host,
        "PATH": f"{tools.find('ipfs').parent}:{os.environ.get('PATH', '')}",
    }
    ipfs = f"ipfs --api /ip4/127.0.0.1/tcp/{url_port(api)}"
    engine = DockerEngine(host)
    kubo = Kubo(api, timeout=600)
    print(describe())
    print(f"Docker {engine.version()}, kubo {kubo.version()}, best of {repeat}\n")

    def drop_base() -> None:
        if engine.has("provenance/base:bookworm"):
            engine.client.images.remove("provenance/base:bookworm", force=True)

    size = ROOTFS.stat().st_size
    seconds = best(repeat, lambda: import_rootfs(engine, ROOTFS), drop_base)
    print(
        f"base image from its root file system  {seconds:6.1f} s  {size / seconds / 1e6:6.0f} MB/s"
    )

    X, y = load_iris(return_X_y=True)
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X, y)
    path = folder / "model.pkl"
    path.write_bytes(pickle.dumps(model, protocol=5))
    start = time.perf_counter()
    image = build_model_image(engine, path, tag="bench/model:cold")
    cold = time.perf_counter() - start
    start = time.perf_counter()
    build_model_image(engine, path, tag="bench/model:warm", name="warm")
    warm = time.perf_counter() - start
    print(f"model image build, cold / cached      {cold:6.1f} s / {warm:.1f} s")

    cids: dict[str, str] = {}

    def ours() -> None:
        cids["ours"] = push_to_ipfs(engine, image.id, kubo).archive

    def plain() -> None:
        cids["plain"] = sh(
            f"docker save {image.id} | {ipfs} add -Q --cid-version=1 --raw-leaves "
            "--chunker=size-262144 --pin=true",
            env,
        )

    archive_size = push_to_ipfs(engine, image.id, kubo).size
    mb = archive_size / 1e6
    push_ours, push_plain = best(repeat, ours), best(repeat, plain)
    if cids["ours"] != cids["plain"]:
        sys.exit(f"benchmark: CIDs differ: {cids}")
    print(f"archive: {mb:.0f} MB, CID {cids['ours']}")
    print(f"{'':38s}{'provenance':>14s}{'command line':>16s}")
    print(f"{'save -> IPFS':38s}{mb / push_ours:10.0f} MB/s{mb / push_plain:12.0f} MB/s")

    def drop_model() -> None:
        if engine.has(image.id):
            engine.client.images.remove(image.id, force=True)

    cid = cids["ours"]
    pull_ours = best(repeat, lambda: pull_from_ipfs(engine, kubo, cid, image.id), drop_model)
    pull_plain = best(repeat, lambda: sh(f"{ipfs} cat {cid} | docker load -q", env), drop_model)
    print(f"{'IPFS -> load':38s}{mb / pull_ours:10.0f} MB/s{mb / pull_plain:12.0f} MB/s")
    local = folder / "archive.tar"
    sh(f"docker save {image.id} -o {local}", env)
    floor = best(repeat, lambda: sh(f"docker load -q -i {local}", env), drop_model)
    print(f"{'docker load of a local file':38s}{'':14s}{mb / floor:12.0f} MB/s")
    engine.close()
    kubo.close()


if __name__ == "__main__":
    main()
