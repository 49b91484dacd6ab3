"""Certificates in the ecosystem's formats, and theirs in ours.

One :class:`~provenance.export.subject.Subject` (the certificate, and what is known about it
on chain) goes to every exporter; each format lives in its own module, imported only when
asked for, and returns the bytes of its document::

    subject = Subject.of(load_certificate(Path("certificate.json")))
    document = export(subject, "cyclonedx")

``provenance export ID|CERT --format FORMAT [-o FILE]`` is the command; :data:`FORMATS`
(in :mod:`provenance.export.formats`) lists what exists. Each output is accepted by that
ecosystem's own library, schema or CLI in the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any

from provenance.errors import ConfigError
from provenance.export.formats import FORMATS

if TYPE_CHECKING:
    from provenance.export.subject import Subject


def exporter(name: str) -> Callable[..., bytes]:
    """The export function of format ``name`` (ConfigError naming the formats otherwise)."""
    if name not in FORMATS:
        raise ConfigError(
            f"unknown export format {name!r}; the formats are: {', '.join(sorted(FORMATS))}"
        )
    module = import_module(f"provenance.export.{FORMATS[name][0]}")
    function: Callable[..., bytes] = module.export
    return function


def export(subject: Subject, name: str, **options: Any) -> bytes:
    """``subject`` as a document of format ``name`` (its bytes)."""
    return exporter(name)(subject, **options)


def __getattr__(name: str) -> Any:
    if name == "Subject":
        from provenance.export.subject import Subject

        return Subject
    raise AttributeError(f"module 'provenance.export' has no attribute {name!r}")


__all__ = ["FORMATS", "Subject", "export", "exporter"]
