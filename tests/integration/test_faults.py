"""The running system when its daemons die: anvil while `provenance serve` answers, kubo
during `provenance ipfs get` and `provenance image pull`, dockerd during `image pull`.

Each test kills daemons of a stack of its own (the session's stack stays untouched); they share
the session's Docker engine unless the engine is what dies."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from provenance.chain.attestor import AttestorContract
from provenance.chain.client import connect
from provenance.chain.deploy import Deployment
from provenance.chain.registry import Registry
from provenance.chain.tx import Transactor
from provenance.images import DockerEngine, push_to_ipfs
from provenance.stack import Stack, free_port
from provenance.storage import Kubo

from .chainutil import ADMIN, ALICE
from .conftest import config_at, tools, write_stack_config
from .test_serve import ROWS, train

pytestmark = pytest.mark.integration

PROVENANCE = Path(sys.executable).parent / "provenance"


@contextlib.contextmanager
def own_stack(folder: Path, docker_host: str | None) -> Iterator[tuple[Stack, dict[str, str]]]:
    """A stack of this test's own (sharing ``docker_host`` when given) and the CLI's
    environment for it."""
    path = write_stack_config(folder)
    if docker_host is not None:
        with path.open("a", encoding="utf-8") as f:
            f.write(f'\n[docker]\nhost = "{docker_host}"\n')
    own = Stack(config_at(path), tools())
    own.up()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVENANCE_", "DOCKER_HOST"))}
    env["PROVENANCE_CONFIG"] = str(path)
    try:
        yield own, env
    finally:
        own.down()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def pid_of(stack: Stack, name: str) -> int:
    record = stack._record(name)
    assert record is not None, f"{name} is not running"
    return int(record["pid"])


def connected_to(port: int) -> bool:
    """True when some TCP connection to 127.0.0.1:``port`` is established."""
    hex_port = f"{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == f"0100007F:{hex_port}" and fields[3] == "01":
            return True
    return False


def one_line_error(done: subprocess.CompletedProcess[str] | tuple[int, str]) -> str:
    code, stderr = (done.returncode, done.stderr) if not isinstance(done, tuple) else done
    assert code == 1, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


# -- anvil dies while the service answers ---------------------------------------------------------


def test_anvil_dies_while_serve_answers_nothing_is_lost(stack: Stack, tmp_path: Path) -> None:
    with own_stack(tmp_path / "own", stack.docker_host()) as (own, env):
        w3 = connect(own.config.chain.rpc_url)
        deployment = Deployment.read(own.config.deployment_file)
        assert deployment is not None
        registry = Registry.from_deployment(w3, own.config.deployment_file, Transactor(w3, ALICE))
        contract = AttestorContract(
            w3, deployment.contracts["OutputAttestor"].address, Transactor(w3, ALICE)
        )
        contract.set_operator(ADMIN.address)  # the service (dev account 0) authorises its node
        with Kubo(own.config.ipfs.api, timeout=600) as kubo:
            _, certificate = train(tmp_path / "run", kubo, registry, name="Through an outage")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [
            str(PROVENANCE), "serve", "--model-id", "0x" + certificate.model_id.hex(),
            "--source", "artifacts", "--port", str(port), "--max-age", "0.3",
            "--max-backlog-age", "4", "--trust", ALICE.address,
        ]  # fmt: skip
        process = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

        def health() -> httpx.Response:
            return httpx.get(url + "/healthz", timeout=30)

        def healthy() -> bool:
            assert process.poll() is None, process.communicate()
            try:
                return health().status_code == 200
            except httpx.TransportError:
                return False

        def predict() -> httpx.Response:
            return httpx.post(url + "/predict", json={"instances": ROWS}, timeout=30)

        def anchored(sequence: int) -> bool:
            return httpx.get(f"{url}/receipts/{sequence}").status_code == 200

        try:
            wait_for(healthy, 120, "the service to start")
            answered = [predict().json()["sequence"] for _ in range(3)]
            wait_for(lambda: all(anchored(s) for s in answered), 30, "the first receipts")
            answered.append(predict().json()["sequence"])  # the model's state is fresh: cached
            own._stop("anvil")
            # the service keeps answering from the cached state, each answer journaled, then
            # refuses with a 503 JSON error once it cannot re-read the model's state
            while (answer := predict()).status_code == 200:
                answered.append(answer.json()["sequence"])
                time.sleep(0.2)
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"].startswith(f"ModelRegistry at {registry.address}: ")
            assert len(answered) >= 5
            down = health()
            assert (down.status_code, down.json()["status"]) == (503, "unknown")
            assert down.json()["error"].startswith("the model's state on chain cannot be read: ")
            # the anchoring loop fails, keeps trying and says so; it does not die
            wait_for(lambda: health().json()["anchoring"]["failures"] >= 2, 30, "retries")
            anchoring = health().json()["anchoring"]
            assert anchoring["running"] is True and anchoring["backlog"] >= 1
            assert anchoring["last_error"].startswith("anchoring outputs of model 0x")
            assert not all(anchored(s) for s in answered)

            own.up()  # anvil returns from its state file
            wait_for(healthy, 90, "the service to recover")
            assert health().json()["anchoring"] | {"last_success": None} == {
                "running": True,
                "backlog": 0,
                "backlog_age": None,
                "failures": 0,
                "last_error": None,
                "last_success": None,
            }
            for sequence in answered:  # nothing answered is lost
                receipt = httpx.get(f"{url}/receipts/{sequence}").json()
                assert receipt["transaction"] is not None and receipt["block"] is not None
            assert contract.next_sequence(health().json()["node"]) == max(answered) + 1
        finally:
            process.send_signal(signal.SIGINT)  # Ctrl-C (test_serve stops it with SIGTERM)
            _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert "every recorded output is anchored" in err


# -- kubo and dockerd die during transfers --------------------------------------------------------


def freeze_then_kill(
    stack: Stack, name: str, when: Callable[[], bool], process: subprocess.Popen[str]
) -> None:
    """Once ``when()`` holds (the transfer runs), stop ``name`` dead: SIGSTOP at once (so the
    transfer cannot finish meanwhile), then SIGKILL."""
    wait_for(lambda: when() or process.poll() is not None, 60, f"the transfer from {name}")
    pid = pid_of(stack, name)
    os.kill(pid, signal.SIGSTOP)
    assert process.poll() is None, "the transfer finished before the daemon was stopped"
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)


def test_kubo_dies_during_ipfs_get_leaving_nothing(stack: Stack, tmp_path: Path) -> None:
    with own_stack(tmp_path / "own", stack.docker_host()) as (own, env):
        big = tmp_path / "big.bin"
        with big.open("wb") as f:
            for _ in range(192):
                f.write(os.urandom(1 << 20))
        with Kubo(own.config.ipfs.api, timeout=600) as kubo:
            cid = kubo.put_path(big)
        big.unlink()
        dest = tmp_path / "dest"
        dest.mkdir()
        process = subprocess.Popen(
            [str(PROVENANCE), "ipfs", "get", cid, "-o", str(dest / "big.bin")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        freeze_then_kill(own, "ipfs", lambda: any(dest.iterdir()), process)
        _, err = process.communicate(timeout=120)
        line = one_line_error((process.returncode, err))
        assert own.config.ipfs.api in line, line
        assert list(dest.iterdir()) == []


def push_base(stack: Stack, own: Stack, base_image: str) -> str:
    with (
        DockerEngine(stack.docker_host()) as engine,
        Kubo(own.config.ipfs.api, timeout=600) as kubo,
    ):
        return push_to_ipfs(engine, base_image, kubo).archive


def test_kubo_dies_during_image_pull_tagging_nothing(
    stack: Stack, base_image: str, tmp_path: Path
) -> None:
    # an engine of its own, without the base: a pull into the session's engine, which has
    # every layer, would only tag (OCI layouts send only the layers an engine lacks)
    with own_stack(tmp_path / "own", None) as (own, env):
        if not own.is_running("dockerd"):
            pytest.skip("the system's Docker engine answers: no empty engine of our own")
        archive = push_base(stack, own, base_image)
        tag = f"provenance/fault:kubo-{os.urandom(4).hex()}"
        api_port = int(own.config.ipfs.api.rsplit(":", 1)[1])
        process = subprocess.Popen(
            [str(PROVENANCE), "image", "pull", archive, "--tag", tag],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        freeze_then_kill(own, "ipfs", lambda: connected_to(api_port), process)
        _, err = process.communicate(timeout=120)
        line = one_line_error((process.returncode, err))
        assert own.config.ipfs.api in line, line
        with DockerEngine(own.docker_host()) as engine:
            assert not engine.has(tag)


def test_dockerd_dies_during_image_pull_tagging_nothing(
    stack: Stack, base_image: str, tmp_path: Path
) -> None:
    with own_stack(tmp_path / "own", None) as (own, env):
        if not own.is_running("dockerd"):
            pytest.skip("the system's Docker engine answers: no dockerd of our own to kill")
        archive = push_base(stack, own, base_image)
        tag = f"provenance/fault:dockerd-{os.urandom(4).hex()}"
        api_port = int(own.config.ipfs.api.rsplit(":", 1)[1])
        process = subprocess.Popen(
            [str(PROVENANCE), "image", "pull", archive, "--tag", tag],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # the archive streams from kubo straight into the engine's load
        wait_for(lambda: connected_to(api_port) or process.poll() is not None, 60, "the pull")
        assert process.poll() is None, process.communicate()
        time.sleep(0.3)
        own._stop("dockerd")
        _, err = process.communicate(timeout=120)
        line = one_line_error((process.returncode, err))
        assert own.own_docker_host in line, line
        own.up()  # the engine returns: the half-loaded image is not tagged
        with DockerEngine(own.docker_host()) as engine:
            assert not engine.has(tag)
