"""Capturing how a model came to be: the :func:`track` API for training code (steps, data,
parameters, metrics, model), zero-code capture of a command (:mod:`.runner`), and helpers for
the frameworks people train with: :mod:`.pytorch` (:func:`watch`, :func:`log_module`),
:mod:`.boosting` (:func:`log_booster`) and :mod:`.huggingface` (:class:`ProvenanceCallback`,
imported on first use: it imports transformers). None of them imports its framework until
called."""

from __future__ import annotations

from typing import Any

from provenance.capture.boosting import log_booster
from provenance.capture.publish import BlobStore, ModelRegistry, Published, publish
from provenance.capture.pytorch import log_module, watch
from provenance.capture.tracker import Run, parse_parent, track


def __getattr__(name: str) -> Any:
    if name == "ProvenanceCallback":
        from provenance.capture.huggingface import ProvenanceCallback

        return ProvenanceCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BlobStore",
    "ModelRegistry",
    "ProvenanceCallback",
    "Published",
    "Run",
    "log_booster",
    "log_module",
    "parse_parent",
    "publish",
    "track",
    "watch",
]
