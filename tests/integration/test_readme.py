"""The README's code blocks marked `<!-- readme-test: NAME -->` run against the real stack."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from provenance.stack import Stack

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def block(name: str) -> str:
    match = re.search(
        rf"<!-- readme-test: {re.escape(name)} -->\n```python\n(.*?)```", README.read_text(), re.S
    )
    assert match, f"README has no python block marked readme-test: {name}"
    return match.group(1)


def test_registry_python_example(stack: Stack, cli_env: dict[str, str], tmp_path: Path) -> None:
    code = block("registry-python")
    for run in (1, 2):  # a second run finds everything registered and revoked already
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=cli_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, (run, result.stderr)
        assert result.stdout == "True\n"


def test_capture_python_example(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", block("capture-python")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    digest, cid, model_id = result.stdout.split()
    assert digest.startswith("sha256:") and len(digest) == 7 + 64
    assert cid.startswith("bafkrei")  # raw codec, sha2-256
    assert model_id.startswith("0x") and len(model_id) == 66
