"""``provenance.cli.main`` run in the test's own process: the same parsing, errors and exit
codes as the console script, without its start-up (for tests that call the CLI many times)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

Main = Callable[..., subprocess.CompletedProcess[str]]


def in_process_main(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *,
    cleared: tuple[str, ...] = ("PROVENANCE_",),
) -> Main:
    """A runner ``call(*args, cwd=..., env={...})``: environment variables starting with one
    of ``cleared`` are removed, ``env`` is set, and the working directory is ``cwd``."""
    from provenance.cli import main as entry

    def call(
        *args: str, cwd: Path, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        monkeypatch.chdir(cwd)
        for key in [k for k in os.environ if k.startswith(cleared)]:
            monkeypatch.delenv(key)
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(sys, "argv", ["provenance", *args])
        capsys.readouterr()
        code = 0
        try:
            entry()
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return call
