"""``provenance demo`` as a user runs it, against the session stack: to the end, exit 0, five of
five attacks detected; run twice, each run in its own work folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from provenance.stack import Stack, free_port

pytestmark = pytest.mark.integration

PROVENANCE = Path(sys.executable).parent / "provenance"


def demo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROVENANCE), "demo", *args], env=env, capture_output=True, text=True, timeout=900
    )


def test_the_demo_runs_to_the_end_and_detects_all_five_attacks(
    stack: Stack, cli_env: dict[str, str], tmp_path: Path
) -> None:
    picture = tmp_path.parent / f"{tmp_path.name}-picture" / "family-tree.svg"
    done = demo(
        "--skip-images",
        "--json",
        "--work-dir",
        str(tmp_path),
        "--tree-svg",
        str(picture),
        env=cli_env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["ok"] is True
    assert (summary["detected"], summary["total"]) == (5, 5)
    assert [a["number"] for a in summary["attacks"]] == [1, 2, 3, 4, 5]
    assert all(a["detected"] for a in summary["attacks"])
    assert summary["images"] is False
    assert Path(summary["work_dir"]).parent == tmp_path
    assert Path(summary["files"]["family_tree_svg"]).read_text().lstrip().startswith("<?xml")
    after = Path(summary["files"]["family_tree_after_attacks_svg"]).read_text()
    assert "Model Beta v2 (by Mallory, claims Alice)" in after
    # the response: the impostor revoked on chain, Bob's model built on it tainted
    revoked, (tainted,) = summary["response"]["revoked"], summary["response"]["tainted"]
    classes = {
        g.get("id"): g.get("class")
        for g in ElementTree.fromstring(after).iter("{http://www.w3.org/2000/svg}g")
    }
    assert classes[f"model-{revoked}"] == "node status-revoked"
    assert classes[f"model-{tainted}"] == "node status-tainted"
    assert "Beta v2, quantized (by Bob)" in after
    assert picture.read_text() == after
    assert "family tree picture copied to" in done.stderr
    alpha, beta = summary["models"]["alpha"], summary["models"]["beta"]
    assert beta["parents"] == [{"id": alpha["id"], "relation": "fine-tune"}]
    verified = summary["verification"]
    assert [(r["kind"], r["ok"]) for r in verified] == [
        ("model-id", True),
        ("model-files", True),
        ("model-id", True),
        ("model-files", True),
        ("receipt", True),
    ]
    checks = {c["check"]: c["error"] for a in summary["attacks"] for c in a["checks"]}
    assert checks == {
        "verify: data": "IntegrityError",
        "preprocessing code digest (re-run of the captured steps)": "IntegrityError",
        "verify: signature": "SignatureError",
        "verify: registrant": "PolicyError",
        "verify: trusted": "PolicyError",
        "verify: model-files": "IntegrityError",
        "output digest in the receipt": "IntegrityError",
        "receipt anchored on chain by an authorised node": "IntegrityError",
        "OutputAttestor refuses an unauthorised node": "ContractRevertError",
    }

    # safe to rerun: a fresh work folder and new certificates; the story on stdout as text
    again = demo("--skip-images", "--work-dir", str(tmp_path), env=cli_env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "5/5 detected" in again.stdout
    assert again.stdout.count("✔ caught") == 9 and "NOT DETECTED" not in again.stdout
    assert "✘" not in again.stdout  # no failed check in the audit
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert len(folders) == 2 and Path(summary["work_dir"]).name in folders
    assert alpha["id"] not in again.stdout


def test_the_demo_says_what_is_missing_without_a_stack(tmp_path: Path) -> None:
    config = tmp_path / "provenance.toml"
    port = free_port()
    config.write_text(
        f'state_dir = "state"\n[chain]\nrpc_url = "http://127.0.0.1:{port}"\n', encoding="utf-8"
    )
    env = {"PATH": "/usr/bin:/bin", "PROVENANCE_CONFIG": str(config), "HOME": str(tmp_path)}
    done = demo("--skip-images", env=env)
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"error: the stack is not ready (chain: chain RPC http://127.0.0.1:{port} is unreachable"
    )
    assert done.stderr.rstrip().endswith("start it with `provenance up`")
