"""Everything that talks to Ethereum: clients, packaged artifacts, keys, deployment."""

from provenance.chain.artifacts import Artifact, load_artifact
from provenance.chain.client import connect
from provenance.chain.deploy import Deployed, Deployment, ensure_deployed
from provenance.chain.keys import dev_account, load_keystore

__all__ = [
    "Artifact",
    "Deployed",
    "Deployment",
    "connect",
    "dev_account",
    "ensure_deployed",
    "load_artifact",
    "load_keystore",
]
