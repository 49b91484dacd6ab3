"""A model a framework helper saved, logged with what only the helper knows: the framework that
wrote it and what the model is (shared by :mod:`.pytorch`, :mod:`.huggingface`,
:mod:`.boosting`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from provenance.certificate import EstimatorNode, Framework, ModelArtifact
from provenance.model_formats import detect_format

if TYPE_CHECKING:
    from provenance.capture.tracker import Run


def log_framework_model(
    run: Run, location: Path, used: Framework, estimator: EstimatorNode | None = None
) -> ModelArtifact:
    """Log the file or folder at ``location`` as the run's model: the format detected from its
    bytes (:func:`~provenance.model_formats.detect_format`), the framework that wrote it, and
    ``estimator`` (what the model is)."""
    detected = detect_format(location)
    logged = run.log_model(location)
    artifact = ModelArtifact(
        digest=logged.digest,
        manifest=logged.manifest,
        format=detected.format.name,
        framework=used,
        estimator=estimator,
        url=logged.url,
    )
    run.model = artifact
    return artifact


__all__ = ["log_framework_model"]
