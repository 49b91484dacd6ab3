"""The one error hierarchy of provenance.

Every failure the library reports is a :class:`ProvenanceError`; third-party exceptions are
wrapped at the edge with ``raise ... from``. The CLI catches ``ProvenanceError`` in one place and
prints its message as a one-line reason.
"""

from __future__ import annotations

from typing import Any


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


class ContractRevertError(ChainError):
    """A contract call reverted with a custom error; ``error`` is its name, ``arguments`` its
    decoded arguments by name (bytes32 as ``0x`` hex, addresses checksummed)."""

    def __init__(self, contract: str, error: str, arguments: dict[str, Any]) -> None:
        self.contract = contract
        self.error = error
        self.arguments = arguments
        shown = ", ".join(f"{k}={v}" for k, v in arguments.items())
        super().__init__(f"{contract} reverted: {error}({shown})")


class KeyLoadError(ProvenanceError):
    """A signing key could not be loaded (missing keystore, wrong password, dev key off a dev chain)."""


class IntegrityError(ProvenanceError):
    """Content does not match its address: a block whose bytes do not hash to its CID, or a
    block, DAG or CAR file that is malformed, truncated or incomplete."""


class PolicyError(ProvenanceError):
    """An operation is refused by policy, e.g. putting data marked confidential into IPFS."""


class StorageError(ProvenanceError):
    """Content could not be stored or retrieved: not in the store, not pinned, not a CID, or a
    kind of content the storage layer does not handle (symlinks, sharded directories)."""


class CertificateError(ProvenanceError):
    """A certificate or one of its parts (digest text, manifest, dataset selection, row proof)
    is malformed, inconsistent with itself, or does not fit the schema."""


class SignatureError(CertificateError):
    """A certificate's EIP-712 signature does not recover to its creator (or is missing)."""


class ImageError(ProvenanceError):
    """A container image could not be built, saved, loaded or run, or cannot hold the model
    (a format without an entrypoint, packages that cannot be copied into it)."""


class CaptureError(ProvenanceError):
    """Capturing a training run failed (in strict mode; otherwise failures become warnings)."""


__all__ = [
    "CaptureError",
    "CertificateError",
    "ChainError",
    "ConfigError",
    "ContractRevertError",
    "ImageError",
    "IntegrityError",
    "KeyLoadError",
    "PolicyError",
    "PortInUseError",
    "ProvenanceError",
    "ServiceError",
    "SignatureError",
    "StorageError",
]
