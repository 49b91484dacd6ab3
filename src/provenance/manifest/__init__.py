"""Manifests of model artifacts and datasets; row-level subsets, proofs and confidential
commitments.

Pure: no network, no chain. numpy, pandas and pyarrow are imported only when a table needs them
(the ``ml`` extra). One module per responsibility, every public name re-exported here:

- :mod:`~provenance.manifest.files`: file and directory manifests (per-file digests, a root);
- :mod:`~provenance.manifest.rows`: the canonical encoding of a table row;
- :mod:`~provenance.manifest.tables`: tables (CSV, Parquet, pandas, numpy) as a row Merkle root;
- :mod:`~provenance.manifest.subsets`: selections of a source table's rows and their roots;
- :mod:`~provenance.manifest.datasets`: dataset records, confidential commitments, recomputing;
- :mod:`~provenance.manifest.proofs`: inclusion proofs of one row.

The schema base (``Frozen``, ``Digest``, ``canonical_json``) lives in :mod:`provenance.schema`
and is re-exported here for older imports.
"""

from __future__ import annotations

from provenance.manifest.datasets import (
    DatasetOpening,
    DatasetRecord,
    Manifest,
    NotRecomputableError,
    data_commitment,
    dataset_record,
    recompute_dataset,
    salted_commitment,
    source_table,
    verify_opening,
)
from provenance.manifest.files import (
    FileEntry,
    FileManifest,
    check_extractable,
    files_at,
    manifest_of,
    manifest_of_files,
    verify_manifest,
)
from provenance.manifest.proofs import RowProof, prove_row, verify_row_proof
from provenance.manifest.rows import decode_row, encode_text_row, encode_value
from provenance.manifest.subsets import (
    FilterSelection,
    IndexSelection,
    SampleSelection,
    Selection,
    SubsetOf,
    SubsetResult,
    select,
    subset_of,
    verify_subset,
)
from provenance.manifest.tables import (
    Column,
    Table,
    TableFormat,
    TableManifest,
    first_row_is_data,
    open_table,
    table_manifest,
    verify_table,
)
from provenance.schema import Digest, Frozen, HexBytes, canonical_json, digest_of

__all__ = [
    "Column",
    "DatasetOpening",
    "DatasetRecord",
    "Digest",
    "FileEntry",
    "FileManifest",
    "FilterSelection",
    "Frozen",
    "HexBytes",
    "IndexSelection",
    "Manifest",
    "NotRecomputableError",
    "RowProof",
    "SampleSelection",
    "Selection",
    "SubsetOf",
    "SubsetResult",
    "Table",
    "TableFormat",
    "TableManifest",
    "canonical_json",
    "check_extractable",
    "data_commitment",
    "dataset_record",
    "decode_row",
    "digest_of",
    "encode_text_row",
    "encode_value",
    "files_at",
    "first_row_is_data",
    "manifest_of",
    "manifest_of_files",
    "open_table",
    "prove_row",
    "recompute_dataset",
    "salted_commitment",
    "select",
    "source_table",
    "subset_of",
    "table_manifest",
    "verify_manifest",
    "verify_opening",
    "verify_row_proof",
    "verify_subset",
    "verify_table",
]
