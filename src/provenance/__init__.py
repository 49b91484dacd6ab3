"""provenance: verifiable birth certificates and family trees for ML models.

The public API is listed in ``__all__``; names load lazily, so ``import provenance`` stays cheap
(web3 is imported only when a chain name is first used).

    import provenance
    with provenance.connect() as session:      # the composition root (provenance.session)
        session.registry_for().register(...)
    from provenance import Registry, Registration, Parent, Transactor, dev_account
    from provenance import track, Certificate, load_certificate, manifest_of
    from provenance import Attestor, report_for_model, build_family_tree
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
    "Parent": "provenance.registration",
    "Registration": "provenance.registration",
    "Registry": "provenance.chain",
    "Relation": "provenance.registration",
    "Status": "provenance.chain",
    "Transactor": "provenance.chain",
    "connect": "provenance.session",
    "Session": "provenance.session",
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
    "PolicyError": "provenance.errors",
    "StorageError": "provenance.errors",
    "Attestor": "provenance.attest",
    "OutputRecord": "provenance.attest",
    "Receipt": "provenance.attest",
    "verify_receipt_offline": "provenance.attest",
    "AttestorContract": "provenance.chain.attestor",
    "verify_receipt_on_chain": "provenance.chain.attestor",
    "Check": "provenance.verify.report",
    "CheckName": "provenance.verify.report",
    "CheckStatus": "provenance.verify.report",
    "Report": "provenance.verify.report",
    "Policy": "provenance.verify.policy",
    "policy_from_config": "provenance.verify.policy",
    "Verifier": "provenance.verify.verifier",
    "report_for_model": "provenance.verify.shortcuts",
    "report_for_target": "provenance.verify.shortcuts",
    "verify_lineage": "provenance.verify.shortcuts",
    "verify_model": "provenance.verify.shortcuts",
    "verify_model_files": "provenance.verify.shortcuts",
    "verify_receipt": "provenance.verify.shortcuts",
    "FamilyTree": "provenance.lineage",
    "build_family_tree": "provenance.lineage",
    "impact": "provenance.lineage",
    "render_dot": "provenance.lineage",
    "render_html": "provenance.lineage",
    "render_mermaid": "provenance.lineage",
    "render_svg": "provenance.lineage",
    "Kubo": "provenance.storage",
    "LocalStore": "provenance.storage",
    "open_storage": "provenance.storage",
}

__all__ = [
    "Attestor",
    "AttestorContract",
    "CaptureError",
    "Certificate",
    "CertificateError",
    "ChainError",
    "Check",
    "CheckName",
    "CheckStatus",
    "Config",
    "ConfigError",
    "ContractRevertError",
    "Deployment",
    "DockerEngine",
    "FamilyTree",
    "FileManifest",
    "ImageError",
    "ImageRecord",
    "IntegrityError",
    "Kubo",
    "LineageIndex",
    "LocalStore",
    "ModelRecord",
    "OutputRecord",
    "Parent",
    "Policy",
    "PolicyError",
    "ProvenanceError",
    "Receipt",
    "Registration",
    "Registry",
    "Relation",
    "Report",
    "Run",
    "ServiceError",
    "Session",
    "SignatureError",
    "SignedCertificate",
    "Stack",
    "Status",
    "StorageError",
    "TableManifest",
    "Transactor",
    "Verifier",
    "__version__",
    "attach_image",
    "build_family_tree",
    "build_model_image",
    "connect",
    "dev_account",
    "ensure_deployed",
    "impact",
    "load_certificate",
    "load_config",
    "load_keystore",
    "manifest_of",
    "open_storage",
    "open_table",
    "policy_from_config",
    "pull_from_ipfs",
    "push_to_ipfs",
    "render_dot",
    "render_html",
    "render_mermaid",
    "render_svg",
    "report_for_model",
    "report_for_target",
    "run_prediction",
    "sign_certificate",
    "track",
    "verify_certificate_signature",
    "verify_lineage",
    "verify_model",
    "verify_model_files",
    "verify_receipt",
    "verify_receipt_offline",
    "verify_receipt_on_chain",
]

if TYPE_CHECKING:
    from provenance.attest import Attestor, OutputRecord, Receipt, verify_receipt_offline
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
        Registry,
        Status,
        Transactor,
        dev_account,
        ensure_deployed,
        load_keystore,
    )
    from provenance.chain.attestor import AttestorContract, verify_receipt_on_chain
    from provenance.config import Config, load_config
    from provenance.errors import (
        CaptureError,
        CertificateError,
        ChainError,
        ConfigError,
        ContractRevertError,
        ImageError,
        IntegrityError,
        PolicyError,
        ProvenanceError,
        ServiceError,
        SignatureError,
        StorageError,
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
    from provenance.lineage import (
        FamilyTree,
        build_family_tree,
        impact,
        render_dot,
        render_html,
        render_mermaid,
        render_svg,
    )
    from provenance.manifest import FileManifest, TableManifest, manifest_of, open_table
    from provenance.registration import Parent, Registration, Relation
    from provenance.session import Session, connect
    from provenance.stack import Stack
    from provenance.storage import Kubo, LocalStore, open_storage
    from provenance.verify.policy import Policy, policy_from_config
    from provenance.verify.report import Check, CheckName, CheckStatus, Report
    from provenance.verify.shortcuts import (
        report_for_model,
        report_for_target,
        verify_lineage,
        verify_model,
        verify_model_files,
        verify_receipt,
    )
    from provenance.verify.verifier import Verifier


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'provenance' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
