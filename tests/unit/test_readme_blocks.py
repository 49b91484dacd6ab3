"""Every console block in the README is either run by a test or marked as illustrative.

A block of commands shown with their output (```console, or ```text showing ``$ `` prompts)
is directly preceded by one of:

- ``<!-- readme-test: NAME -->``: a test runs it; a file under tests/ quotes NAME (or the
  whole marker);
- ``<!-- illustrative: WHY -->``: it shows placeholders (elided ids, example hosts) and says
  which test runs the same commands for real.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
MARK = re.compile(r"^<!-- (readme-test|illustrative): (.+?) -->$")


def blocks() -> list[tuple[int, str, str | None, list[str]]]:
    """(line number, language, the marker line before it or None, body lines) per block."""
    lines = README.read_text(encoding="utf-8").splitlines()
    found = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        marker = lines[i - 1] if i > 0 and MARK.match(lines[i - 1]) else None
        found.append((i + 1, opening.group(1), marker, lines[i + 1 : end]))
        i = end + 1
    return found


def shows_commands(language: str, body: list[str]) -> bool:
    return language == "console" or (
        language in ("text", "") and any(line.startswith("$ ") for line in body)
    )


def test_every_console_block_is_tested_or_marked_illustrative() -> None:
    unmarked = [
        f"README.md:{line} ({language or 'plain'}): {body[0] if body else ''}"
        for line, language, marker, body in blocks()
        if shows_commands(language, body) and marker is None
    ]
    assert not unmarked, "console blocks without a readme-test or illustrative marker:\n" + (
        "\n".join(unmarked)
    )


def test_every_readme_test_marker_is_run_by_a_test() -> None:
    tests = "\n".join(
        path.read_text(encoding="utf-8")
        for path in (ROOT / "tests").rglob("*.py")
        if path.name != Path(__file__).name
    )
    names = [
        MARK.match(marker).group(2)  # type: ignore[union-attr]
        for _, _, marker, _ in blocks()
        if marker is not None and marker.startswith("<!-- readme-test:")
    ]
    assert names, "the README has no tested blocks"
    missing = [
        name for name in names if f'"{name}"' not in tests and f"readme-test: {name} " not in tests
    ]
    assert not missing, f"readme-test blocks no test names: {missing}"


def test_illustrative_markers_say_which_test_covers_them() -> None:
    for line, _, marker, _ in blocks():
        if marker is not None and marker.startswith("<!-- illustrative:"):
            assert "tests/" in marker, f"README.md:{line}: say which test runs it for real"
