"""Capturing how a model came to be: the :func:`track` API for training code (steps, data,
parameters, metrics, model), and zero-code capture of a command (:mod:`.runner`)."""

from __future__ import annotations

from provenance.capture.publish import BlobStore, ModelRegistry, Published, publish
from provenance.capture.tracker import Run, parse_parent, track

__all__ = [
    "BlobStore",
    "ModelRegistry",
    "Published",
    "Run",
    "parse_parent",
    "publish",
    "track",
]
