"""The export formats: name -> (module under ``provenance.export``, one line for ``--help``).

A plain table, importing nothing, so the CLI lists the formats without loading any of them.
Each module has ``export(subject: Subject, **options) -> bytes``."""

from __future__ import annotations

FORMATS: dict[str, tuple[str, str]] = {
    "oms": ("oms", "OpenSSF model signing v1.0 bundle of --model-files (needs --signing-key)"),
}

__all__ = ["FORMATS"]
