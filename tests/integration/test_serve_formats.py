"""Every servable format served from its files on the real stack (issue 16): certified,
registered and stored with track(), served by `provenance serve --source artifacts` (a CLI
subprocess), each prediction equal to the format's own library's and verified by
`provenance verify-output`; a stored file swapped for another valid model of the same format
is refused before anything loads it, and weights without their code are refused in one line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from safetensors.numpy import save_file

from provenance import image_entrypoint
from provenance.capture import track
from provenance.certificate import Certificate
from provenance.chain.attestor import AttestorContract
from provenance.chain.client import connect
from provenance.chain.deploy import Deployment
from provenance.chain.registry import Registry
from provenance.errors import IntegrityError
from provenance.server.service import load_served_model
from provenance.stack import Stack, free_port
from provenance.storage import Kubo
from tests.model_builders import (
    ROWS,
    lightgbm_model,
    onnx_linear,
    torchscript_model,
    xgboost_model,
)

from .chainutil import ADMIN, ALICE, transactor

pytestmark = pytest.mark.integration

PROVENANCE = Path(sys.executable).parent / "provenance"


@pytest.fixture(scope="module")
def registry(stack: Stack) -> Registry:
    """The stack's registry, sending as Alice (the registrant); Alice approves the CLI's
    sender (dev account 0) as her operator, so `provenance serve` may authorise its node."""
    w3 = connect(stack.config.chain.rpc_url)
    deployment = Deployment.read(stack.config.deployment_file)
    assert deployment is not None
    attestor = AttestorContract(
        w3, deployment.contracts["OutputAttestor"].address, transactor(w3, ALICE)
    )
    if not attestor.is_operator(ALICE.address, ADMIN.address):
        attestor.set_operator(ADMIN.address)
    return Registry.from_deployment(w3, stack.config.deployment_file, transactor(w3, ALICE))


@pytest.fixture(scope="module")
def kubo(stack: Stack) -> Iterator[Kubo]:
    with Kubo(stack.config.ipfs.api, timeout=600) as client:
        yield client


def certify(name: str, model: Path, folder: Path, kubo: Kubo, registry: Registry) -> Certificate:
    """Certify, store and register the model file (or folder) as Alice, with track()."""
    with track(
        name, output_dir=folder, storage=kubo, registry=registry, signer=ALICE, source_dir=folder
    ) as run:
        run.log_model(model)
    assert run.certificate is not None
    return run.certificate


def onnx_folder(folder: Path) -> tuple[Path, Any]:
    """A model of several files: the ONNX graph beside its notes, stored as their folder."""
    model = folder / "onnx-model"
    model.mkdir()
    built = onnx_linear(model)
    (model / "README.md").write_text("a linear layer, for the test", encoding="utf-8")
    return model, built


def expected_predictions(fmt: str, path: Path) -> list[Any]:
    """What the format's own library answers for ROWS (computed here, not by the runtime)."""
    rows32 = np.asarray(ROWS, dtype=np.float32)
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return list(session.run(None, {session.get_inputs()[0].name: rows32})[0].tolist())
    if fmt == "torchscript":
        import torch

        with torch.no_grad():
            return list(torch.jit.load(str(path))(torch.tensor(ROWS)).tolist())
    if fmt == "xgboost":
        import xgboost as xgb

        return list(xgb.Booster(model_file=str(path)).predict(xgb.DMatrix(rows32)).tolist())
    import lightgbm as lgb

    booster = lgb.Booster(model_file=str(path))
    return list(booster.predict(np.asarray(ROWS, dtype=np.float64)).tolist())


