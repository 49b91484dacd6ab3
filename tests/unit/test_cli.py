from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROVENANCE = Path(sys.executable).parent / "provenance"


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROVENANCE), *args], cwd=cwd, env=env or {"PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_version(tmp_path: Path) -> None:
    result = run("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == "provenance 0.1.0"


def test_a_bad_config_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "provenance.toml").write_text("[chain]\nchain_id = -1\n")
    result = run("status", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        f"error: config file {tmp_path / 'provenance.toml'}: chain.chain_id: Input should be "
        "greater than 0\n"
    )


def test_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run("frobnicate", cwd=tmp_path)
    assert result.returncode == 2
    assert "No such command 'frobnicate'" in result.stderr
