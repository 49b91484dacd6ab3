"""Journey of issue 16: an inference server that is not Python, attested by `provenance proxy`.

The user certifies a model with ``provenance run``, makes a node key for the service
(``provenance key new``) and authorises it for the model (``provenance node authorize``), runs
their own inference server (here tests/integration/upstreams/predictor.js, Node.js) and puts
``provenance proxy --model-id <prefix> --upstream <url>`` in front of it. A client posts through
the proxy with plain httpx and keeps what it saw: the request it sent, the bytes it got and the
receipt URL the answer's headers name. An auditor in a fresh folder verifies that answer with
``provenance verify-output`` from those alone, and the answer edited afterwards fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from provenance.stack import free_port
from tests.journeys.conftest import PROVENANCE, ROOT, Journey

pytestmark = pytest.mark.skipif(
    subprocess.run(["node", "--version"], capture_output=True, check=False).returncode != 0,
    reason="needs node for the inference server",
)

TRAIN = """\
import joblib
from sklearn.linear_model import LogisticRegression

X = [[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 1.0], [5.0, 0.0]]
y = [0, 0, 0, 1, 1, 1]
joblib.dump(LogisticRegression().fit(X, y), "model.joblib")
"""
UPSTREAM = ROOT / "tests" / "integration" / "upstreams" / "predictor.js"


@contextlib.contextmanager
def inference_server() -> Iterator[str]:
    """The user's own inference server (Node.js); its base URL."""
    process = subprocess.Popen(
        ["node", str(UPSTREAM), "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on "), line + process.communicate()[1]
        yield f"http://127.0.0.1:{int(line.split()[-1])}"
    finally:
        process.terminate()
        process.communicate(timeout=30)


def _wait_healthy(url: str, proxy: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proxy.poll() is not None:
            _, stderr = proxy.communicate()
            raise AssertionError(f"proxy exited with {proxy.returncode}: {stderr[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/_provenance/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise AssertionError("the proxy did not become healthy")


def test_a_node_inference_server_behind_the_proxy_and_its_answer_verified_by_an_auditor(
    journey: Journey,
) -> None:
    trainer = journey.folder("trainer")
    (trainer / "train.py").write_text(TRAIN, encoding="utf-8")
    ran = journey.ok(
        *("run", "--name", "Proxied Model", "--model", "model.joblib", "--json"),
        *("--", sys.executable, "train.py"),
        cwd=trainer,
    )
    model_id = json.loads(ran.stdout)["model_id"]
    prefix = model_id[:12]

    # the service's operator: a node key of its own, authorised by the registrant
    operator = journey.folder("operator")
    (operator / "password").write_text("node key password\n", encoding="utf-8")
    made = journey.ok(
        *("key", "new", "--out", "node.json", "--password-file", "password", "--json"),
        cwd=operator,
    )
    node = json.loads(made.stdout)["address"]
    authorised = journey.ok("node", "authorize", prefix, "node.json", cwd=operator)
    assert f"authorised node {node} for {model_id}" in authorised.stdout

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    request = json.dumps({"instances": [[0.5, 1.5], [2.0, 3.25]]}).encode()
    with inference_server() as upstream:
        proxy = subprocess.Popen(
            [
                *(str(PROVENANCE), "proxy", "--model-id", prefix, "--upstream", upstream),
                *("--port", str(port), "--node-keystore", "node.json"),
                *("--node-password-file", "password", "--no-authorize"),
            ],
            cwd=operator,
            env=journey.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_healthy(url, proxy)
            direct = httpx.post(upstream + "/v1/predict", content=request)
            # the client: plain HTTP, it knows nothing of provenance but the answer's headers
            answer = httpx.post(
                url + "/v1/predict",
                content=request,
                headers={"content-type": "application/json"},
                timeout=60,
            )
            assert answer.status_code == 200, answer.text
            assert answer.content == direct.content == b'{"predictions":[2,5.25]}'
            receipt_url = answer.headers["x-provenance-receipt"]
            receipt = _anchored(receipt_url)
        finally:
            proxy.send_signal(signal.SIGTERM)
            try:
                out, err = proxy.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proxy.kill()
                out, err = proxy.communicate()
    assert proxy.returncode == 0, err[-3000:]
    assert f"attesting model {model_id}: proxying {upstream} on {url} - node {node}" in out
    assert "every recorded output is anchored" in err

    # the auditor, in a fresh folder: the receipt, the request and the answer's bytes
    auditor = journey.folder("auditor")
    (auditor / "receipt.json").write_text(receipt, encoding="utf-8")
    (auditor / "request.json").write_bytes(request)
    (auditor / "answer.json").write_bytes(answer.content)
    checked = journey.ok(
        *("verify-output", "receipt.json", "--input-file", "request.json"),
        *("--output-file", "answer.json", "--model-id", prefix),
        cwd=auditor,
    )
    assert "verified: every required check passed" in checked.stdout
    # the answer edited afterwards (a prediction changed): the receipt does not cover it
    (auditor / "answer.json").write_bytes(answer.content.replace(b"5.25", b"6.25"))
    edited = journey.run(
        *("verify-output", "receipt.json", "--output-file", "answer.json"), cwd=auditor
    )
    assert edited.returncode == 1
    assert edited.stderr == (
        "error: receipt: the output does not match the receipt's output digest "
        f"0x{hashlib.sha256(answer.content).hexdigest()}\n"
    )


def _anchored(receipt_url: str) -> str:
    """The receipt at ``receipt_url`` once its batch is anchored (202 until then)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        got = httpx.get(receipt_url, timeout=10)
        if got.status_code == 200:
            return got.text
        assert got.status_code == 202, got.text
        time.sleep(0.3)
    raise AssertionError(f"{receipt_url} stayed pending")
