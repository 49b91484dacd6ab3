"""The one error hierarchy of provenance.

Every failure the library reports is a :class:`ProvenanceError`; third-party exceptions are
wrapped at the edge with ``raise ... from``. The CLI catches ``ProvenanceError`` in one place and
prints its message as a one-line reason.
"""

from __future__ import annotations


class ProvenanceError(Exception):
    """Base of every error provenance raises on purpose."""


class ConfigError(ProvenanceError):
    """The configuration (file, environment, arguments) is invalid or inconsistent."""


class ServiceError(ProvenanceError):
    """A service of the stack (chain RPC, kubo, Docker engine) is missing, unreachable or failed."""


class PortInUseError(ServiceError):
    """A port the stack needs is taken by another program."""


class ChainError(ProvenanceError):
    """A chain interaction failed: deployment, transaction, inconsistent deployment file."""


class KeyLoadError(ProvenanceError):
    """A signing key could not be loaded (missing keystore, wrong password, dev key off a dev chain)."""


__all__ = [
    "ChainError",
    "ConfigError",
    "KeyLoadError",
    "PortInUseError",
    "ProvenanceError",
    "ServiceError",
]
