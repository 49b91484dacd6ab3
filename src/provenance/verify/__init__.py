"""End-to-end verification: one report of checks for a model, its files, an image, a
certificate file or an output receipt, from the chain and IPFS, against explicit trust roots.

    policy = policy_from_config(config, trust=[alice])      # chain id, contracts, registrants
    verifier = Verifier(policy, registry=registry, storage=kubo)
    report = verifier.target("runs/alpha/model.pkl")
    report.ok, report.first_failure(), report.to_json()

Modules: :mod:`~provenance.verify.report` (Check, Report, CheckName),
:mod:`~provenance.verify.policy` (the trust roots), :mod:`~provenance.verify.verifier`,
:mod:`~provenance.verify.shortcuts` (keyword and raising forms), and one
module per kind of check: registration, certificate, data, lineage, files, image, receipt.
Each failed required check carries the error class :meth:`Report.raise_for_failure` (and the
``verify_*`` functions) raise: IntegrityError for digest mismatches, SignatureError,
PolicyError for revoked, tainted or untrusted models and receipts outside the trust roots,
StorageError for data missing from IPFS.
"""

from provenance.manifest import recompute_dataset
from provenance.verify.context import RegistryView, fetch_bytes
from provenance.verify.policy import DEFAULT_FETCH_TIMEOUT, Policy, policy_from_config
from provenance.verify.registration import Anchor, anchor_of, find_models
from provenance.verify.report import Check, CheckName, CheckStatus, Report, generation
from provenance.verify.shortcuts import (
    lineage_report,
    report_for_model,
    report_for_target,
    verify_lineage,
    verify_model,
    verify_model_files,
    verify_receipt,
)
from provenance.verify.verifier import Verifier, as_id

__all__ = [
    "DEFAULT_FETCH_TIMEOUT",
    "Anchor",
    "Check",
    "CheckName",
    "CheckStatus",
    "Policy",
    "RegistryView",
    "Report",
    "Verifier",
    "anchor_of",
    "as_id",
    "fetch_bytes",
    "find_models",
    "generation",
    "lineage_report",
    "policy_from_config",
    "recompute_dataset",
    "report_for_model",
    "report_for_target",
    "verify_lineage",
    "verify_model",
    "verify_model_files",
    "verify_receipt",
]
