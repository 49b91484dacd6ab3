"""Journeys 2 and 3: `provenance run` certifies only the model file a script writes (not its
metrics), refuses to overwrite an earlier certificate, stores public data on request; a
certificate registered with `provenance register` is stored too, so it verifies by id."""

from __future__ import annotations

import json
import sys
import textwrap

from .conftest import Journey

TRAIN = textwrap.dedent(
    """
    import json
    rows = open("data.csv").read().splitlines()
    open("model.joblib", "wb").write(("weights for %d rows" % len(rows)).encode())
    json.dump({"accuracy": 0.9}, open("metrics.json", "w"))
    open("train.log", "w").write("done")
    """
)


def test_run_certifies_the_model_file_not_its_metrics_and_register_publishes(
    journey: Journey,
) -> None:
    work = journey.folder("project")
    (work / "train.py").write_text(TRAIN)
    (work / "data.csv").write_text("x,y\n1,2\n3,4\n")
    args = ("run", "--name", "Journey Model", "--publish-data")
    done = journey.ok(*args, "--json", "--", sys.executable, "train.py", cwd=work)
    summary = json.loads(done.stdout)
    assert summary["model_files"] == ["model.joblib"] and summary["registered"] is True
    assert summary["storage"] == "kubo" and len(summary["data_urls"]) == 1
    elsewhere = journey.folder("elsewhere")
    verified = journey.ok(
        "verify", str(work / "model.joblib"), "--fetch-timeout", "5", cwd=elsewhere
    )
    assert summary["model_id"] in verified.stdout

    again = journey.run(*args, "--", sys.executable, "train.py", cwd=work)
    target = work / "provenance-runs" / "journey-model" / "certificate.json"
    assert again.returncode == 1 and again.stderr == (
        f"error: {target} holds the certificate of an earlier run: pass --out-dir DIR for this "
        "run, or --force to replace it\n"
    )

    local = journey.ok(
        "run", "--name", "Registered later", "--no-register", "--no-store", "--out-dir", "later",
        "--", sys.executable, "train.py", cwd=work,
    )  # fmt: skip
    assert "  model      model.joblib (sha256:" in local.stdout
    registered = json.loads(
        journey.ok("register", str(work / "later" / "certificate.json"), "--json", cwd=work).stdout
    )
    assert registered["storage"] == "kubo" and registered["cid"].startswith("bafkrei")
    by_id = journey.ok("verify", registered["id"], "--fetch-timeout", "5", cwd=elsewhere)
    assert registered["id"] in by_id.stdout
