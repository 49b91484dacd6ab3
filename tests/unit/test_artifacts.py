"""The committed contract artifacts are exactly what a fresh compile gives."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from provenance.chain.artifacts import load_artifact

ROOT = Path(__file__).resolve().parents[2]
COMPILE = ROOT / "scripts" / "compile.py"
ARTIFACTS = ROOT / "src" / "provenance" / "chain" / "artifacts"


def run_check(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(COMPILE), "--check", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_committed_bytecode_equals_a_fresh_compile() -> None:
    result = run_check(ARTIFACTS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("artifacts identical to a fresh compile")


def test_check_notices_a_changed_artifact(tmp_path: Path) -> None:
    shutil.copytree(ARTIFACTS, tmp_path / "a")
    path = tmp_path / "a" / "ModelRegistry.json"
    data = json.loads(path.read_text())
    data["deployedBytecode"] = data["deployedBytecode"][:-2] + "00"
    path.write_text(json.dumps(data))
    result = run_check(tmp_path / "a")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "compile: ModelRegistry.json: deployedBytecode differs from a fresh compile"
    )


def test_packaged_artifact_records_the_pinned_compiler() -> None:
    artifact = load_artifact("ModelRegistry")
    assert artifact.compiler_version.startswith("0.8.37+commit.")
    meta = json.loads(json.loads((ARTIFACTS / "ModelRegistry.json").read_text())["metadata"])
    assert meta["settings"]["evmVersion"] == "cancun"
    assert meta["settings"]["optimizer"] == {"enabled": True, "runs": 20000}
    # only source unit names, never a local path, enter the metadata
    assert all(not name.startswith("/") for name in meta["sources"])
    assert "@openzeppelin/contracts/access/AccessControl.sol" in meta["sources"]