def start_serving(model_id: bytes, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            *(str(PROVENANCE), "serve", "--model-id", "0x" + model_id.hex()),
            *("--source", "artifacts", "--port", str(port), "--max-age", "0.3"),
            *("--trust", ALICE.address),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, stderr = process.communicate()
            raise AssertionError(f"serve exited with {process.returncode}: {stderr[-3000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"serve did not become healthy: {process.communicate()[1][-3000:]}")


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


SERVABLE: dict[str, Callable[[Path], tuple[Path, Any]]] = {
    "onnx": onnx_linear,
    "onnx-folder": onnx_folder,
    "torchscript": torchscript_model,
    "xgboost": xgboost_model,
    "lightgbm": lightgbm_model,
}


@pytest.mark.parametrize("case", sorted(SERVABLE))
def test_each_format_is_served_from_its_files_and_its_answers_verify(
    case: str, kubo: Kubo, registry: Registry, cli_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "run").mkdir()
    model = SERVABLE[case](tmp_path / "run")[0]
    fmt = case.removesuffix("-folder")
    entry = model / "model.onnx" if model.is_dir() else model
    certificate = certify(f"Served {case}", model, tmp_path / "run", kubo, registry)
    expected = expected_predictions(fmt, entry)

    process, url = start_serving(certificate.model_id, cli_env)
    try:
        health = httpx.get(url + "/healthz", timeout=10).json()
        assert (health["source"], health["model_digest"]) == (
            "artifacts",
            certificate.model.digest,
        )
        request = json.dumps({"instances": ROWS}).encode()
        answer = httpx.post(
            url + "/predict?wait=true",
            content=request,
            headers={"content-type": "application/json"},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == expected
        refused = httpx.post(
            url + "/predict", json={"instances": ROWS, "method": "predict_log_proba"}
        )
        assert refused.status_code == 400
        assert refused.json()["error"].startswith("the model has no method predict_log_proba (")
    finally:
        stop(process)
    assert process.returncode == 0

    auditor = tmp_path / "auditor"
    auditor.mkdir()
    (auditor / "answer.json").write_text(answer.text, encoding="utf-8")
    (auditor / "request.json").write_bytes(request)
    checked = subprocess.run(
        [str(PROVENANCE), "verify-output", "answer.json", "--input", "request.json", "--json"],
        cwd=auditor,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["ok"] is True
    # a prediction changed after the fact does not verify
    forged = answer.json()
    first = forged["predictions"]
    while isinstance(first[0], list):  # rows of outputs (ONNX, TorchScript) or one per row
        first = first[0]
    first[0] = float(first[0]) + 1.0
    (auditor / "forged.json").write_text(json.dumps(forged), encoding="utf-8")
    caught = subprocess.run(
        [str(PROVENANCE), "verify-output", "forged.json"],
        cwd=auditor,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert caught.returncode == 1
    assert caught.stderr.startswith("error: receipt: the output does not match")


def test_a_stored_file_swapped_for_another_model_of_its_format_is_refused_before_loading(
    kubo: Kubo, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "honest").mkdir()
    (tmp_path / "evil").mkdir()
    honest_file = onnx_linear(tmp_path / "honest")[0]
    evil_file = onnx_linear(tmp_path / "evil")[0]  # other weights: a valid ONNX model too
    assert evil_file.read_bytes() != honest_file.read_bytes()
    honest = certify("Honest ONNX", honest_file, tmp_path / "honest", kubo, registry)
    # the registrant's certificate, its URL pointing at the other model (a new certificate,
    # registered as such: the chain holds what it says)
    swapped = honest.model_copy(
        update={
            "model": honest.model.model_copy(update={"url": "ipfs://" + kubo.put_path(evil_file)})
        }
    )
    kubo.put_bytes(swapped.canonical_bytes())
    registry.register(swapped.registration())
    loaded: list[Path] = []
    real = image_entrypoint.load_runtime
    monkeypatch.setattr(
        image_entrypoint, "load_runtime", lambda path, fmt: loaded.append(path) or real(path, fmt)
    )
    work = tmp_path / "work"
    with pytest.raises(IntegrityError) as info:
        load_served_model(
            swapped.model_id,
            registry=registry,
            storage=kubo,
            workdir=work,
            registrants=[ALICE.address],
        )
    entry = honest.model.manifest.files[0]
    evil_digest = certify_digest(evil_file)
    assert str(info.value) == (
        f"{work / 'model.onnx'}: model.onnx has {evil_file.stat().st_size} bytes and digest "
        f"{evil_digest}, the manifest says {entry.size} bytes and {entry.digest}"
    )
    assert loaded == []  # onnxruntime never saw it
    assert not (work / "model.onnx").exists()


def certify_digest(path: Path) -> str:
    from provenance.manifest import manifest_of

    return manifest_of(path).files[0].digest


def test_weights_without_their_code_are_refused_in_one_line(
    kubo: Kubo, registry: Registry, cli_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "run").mkdir()
    weights = tmp_path / "run" / "model.safetensors"
    save_file({"linear.weight": np.ones((2, 4), dtype=np.float32)}, str(weights))
    certificate = certify("Weights only", weights, tmp_path / "run", kubo, registry)
    mid = "0x" + certificate.model_id.hex()
    done = subprocess.run(
        [
            *(str(PROVENANCE), "serve", "--model-id", mid, "--source", "artifacts"),
            *("--port", str(free_port()), "--trust", ALICE.address),
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: model {mid} is in the safetensors format (safetensors weights): weights without "
        "the code that runs them; serve it from an image of your own (provenance image build "
        "--dockerfile) or behind provenance proxy"
    )
