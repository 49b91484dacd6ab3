"""Everything that talks to Ethereum: clients, packaged artifacts, keys, deployment, registry.

Names load lazily, so importing the package costs nothing until a name is used. ``Parent``,
``Registration`` and ``Relation`` are re-exported from the pure :mod:`provenance.registration`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_LAZY = {
    "Artifact": "provenance.chain.artifacts",
    "load_artifact": "provenance.chain.artifacts",
    "connect": "provenance.chain.client",
    "Deployed": "provenance.chain.deploy",
    "Deployment": "provenance.chain.deploy",
    "ensure_deployed": "provenance.chain.deploy",
    "ImageBinding": "provenance.chain.types",
    "LineageIndex": "provenance.chain.index",
    "dev_account": "provenance.chain.keys",
    "load_keystore": "provenance.chain.keys",
    "Registered": "provenance.chain.registry",
    "Registry": "provenance.chain.registry",
    "Transactor": "provenance.chain.tx",
    "ModelRecord": "provenance.chain.types",
    "Parent": "provenance.registration",
    "Registration": "provenance.registration",
    "Relation": "provenance.registration",
    "Status": "provenance.chain.types",
}

__all__ = [
    "Artifact",
    "Deployed",
    "Deployment",
    "ImageBinding",
    "LineageIndex",
    "ModelRecord",
    "Parent",
    "Registered",
    "Registration",
    "Registry",
    "Relation",
    "Status",
    "Transactor",
    "connect",
    "dev_account",
    "ensure_deployed",
    "load_artifact",
    "load_keystore",
]

if TYPE_CHECKING:
    from provenance.chain.artifacts import Artifact, load_artifact
    from provenance.chain.client import connect
    from provenance.chain.deploy import Deployed, Deployment, ensure_deployed
    from provenance.chain.index import LineageIndex
    from provenance.chain.keys import dev_account, load_keystore
    from provenance.chain.registry import Registered, Registry
    from provenance.chain.tx import Transactor
    from provenance.chain.types import ImageBinding, ModelRecord, Status
    from provenance.registration import Parent, Registration, Relation


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'provenance.chain' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
