"""provenance: verifiable birth certificates and family trees for ML models.

The public API is listed in ``__all__``; names load lazily, so ``import provenance`` stays cheap
(web3 is imported only when a chain name is first used).

    from provenance import Registry, Registration, Parent, Transactor, connect, dev_account
    from provenance import track, Certificate, load_certificate, manifest_of
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "ChainError": "provenance.errors",
    "ConfigError": "provenance.errors",
    "ContractRevertError": "provenance.errors",
    "ProvenanceError": "provenance.errors",
    "ServiceError": "provenance.errors",
    "Config": "provenance.config",
    "load_config": "provenance.config",
    "Stack": "provenance.stack",
    "Deployment": "provenance.chain",
    "LineageIndex": "provenance.chain",
    "ModelRecord": "provenance.chain",
    "Parent": "provenance.chain",
    "Registration": "provenance.chain",
    "Registry": "provenance.chain",
    "Relation": "provenance.chain",
    "Status": "provenance.chain",
    "Transactor": "provenance.chain",
    "connect": "provenance.chain",
    "dev_account": "provenance.chain",
    "ensure_deployed": "provenance.chain",
    "load_keystore": "provenance.chain",
    "CaptureError": "provenance.errors",
    "CertificateError": "provenance.errors",
    "IntegrityError": "provenance.errors",
    "SignatureError": "provenance.errors",
    "Certificate": "provenance.certificate",
    "SignedCertificate": "provenance.certificate",
    "load_certificate": "provenance.certificate",
    "sign_certificate": "provenance.certificate",
    "verify_certificate_signature": "provenance.certificate",
    "FileManifest": "provenance.manifest",
    "TableManifest": "provenance.manifest",
    "manifest_of": "provenance.manifest",
    "open_table": "provenance.manifest",
    "Run": "provenance.capture",
    "track": "provenance.capture",
    "ImageError": "provenance.errors",
    "DockerEngine": "provenance.images",
    "ImageRecord": "provenance.images",
    "attach_image": "provenance.images",
    "build_model_image": "provenance.images",
    "pull_from_ipfs": "provenance.images",
    "push_to_ipfs": "provenance.images",
    "run_prediction": "provenance.images",
}

__all__ = [
    "CaptureError",
    "Certificate",
    "CertificateError",
    "ChainError",
    "Config",
    "ConfigError",
    "ContractRevertError",
    "Deployment",
    "DockerEngine",
    "FileManifest",
    "ImageError",
    "ImageRecord",
    "IntegrityError",
    "LineageIndex",
    "ModelRecord",
    "Parent",
    "ProvenanceError",
    "Registration",
    "Registry",
    "Relation",
    "Run",
    "ServiceError",
    "SignatureError",
    "SignedCertificate",
    "Stack",
    "Status",
    "TableManifest",
    "Transactor",
    "__version__",
    "attach_image",
    "build_model_image",
    "connect",
    "dev_account",
    "ensure_deployed",
    "load_certificate",
    "load_config",
    "load_keystore",
    "manifest_of",
    "open_table",
    "pull_from_ipfs",
    "push_to_ipfs",
    "run_prediction",
    "sign_certificate",
    "track",
    "verify_certificate_signature",
]

if TYPE_CHECKING:
    from provenance.capture import Run, track
    from provenance.certificate import (
        Certificate,
        SignedCertificate,
        load_certificate,
        sign_certificate,
        verify_certificate_signature,
    )
    from provenance.chain import (
        Deployment,
        LineageIndex,
        ModelRecord,
        Parent,
        Registration,
        Registry,
        Relation,
        Status,
        Transactor,
        connect,
        dev_account,
        ensure_deployed,
        load_keystore,
    )
    from provenance.config import Config, load_config
    from provenance.errors import (
        CaptureError,
        CertificateError,
        ChainError,
        ConfigError,
        ContractRevertError,
        ImageError,
        IntegrityError,
        ProvenanceError,
        ServiceError,
        SignatureError,
    )
    from provenance.images import (
        DockerEngine,
        ImageRecord,
        attach_image,
        build_model_image,
        pull_from_ipfs,
        push_to_ipfs,
        run_prediction,
    )
    from provenance.manifest import FileManifest, TableManifest, manifest_of, open_table
    from provenance.stack import Stack


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'provenance' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
