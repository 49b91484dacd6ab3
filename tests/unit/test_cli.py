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


def _commands() -> list[list[str]]:
    """Every command path of the CLI (groups and their commands)."""
    import typer.main

    from provenance.cli import app

    found: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        found.append(path)
        if hasattr(command, "commands"):  # a group (typer carries its own click)
            for name, sub in command.commands.items():
                walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def test_every_help_page_is_plain_and_wrapped_as_written() -> None:
    from typer.testing import CliRunner

    from provenance.cli import app

    commands = _commands()
    assert ["key", "new"] in commands and ["role", "grant"] in commands
    runner = CliRunner()
    for path in commands:
        result = runner.invoke(app, [*path, "--help"], terminal_width=100)
        assert result.exit_code == 0, (path, result.output)
        assert "<bool>" not in result.output, path  # a flag takes no value
        assert "╭" not in result.output, path  # plain click help, no boxes
    run_help = runner.invoke(app, ["run", "--help"], terminal_width=100).output
    example = (
        'provenance run --name "Model Beta" --parent 0xID:fine-tune -- python train.py --epochs 3'
    )
    assert example in run_help  # the example is one line, as written
