"""Everything that talks to Ethereum: clients, packaged artifacts, keys, deployment."""

from provenance.chain.artifacts import Artifact, load_artifact
from provenance.chain.client import connect
from provenance.chain.deploy import Deployed, Deployment, ensure_deployed
from provenance.chain.index import LineageIndex
from provenance.chain.keys import dev_account, load_keystore
from provenance.chain.registry import Registered, Registry
from provenance.chain.tx import Transactor
from provenance.chain.types import ModelRecord, Parent, Registration, Relation, Status

__all__ = [
    "Artifact",
    "Deployed",
    "Deployment",
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
