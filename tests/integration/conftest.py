"""The real local stack for integration tests: anvil, kubo and a Docker engine on free
loopback ports, in a temporary state dir, started through the same Stack code as
`provenance up` and stopped afterwards."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from provenance.config import Config, load_config
from provenance.stack import Stack, Tools, free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def tools() -> Tools:
    return Tools(
        search_path=(Path(sys.executable).parent, ROOT / ".venv" / "bin", ROOT / ".tools" / "bin"),
        path_env=os.environ.get("PATH"),
    )


def write_stack_config(folder: Path) -> Path:
    """A TOML config for a throwaway stack on free ports; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "provenance.toml"
    path.write_text(
        f"""state_dir = "state"

[chain]
rpc_url = "http://127.0.0.1:{free_port()}"
chain_id = 31337
state_interval = 1

[ipfs]
api = "http://127.0.0.1:{free_port()}"
gateway = "http://127.0.0.1:{free_port()}"
swarm_port = {free_port()}
""",
        encoding="utf-8",
    )
    return path


def config_at(path: Path, **env: str) -> Config:
    return load_config(env, cwd=path.parent, explicit=path)


@pytest.fixture(scope="session")
def stack_config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_stack_config(tmp_path_factory.mktemp("stack"))


@pytest.fixture(scope="session")
def stack(stack_config_path: Path) -> Iterator[Stack]:
    """One running stack for the whole session."""
    s = Stack(config_at(stack_config_path), tools())
    s.up()
    try:
        yield s
    finally:
        s.down()


@pytest.fixture
def cli_env(stack_config_path: Path) -> dict[str, str]:
    """Environment for running the CLI against the session stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVENANCE_", "DOCKER_HOST"))}
    env["PROVENANCE_CONFIG"] = str(stack_config_path)
    return env


BASE_ROOTFS = ROOT / ".tools" / "images" / "base-bookworm.tar"
"""The base image's root file system, built from Debian packages by scripts/setup.sh."""


@pytest.fixture(scope="session")
def base_image(stack: Stack) -> str:
    """The base of model images, loaded into the stack's engine from the cached tarball (a
    few seconds; building the tarball is setup's job). Its image id."""
    from provenance.images import DockerEngine, ensure_base_image

    with DockerEngine(stack.docker_host()) as engine:
        return ensure_base_image(engine, BASE_ROOTFS).id
