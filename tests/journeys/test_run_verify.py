"""Journey 1: a user trains with `provenance run` in their project folder, then verifies the
model by id from another folder, and looks it up by the shortened id the output shows.

Before issue 15, `run` stored into the local store while `verify` read the stack's kubo:
"not found in IPFS within 10 s". Both now take their storage from the Session."""

from __future__ import annotations

import json
import sys
from typing import Any

from .conftest import Journey

TRAIN = """\
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(7)
X = rng.normal(size=(60, 3))
y = (X[:, 0] > 0).astype(int)
joblib.dump(LogisticRegression().fit(X, y), "model.joblib")
"""


def run_training(journey: Journey, name: str) -> dict[str, Any]:
    """`provenance run` of a small training script in a fresh project folder; its summary."""
    project = journey.folder("project")
    (project / "train.py").write_text(TRAIN, encoding="utf-8")
    ran = journey.ok(
        "run", "--name", name, "--model", "model.joblib", "--json",
        "--", sys.executable, "train.py",
        cwd=project,
    )  # fmt: skip
    summary: dict[str, Any] = json.loads(ran.stdout)
    assert summary["exit_code"] == 0
    assert summary["stored"] is True and summary["registered"] is True
    return summary


def test_run_then_verify_from_another_folder_then_show_and_tree_by_prefix(
    journey: Journey,
) -> None:
    summary = run_training(journey, "Journey One")
    model_id = summary["model_id"]
    assert model_id.startswith("0x") and len(model_id) == 66

    elsewhere = journey.folder("auditor")
    verified = journey.ok("verify", model_id, "--json", cwd=elsewhere)
    report = json.loads(verified.stdout)
    assert report["ok"] is True and report["model_id"] == model_id
    checks = {c["name"]: c for c in report["checks"]}
    for name in ("registered", "certificate-fetched", "certificate-digest", "model-digest"):
        assert checks[name]["status"] == "pass", checks[name]
    # fetched from the stack's kubo (its default API, which the config does not name)
    assert "fetched from http://127.0.0.1:5001" in checks["certificate-fetched"]["detail"]

    prefix = model_id[:10]  # 0x + 8 hex digits, as a user copies it
    by_prefix = journey.ok("verify", prefix, cwd=elsewhere)
    assert f"model {model_id}" in by_prefix.stdout.splitlines()[0]
    assert "verified: every required check passed" in by_prefix.stdout

    shown = json.loads(journey.ok("show", prefix, "--json", cwd=elsewhere).stdout)
    assert shown["id"] == model_id and shown["status"] == "active"
    assert shown["certificate_digest"] == summary["certificate_digest"]

    tree = json.loads(journey.ok("tree", prefix, "--format", "json", cwd=elsewhere).stdout)
    assert model_id in json.dumps(tree)

    too_short = journey.run("show", model_id[:9], cwd=elsewhere)
    assert too_short.returncode == 1
    assert too_short.stderr == (
        f"error: model id '{model_id[:9]}' is neither 0x + 64 hex digits nor a prefix of at "
        "least 8 hex digits\n"
    )
