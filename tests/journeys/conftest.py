"""Journeys: a user's own path through the CLI, each command a subprocess in a fresh folder,
against a stack that ``provenance up`` started with the README's default configuration.

The default configuration names no ``[ipfs] api``: the commands must find the stack's kubo
themselves (kubo's API is on its default port 5001). Only the chain's RPC port, the gateway
and the swarm port are moved to free ports, so a journey does not collide with the
integration suite's stack; the config file is found through ``PROVENANCE_CONFIG``, so a
command run from any folder sees the same stack, as a user's shell profile would arrange.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provenance.stack import free_port, port_is_free

pytestmark = pytest.mark.integration

PROVENANCE = Path(sys.executable).parent / "provenance"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Journey:
    """The user's shell: their config file and environment, and a way to run commands."""

    home: Path
    config_path: Path
    env: dict[str, str]

    def folder(self, name: str) -> Path:
        """A fresh working folder (as a user's project folder)."""
        path = self.home / name
        path.mkdir(parents=True, exist_ok=False)
        return path

    def run(
        self,
        *args: str,
        cwd: Path,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """``provenance ARGS`` in ``cwd``; the completed process (check its return code)."""
        return subprocess.run(
            [str(PROVENANCE), *args],
            cwd=cwd,
            env={**self.env, **(env or {})},
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ok(self, *args: str, cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
        """``provenance ARGS`` that must exit 0 (else the assertion shows stderr)."""
        done = self.run(*args, cwd=cwd, **kwargs)  # type: ignore[arg-type]
        assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-3000:])
        return done

    def python(
        self, code: str, *, cwd: Path, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """``python -c CODE`` in the user's environment (training code, the Python API)."""
        return subprocess.run(
            [sys.executable, "-c", code],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def default_config(folder: Path) -> Path:
    """The README's configuration with the defaults kept, except ports moved out of the way."""
    path = folder / "provenance.toml"
    path.write_text(
        f"""state_dir = "state"

[chain]
rpc_url = "http://127.0.0.1:{free_port()}"

[ipfs]
gateway = "http://127.0.0.1:{free_port()}"
swarm_port = {free_port()}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="session")
def journey_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    """One stack for every journey, started and stopped with the CLI."""
    if not port_is_free("127.0.0.1", 5001):
        pytest.fail("port 5001 (kubo's default API port, used by the journeys) is taken")
    home = tmp_path_factory.mktemp("journeys")
    config_path = default_config(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVENANCE_", "DOCKER_HOST"))}
    env["PROVENANCE_CONFIG"] = str(config_path)
    journey = Journey(home, config_path, env)
    journey.ok("up", cwd=home, timeout=300)
    try:
        yield journey
    finally:
        journey.run("down", cwd=home, timeout=120)


@pytest.fixture
def journey(journey_stack: Journey, tmp_path: Path) -> Journey:
    """The session's journey stack, with a fresh home folder for this test's own folders."""
    return Journey(tmp_path, journey_stack.config_path, journey_stack.env)
