"""The export formats: name -> (module under ``provenance.export``, one line for ``--help``).

A plain table, importing nothing, so the CLI lists the formats without loading any of them.
Each module has ``export(subject: Subject, **options) -> bytes``."""

from __future__ import annotations

FORMATS: dict[str, tuple[str, str]] = {
    "slsa": ("slsa", "in-toto Statement v1, SLSA provenance v1 (DSSE-signed with --signing-key)"),
    "spdx": ("spdx", "SPDX 3.0.1 JSON-LD, AI and Dataset profiles (AIPackage, DatasetPackages)"),
    "cyclonedx": (
        "cyclonedx",
        "CycloneDX 1.7 ML-BOM (JSON): model card, pedigree, datasets, formulation",
    ),
    "hf-card": (
        "hf_card",
        "Hugging Face model card: README.md with base_model, datasets, provenance",
    ),
    "oms": ("oms", "OpenSSF model signing v1.0 bundle of --model-files (needs --signing-key)"),
}

__all__ = ["FORMATS"]
