"""The adversarial suite runs on the real stack of the integration tests: the stack fixtures
(anvil, kubo, dockerd on loopback ports, the base image) are the integration suite's."""

from __future__ import annotations

from tests.integration.conftest import base_image, cli_env, stack, stack_config_path

__all__ = ["base_image", "cli_env", "stack", "stack_config_path"]
