"""Capturing how a model came to be: the :func:`track` API for training code (steps, data,
parameters, metrics, model), and zero-code capture of a command (:mod:`.runner`)."""

from __future__ import annotations

from provenance.capture.tracker import BlobStore, ModelRegistry, Run, parse_parent, track

__all__ = ["BlobStore", "ModelRegistry", "Run", "parse_parent", "track"]
