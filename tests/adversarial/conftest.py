"""Attacks beyond the demo run on the same real stack as the integration tests: the stack
fixtures (anvil, kubo, dockerd on loopback ports) are the integration suite's."""

from __future__ import annotations

from tests.integration.conftest import cli_env, stack, stack_config_path

__all__ = ["cli_env", "stack", "stack_config_path"]
