"""The keyword forms of :class:`~provenance.verify.verifier.Verifier` for callers without a
:class:`~provenance.verify.policy.Policy` object: the registry client's chain and address are
the trust roots (with ``trusted_registrants`` and an optional ``attestor``), and the raising
forms, which return None or raise the first failed required check's error.

    report_for_model(model_id, registry=registry, storage=kubo, trusted_registrants=[alice])
    verify_model(model_id, registry=registry, storage=kubo)   # None, or raises
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provenance.certificate import SignedCertificate
from provenance.verify.context import RegistryView
from provenance.verify.policy import DEFAULT_FETCH_TIMEOUT, Policy
from provenance.verify.report import Report
from provenance.verify.verifier import Verifier

if TYPE_CHECKING:
    from provenance.attest import Receipt
    from provenance.chain.attestor import AttestorContract
    from provenance.chain.index import LineageIndex
    from provenance.images import DockerEngine
    from provenance.storage.protocol import Storage


def _policy(
    registry: RegistryView,
    *,
    attestor: AttestorContract | None = None,
    trusted_registrants: Iterable[str] | None = None,
    data_sources: Mapping[str, Path] | None = None,
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
    fetch_data: bool = True,
) -> Policy:
    w3 = getattr(registry, "w3", None)
    return Policy(
        chain_id=None if w3 is None else int(w3.eth.chain_id),
        registry=registry.address,
        attestor=None if attestor is None else attestor.address,
        registrants=None if trusted_registrants is None else frozenset(trusted_registrants),
        sources=tuple(sorted((data_sources or {}).items())),
        fetch_timeout=fetch_timeout,
        fetch_data=fetch_data,
    )


def report_for_model(
    model_id: bytes,
    *,
    registry: RegistryView,
    storage: Storage,
    trusted_registrants: Iterable[str] | None = None,
    data_sources: Mapping[str, Path] | None = None,
    envelope: SignedCertificate | None = None,
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
    fetch_data: bool = True,
) -> Report:
    """:meth:`Verifier.model`, trusting the registry client's chain and address."""
    policy = _policy(
        registry,
        trusted_registrants=trusted_registrants,
        data_sources=data_sources,
        fetch_timeout=fetch_timeout,
        fetch_data=fetch_data,
    )
    return Verifier(policy, registry=registry, storage=storage).model(model_id, envelope=envelope)


def report_for_target(
    target: str,
    *,
    registry: RegistryView,
    storage: Storage,
    engine: DockerEngine | None = None,
    attestor: AttestorContract | None = None,
    trusted_registrants: Iterable[str] | None = None,
    data_sources: Mapping[str, Path] | None = None,
    index: LineageIndex | None = None,
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
    fetch_data: bool = True,
) -> Report:
    """:meth:`Verifier.target`, trusting the registry client's chain and address and the
    given ``attestor`` (none: every on-chain receipt check fails)."""
    policy = _policy(
        registry,
        attestor=attestor,
        trusted_registrants=trusted_registrants,
        data_sources=data_sources,
        fetch_timeout=fetch_timeout,
        fetch_data=fetch_data,
    )
    verifier = Verifier(
        policy, registry=registry, storage=storage, engine=engine, attestor=attestor, index=index
    )
    return verifier.target(target)


def lineage_report(
    model_id: bytes,
    *,
    registry: RegistryView,
    storage: Storage,
    trusted_registrants: Iterable[str] | None = None,
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
) -> Report:
    """:meth:`Verifier.lineage`, trusting the registry client's chain and address."""
    policy = _policy(registry, trusted_registrants=trusted_registrants, fetch_timeout=fetch_timeout)
    return Verifier(policy, registry=registry, storage=storage).lineage(model_id)


# -- raising forms ------------------------------------------------------------------------


def verify_model(
    model_id: bytes,
    *,
    registry: RegistryView,
    storage: Storage,
    trusted_registrants: Iterable[str] | None = None,
    data_sources: Mapping[str, Path] | None = None,
    envelope: SignedCertificate | None = None,
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
) -> None:
    """Raise the error of the first failed required check of :func:`report_for_model`."""
    report_for_model(
        model_id,
        registry=registry,
        storage=storage,
        trusted_registrants=trusted_registrants,
        data_sources=data_sources,
        envelope=envelope,
        fetch_timeout=fetch_timeout,
    ).raise_for_failure()


def verify_model_files(
    path: Path,
    *,
    registry: RegistryView,
    storage: Storage,
    trusted_registrants: Iterable[str] | None = None,
    data_sources: Mapping[str, Path] | None = None,
    index: LineageIndex | None = None,
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
) -> None:
    """Re-hash model files, find their registration and check it; raise the first failure."""
    policy = _policy(
        registry,
        trusted_registrants=trusted_registrants,
        data_sources=data_sources,
        fetch_timeout=fetch_timeout,
    )
    Verifier(policy, registry=registry, storage=storage, index=index).files(
        path
    ).raise_for_failure()


def verify_lineage(
    model_id: bytes,
    *,
    registry: RegistryView,
    storage: Storage,
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
) -> None:
    """Raise PolicyError when the model or an ancestor is revoked (tainted), or the error of
    another failed lineage check (an ancestor's certificate missing or altered)."""
    lineage_report(
        model_id, registry=registry, storage=storage, fetch_timeout=fetch_timeout
    ).raise_for_failure()


def verify_receipt(
    receipt: Path | str | Receipt | Mapping[str, Any],
    *,
    policy: Policy,
    registry: RegistryView,
    storage: Storage,
    attestor: AttestorContract | None = None,
    input: bytes | None = None,
    output: bytes | None = None,
) -> None:
    """Raise the error of the first failed required check of :meth:`Verifier.receipt`."""
    Verifier(policy, registry=registry, storage=storage, attestor=attestor).receipt(
        receipt, input=input, output=output
    ).raise_for_failure()


__all__ = [
    "lineage_report",
    "report_for_model",
    "report_for_target",
    "verify_lineage",
    "verify_model",
    "verify_model_files",
    "verify_receipt",
]
