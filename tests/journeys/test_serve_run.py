"""Journey 4 of issue 15: a model made by ``provenance run`` is served from its files.

The user trains with a scikit-learn script that writes ``model.joblib``, certifies it with
``provenance run``, serves it with ``provenance serve --model-id <prefix>``, asks for a
prediction, and an auditor in another folder verifies the answer, with ``verify-output`` and
with ``verify``. Before the fix, serving refused: "serving from files supports one pickled
scikit-learn model".
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from provenance.stack import free_port
from tests.journeys.conftest import PROVENANCE, Journey

TRAIN = """\
import joblib
from sklearn.linear_model import LogisticRegression

X = [[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0], [4.0, 1.0], [5.0, 0.0]]
y = [0, 0, 0, 1, 1, 1]
joblib.dump(LogisticRegression().fit(X, y), "model.joblib")
"""


def _serve(journey: Journey, model_id: str, port: int, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(PROVENANCE), "serve", "--model-id", model_id, "--port", str(port)],
        cwd=cwd,
        env=journey.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_healthy(url: str, server: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            _, stderr = server.communicate()
            raise AssertionError(f"serve exited with {server.returncode}: {stderr[-3000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("serve did not become healthy")


def test_a_model_made_by_provenance_run_is_served_and_its_answer_verifies(
    journey: Journey,
) -> None:
    trainer = journey.folder("trainer")
    (trainer / "train.py").write_text(TRAIN, encoding="utf-8")
    ran = journey.ok(
        "run",
        "--name",
        "Served Model",
        "--model",
        "model.joblib",
        "--json",
        "--",
        sys.executable,
        "train.py",
        cwd=trainer,
    )
    summary = json.loads(ran.stdout)
    assert summary["registered"] and summary["stored"], summary
    model_id = summary["model_id"]
    # show and tree name it, from its certificate in the stack's IPFS, with readable times
    shown = json.loads(journey.ok("show", model_id, "--json", cwd=trainer).stdout)
    assert shown["name"] == "Served Model" and shown["registered_at_utc"].endswith("Z")
    family = json.loads(journey.ok("tree", model_id, "--format", "json", cwd=trainer).stdout)
    assert family["nodes"][0]["name"] == "Served Model"

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _serve(journey, model_id, port, journey.folder("service"))
    try:
        _wait_healthy(url, server)
        health = httpx.get(url + "/healthz", timeout=10).json()
        assert (health["model_id"], health["source"], health["model_name"]) == (
            model_id,
            "artifacts",
            "Served Model",
        )
        answer = httpx.post(
            url + "/predict?wait=true",
            json={"instances": [[0.0, 1.0], [5.0, 0.0]]},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == [0, 1]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
    assert server.returncode == 0

    auditor = journey.folder("auditor")
    (auditor / "answer.json").write_text(answer.text, encoding="utf-8")
    checked = journey.ok("verify-output", "answer.json", cwd=auditor)
    assert "verified: every required check passed" in checked.stdout
    # the same answer given to `verify` (saved as `curl -o answer` would, with no suffix) is
    # verified as an output, not taken for a model file
    (auditor / "answer").write_text(answer.text, encoding="utf-8")
    verified = journey.ok("verify", "answer", cwd=auditor)
    assert "verify answer (receipt)" in verified.stdout
    assert "verified: every required check passed" in verified.stdout
