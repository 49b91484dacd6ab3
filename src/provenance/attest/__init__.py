"""Output attestation: records, their Merkle batches, receipts, and the SDK for inference
services.

    records = [OutputRecord(model_id, model_digest, sha256(x), sha256(y), seq, ts) for ...]
    tree = OutputTree([r.leaf for r in records])
    tree.root, tree.proof(7)
    verify_output_proof(tree.root, tree.proof(7), records[7])   # raises on a wrong proof

- :mod:`~provenance.attest.records`: the record, its leaf, the tree, the batch a node signs
  (pure);
- :mod:`~provenance.attest.receipt`: receipts, their JSON form and their offline check (pure);
- :mod:`~provenance.attest.journal`: the SQLite journal and its group commit;
- :mod:`~provenance.attest.attestor`: :class:`Attestor`, which journals, seals, signs and
  anchors, talking to the chain only through the :class:`AttestationTarget` it is given.
"""

from provenance.attest.attestor import AnchoringHealth, AttestationTarget, Attestor
from provenance.attest.journal import JOURNAL_SCHEMA, CommitStats
from provenance.attest.native import native_available
from provenance.attest.receipt import Receipt, verify_receipt_offline
from provenance.attest.records import (
    BATCH_EIP712_TYPES,
    Batch,
    OutputRecord,
    OutputTree,
    batch_typed_data,
    hash_pair,
    keccak256,
    root_from_proof,
    verify_output_proof,
)

__all__ = [
    "BATCH_EIP712_TYPES",
    "JOURNAL_SCHEMA",
    "AnchoringHealth",
    "AttestationTarget",
    "Attestor",
    "Batch",
    "CommitStats",
    "OutputRecord",
    "OutputTree",
    "Receipt",
    "batch_typed_data",
    "hash_pair",
    "keccak256",
    "native_available",
    "root_from_proof",
    "verify_output_proof",
    "verify_receipt_offline",
]
