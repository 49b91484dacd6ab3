"""The README's console blocks marked ``<!-- readme-test: console-NAME -->`` run here, in a
fresh folder against the journey stack (the README's default configuration): each ``$ ``
command (with ``\\`` continuations) runs in one bash session, in order, and must succeed; each
shown output line that holds no elision (``…``) must appear in what the commands printed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.journeys.conftest import PROVENANCE, Journey

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def console_block(name: str) -> tuple[list[str], list[str]]:
    """The commands and the shown output lines of the console block marked ``name``."""
    match = re.search(
        rf"<!-- readme-test: {re.escape(name)} -->\n```console\n(.*?)```", README.read_text(), re.S
    )
    assert match, f"README has no console block marked readme-test: {name}"
    commands: list[str] = []
    shown: list[str] = []
    continued = False
    for line in match.group(1).splitlines():
        if continued:
            commands[-1] += "\n" + line
        elif line.startswith("$ "):
            commands.append(line[2:])
        else:
            shown.append(line)
            continue
        continued = line.endswith("\\")
    return commands, shown


def run_console(name: str, journey: Journey, cwd: Path) -> str:
    commands, shown = console_block(name)
    script = "set -euo pipefail\n" + f'provenance() {{ "{PROVENANCE}" "$@"; }}\n'
    script += "\n".join(f"{command}\n" for command in commands)
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=journey.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (name, done.stdout[-3000:], done.stderr[-3000:])
    printed = done.stdout + done.stderr
    for line in shown:
        expected = line.split("  #")[0].strip()
        if expected and "…" not in expected:
            assert expected in printed, (name, expected, printed[-3000:])
    return printed


def test_the_readme_ipfs_console_block(journey: Journey) -> None:
    folder = journey.folder("ipfs")
    printed = run_console("console-ipfs", journey, folder)
    assert (folder / "restored" / "weights.bin").read_text() == "weights\n"
    assert (folder / "model.car").stat().st_size > 0
    lines = printed.split()
    cid = lines[0]  # --only-hash prints the CID that add then stores and import pins
    assert cid.startswith("bafy") and lines.count(cid) == 2, printed
