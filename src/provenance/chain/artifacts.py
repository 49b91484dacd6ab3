"""The compiled contracts shipped with the package (written by scripts/compile.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from provenance.errors import ChainError


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    compiler_version: str


@cache
def load_artifact(name: str) -> Artifact:
    """The packaged ABI and bytecode of contract ``name``."""
    try:
        text = resources.files(__package__).joinpath("artifacts", f"{name}.json").read_text("utf-8")
    except FileNotFoundError as exc:
        raise ChainError(f"no packaged artifact for contract {name!r}") from exc
    data = json.loads(text)
    return Artifact(
        name=data["contractName"],
        abi=data["abi"],
        bytecode=data["bytecode"],
        deployed_bytecode=data["deployedBytecode"],
        compiler_version=data["compiler"]["version"],
    )
