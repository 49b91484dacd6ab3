"""The export formats: name -> (module under ``provenance.export``, one line for ``--help``).

A plain table, importing nothing, so the CLI lists the formats without loading any of them.
Each module has ``export(subject: Subject, **options) -> bytes``."""

from __future__ import annotations

FORMATS: dict[str, tuple[str, str]] = {
    "hf-card": (
        "hf_card",
        "Hugging Face model card: README.md with base_model, datasets, provenance",
    ),
}

__all__ = ["FORMATS"]
