"""The adversarial suite runs on the real stack of the integration tests (their fixtures)."""

from tests.integration.conftest import base_image, cli_env, stack, stack_config_path

__all__ = ["base_image", "cli_env", "stack", "stack_config_path"]
