"""Model images through IPFS: build times, and save -> IPFS / IPFS -> load throughput of
provenance.images beside the plain command lines.

    .venv/bin/python benchmarks/images.py               # a throwaway stack, best of 2
    .venv/bin/python benchmarks/images.py --repeat 3 --config provenance.toml   # a running one

Figures: loading the base image from its root file system (scripts/setup.sh builds that
tarball, about a minute, not timed here), building the model image of a scikit-learn pipeline
(cold, then again with the package layer cached), ``push_to_ipfs`` against
``docker save | ipfs add``: the bytes each adds to the IPFS repo (kubo's ``repo stat``) and its
time, for a first model image and for a second model on the same base (goal: the second adds
<= 5% of the first), then ``pull_from_ipfs`` (CID-verified, id-checked, only the layers the
engine lacks) against ``ipfs cat | docker load``, into an engine with the base and packages and
into an empty one, and ``docker load`` of a local file as the floor (MB/s of the ``docker save``
archive, 10^6 bytes per MB). Bytes added are only meaningful on a fresh repo (the default
throwaway stack): a running stack may hold the layers already.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from provenance.config import load_config, url_port
from provenance.images import (
    DockerEngine,
    build_model_image,
    import_rootfs,
    pull_from_ipfs,
    push_to_ipfs,
    read_layout,
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


def pulling_clean(
    engine: DockerEngine,
    kubo: Kubo,
    cid: str,
    image_id: str,
    repeat: int,
    pull: Callable[[], object] | None = None,
) -> float:
    """Best time to pull into an engine that has no image at all (the base removed too)."""

    def clear() -> None:
        for found in engine.api.images(all=True):
            with contextlib.suppress(Exception):
                engine.client.images.remove(found["Id"], force=True)

    return best(repeat, pull or (lambda: pull_from_ipfs(engine, kubo, cid, image_id)), clear)


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
    paths = []
    for name, c in (("a", 1.0), ("b", 2.0)):  # two models, same packages
        model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=c))])
        paths.append(folder / f"model-{name}.pkl")
        paths[-1].write_bytes(pickle.dumps(model.fit(X, y), protocol=5))
    start = time.perf_counter()
    image = build_model_image(engine, paths[0], tag="bench/model:a")
    cold = time.perf_counter() - start
    start = time.perf_counter()
    second = build_model_image(engine, paths[1], tag="bench/model:b")
    warm = time.perf_counter() - start
    print(f"model image build, cold / cached      {cold:6.1f} s / {warm:.1f} s")

    def repo_size() -> int:
        response = httpx.post(f"{api}/api/v0/repo/stat", params={"size-only": "true"}, timeout=600)
        return int(response.json()["RepoSize"])

    def pushed(push: Callable[[], str]) -> tuple[str, int, float]:
        """(CID, bytes the repo grew by, seconds) of one push."""
        before, start = repo_size(), time.perf_counter()
        cid = push()
        return cid, repo_size() - before, time.perf_counter() - start

    def plain(image_id: str) -> Callable[[], str]:
        return lambda: sh(
            f"docker save {image_id} | {ipfs} add -Q --cid-version=1 --raw-leaves "
            "--chunker=size-262144 --pin=true",
            env,
        )

    def ours(image_id: str) -> Callable[[], str]:
        return lambda: push_to_ipfs(engine, image_id, kubo).archive

    rows = {}
    for label, method in (("provenance (OCI layout)", ours), ("docker save | ipfs add", plain)):
        first_cid, first_added, first_s = pushed(method(image.id))
        second_cid, second_added, second_s = pushed(method(second.id))
        again = [pushed(method(image.id))[2] for _ in range(max(0, repeat - 1))]
        rows[label] = (first_cid, second_cid)
        print(
            f"{label:26s} first push {first_added / 1e6:6.1f} MB added in {first_s:5.1f} s"
            f"{f' (again: best {min(again):.1f} s)' if again else ''}; second model on the "
            f"same base {second_added / 1e6:8.3f} MB added in {second_s:5.1f} s = "
            f"{second_added / first_added:7.3%} of the first (goal <= 5%)"
        )
    cid_ours = rows["provenance (OCI layout)"][0]
    cid_plain = rows["docker save | ipfs add"][0]
    mb = read_layout(kubo, cid_ours, image.id).size / 1e6
    print(f"image: {mb:.0f} MB of blobs; layout CID {cid_ours}")

    def drop_model() -> None:
        if engine.has(image.id):
            engine.client.images.remove(image.id, force=True)

    pull_ours = best(repeat, lambda: pull_from_ipfs(engine, kubo, cid_ours, image.id), drop_model)
    pull_plain = best(
        repeat, lambda: sh(f"{ipfs} cat {cid_plain} | docker load -q", env), drop_model
    )
    print(
        f"{'IPFS -> load, base and packages in the engine':46s}{pull_ours:6.1f} s"
        f"  (ipfs cat | docker load: {pull_plain:.1f} s, {pull_plain / pull_ours:.1f}x)"
    )
    with contextlib.suppress(Exception):
        engine.client.images.remove(second.id, force=True)
    clean = pulling_clean(engine, kubo, cid_ours, image.id, repeat)
    plain_clean = pulling_clean(
        engine,
        kubo,
        cid_plain,
        image.id,
        repeat,
        lambda: sh(f"{ipfs} cat {cid_plain} | docker load -q", env),
    )
    print(
        f"{'IPFS -> load into an engine without the base':46s}{clean:6.1f} s"
        f"  (ipfs cat | docker load: {plain_clean:.1f} s; {mb / clean:.0f} against "
        f"{mb / plain_clean:.0f} MB/s)"
    )
    import_rootfs(engine, ROOTFS)
    local = folder / "archive.tar"
    sh(f"docker save {image.id} -o {local}", env)
    floor = best(repeat, lambda: sh(f"docker load -q -i {local}", env), drop_model)
    mb = os.path.getsize(local) / 1e6
    print(f"{'docker load of a local file':38s}{'':14s}{mb / floor:12.0f} MB/s")
    engine.close()
    kubo.close()


if __name__ == "__main__":
    main()
