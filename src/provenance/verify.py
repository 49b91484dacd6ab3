"""End-to-end verification: one report of checks for a model, its files, an image, a
certificate file or an output receipt, from the chain and IPFS.

    report = report_for_target("runs/alpha/model.pkl", registry=registry, storage=kubo)
    report.ok                      # no required check failed
    report.first_failure()         # the first failed required check, or None
    report.to_json()               # {"target", "kind", "model_id", "ok", "checks": [...]}
    report_for_model(model_id, registry=registry, storage=kubo, trusted_registrants=[alice])
    verify_model(model_id, registry=registry, storage=kubo)   # None, or raises the first failure

What is checked for a model (each a :class:`Check`):

- ``registered``: the model is registered; its ModelRegistered event gives the registrant, the
  certificate digest, the model digest and the data commitment;
- ``status``: it is not revoked;
- ``certificate-fetched``: the certificate body comes from IPFS by the digest on chain (the body
  is one raw block, CID = :func:`~provenance.certificate.raw_block_cid` of the digest), within a
  short timeout: data missing from IPFS is a failed check, never a hang;
- ``certificate-digest``: its bytes hash to the digest on chain;
- ``certificate-schema``: they are a schema-v1 body in canonical form;
- ``model-digest``, ``data-commitment``, ``parents``: the certificate states what the chain
  anchored (the contract cannot check this: anyone can register a genuine certificate's digest
  with another model digest);
- ``signature``: the creator's EIP-712 signature, when the signed envelope is at hand (a
  certificate file, ``certificate.json`` beside model files, or ``envelope=``). The chain anchors
  the body's digest only, not the envelope, so from a model id alone the envelope cannot be
  found: then this is a warning, and the registration, a transaction (or delegated EIP-712
  signature) of the registrant, stands for the creator through the ``registrant`` check;
- ``registrant``: the on-chain registrant is the certificate's creator;
- ``trusted``: the registrant is vouched for: in ``trusted_registrants`` when given; else, in an
  allowlisted registry, holds REGISTRANT_ROLE; in an open registry without a trust list this is
  a warning;
- ``data``: each dataset recomputed from a source (``data_sources`` by dataset name, or the
  dataset's ``ipfs://`` URL for published data): files, table rows, or the subset of a source;
  confidential datasets are skipped with the reason;
- ``lineage``: no ancestor is revoked (else the model is tainted), then for every ancestor,
  nearest first, lighter checks: registered, certificate, creator, status.

Each failed required check carries the error class that :meth:`Report.raise_for_failure` (and
the ``verify_*`` functions) raise: IntegrityError for digest mismatches, SignatureError,
PolicyError for revoked, tainted or untrusted models, StorageError for data missing from IPFS.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from eth_utils.address import is_address, to_checksum_address

from provenance.certificate import (
    MAX_BODY_SIZE,
    Certificate,
    SignedCertificate,
    body_of,
    parse_certificate,
    raw_block_cid,
    verify_certificate_signature,
)
from provenance.chain.types import Parent, Status
from provenance.errors import (
    CertificateError,
    ChainError,
    ConfigError,
    ImageError,
    IntegrityError,
    PolicyError,
    ProvenanceError,
    SignatureError,
    StorageError,
)
from provenance.hashing import format_digest
from provenance.manifest import (
    DatasetRecord,
    FileManifest,
    NotRecomputableError,
    manifest_of,
    recompute_dataset,
    verify_manifest,
)
from provenance.untrusted import UntrustedInputError, loads_json

if TYPE_CHECKING:
    from provenance.chain.attestor import AttestorContract
    from provenance.chain.index import LineageIndex
    from provenance.chain.registry import RegistryEvent
    from provenance.chain.types import ModelRecord
    from provenance.images import DockerEngine
    from provenance.storage.protocol import Storage

T = TypeVar("T")

Kind = Literal["model-id", "model-files", "image", "certificate", "receipt"]

DEFAULT_FETCH_TIMEOUT = 10.0
"""Seconds to wait for content the IPFS node does not hold (it may be fetched from peers)."""

CERTIFICATE_FILE = "certificate.json"
"""The signed certificate ``provenance.track`` writes beside the model (its output_dir)."""


# -- values -----------------------------------------------------------------------------------


class CheckStatus(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    """One verified fact: what it is about (``subject``), the outcome, and one line of why.

    A failed ``required`` check makes the report fail; ``error`` is the error class
    :meth:`Report.raise_for_failure` raises for it."""

    name: str
    status: CheckStatus
    detail: str
    subject: str
    required: bool = True
    error: type[ProvenanceError] | None = field(default=None, compare=False, repr=False)

    @property
    def failed(self) -> bool:
        """A failure that counts: a required check that failed."""
        return self.required and self.status is CheckStatus.FAIL

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": str(self.status),
            "subject": self.subject,
            "detail": self.detail,
            "required": self.required,
            "error": self.error.__name__ if self.error is not None and self.failed else None,
        }


@dataclass(frozen=True)
class Report:
    """The checks of one target; ``ok`` when no required check failed."""

    target: str
    kind: Kind
    model_id: bytes | None
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return not any(c.failed for c in self.checks)

    def failures(self) -> tuple[Check, ...]:
        """The required checks that failed, in report order."""
        return tuple(c for c in self.checks if c.failed)

    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if c.failed), None)

    def check(self, name: str, subject: str | None = None) -> Check | None:
        """The first check called ``name`` (about ``subject``, when given)."""
        for c in self.checks:
            if c.name == name and (subject is None or c.subject == subject):
                return c
        return None

    def raise_for_failure(self) -> None:
        """Raise the error of the first failed required check (nothing when ``ok``)."""
        failure = self.first_failure()
        if failure is None:
            return
        error = failure.error or ProvenanceError
        raise error(f"{failure.subject}: {failure.detail}")

    def to_json(self) -> dict[str, Any]:
        failure = self.first_failure()
        return {
            "target": self.target,
            "kind": self.kind,
            "model_id": None if self.model_id is None else "0x" + self.model_id.hex(),
            "ok": self.ok,
            "first_failure": None if failure is None else failure.to_json(),
            "checks": [c.to_json() for c in self.checks],
        }


# -- what verification needs of the chain and of IPFS ------------------------------------------


class RegistryView(Protocol):
    """The reads verification makes (:class:`provenance.chain.registry.Registry` has them)."""

    @property
    def address(self) -> str: ...

    def status(self, model_id: bytes) -> Status: ...

    def record(self, model_id: bytes) -> ModelRecord: ...

    def registration_event(self, model_id: bytes) -> RegistryEvent | None: ...

    def parents(self, model_id: bytes) -> list[Parent]: ...

    def is_open(self) -> bool: ...

    def has_role(self, role: str, account: str) -> bool: ...

    def events(
        self, from_block: int | None = None, to_block: int | None = None
    ) -> Iterator[RegistryEvent]: ...


@dataclass(frozen=True)
class _Context:
    registry: RegistryView
    storage: Storage
    trusted: frozenset[str] | None
    data_sources: Mapping[str, Path]
    fetch_timeout: float
    fetch_data: bool
    index: LineageIndex | None


@dataclass(frozen=True)
class Anchor:
    """What the chain says about a registered model."""

    id: bytes
    registrant: str
    certificate_digest: bytes
    model_digest: bytes
    data_commitment: bytes
    block: int
    transaction: str
    status: Status
    revoked_parent_acknowledged: bool


def short(model_id: bytes) -> str:
    """``0x12ab34cd…``: a model id for a subject line."""
    return f"0x{model_id[:4].hex()}\u2026"


def _subject(model_id: bytes, role: str | None = None) -> str:
    return f"model {short(model_id)}" + (f" ({role})" if role else "")


def generation(depth: int) -> str:
    """parent, grandparent, great-grandparent, then "ancestor, N generations up"."""
    if depth == 1:
        return "parent"
    if depth == 2:
        return "grandparent"
    if depth == 3:
        return "great-grandparent"
    return f"ancestor, {depth} generations up"


def _digest_text(raw: bytes) -> str:
    return format_digest(raw)


class _Checks:
    """Collects checks about one subject."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self.items: list[Check] = []

    def add(
        self,
        name: str,
        status: CheckStatus,
        detail: str,
        *,
        required: bool = True,
        error: type[ProvenanceError] | None = None,
        subject: str | None = None,
    ) -> Check:
        check = Check(name, status, detail, subject or self.subject, required, error)
        self.items.append(check)
        return check

    def ok(self, name: str, detail: str, **kw: Any) -> Check:
        return self.add(name, CheckStatus.PASS, detail, **kw)

    def fail(self, name: str, detail: str, error: type[ProvenanceError], **kw: Any) -> Check:
        return self.add(name, CheckStatus.FAIL, detail, error=error, **kw)

    def warn(self, name: str, detail: str, **kw: Any) -> Check:
        return self.add(name, CheckStatus.WARN, detail, required=False, **kw)

    def skip(self, name: str, detail: str, **kw: Any) -> Check:
        return self.add(name, CheckStatus.SKIP, detail, required=False, **kw)


# -- bounded retrieval --------------------------------------------------------------------------


def _bounded(storage: Storage, timeout: float) -> contextlib.closing[Storage]:
    """``storage`` with each read bounded to ``timeout`` seconds, closed after use. A kubo
    node asked for content nobody provides would wait for peers forever; bounded, the node
    itself gives up at the deadline and the read raises StorageError ("<cid> was not found in
    IPFS within N s (...)"), so the report goes on."""
    return contextlib.closing(storage.with_timeout(timeout))


def _held(storage: Storage, cid: str) -> bool:
    return storage.has(cid)


def fetch_bytes(
    storage: Storage, cid: str, *, timeout: float = DEFAULT_FETCH_TIMEOUT, max_size: int
) -> bytes:
    """The content at ``cid``, verified by the storage; waits at most ``timeout`` seconds for
    content the node does not hold. StorageError when it does not come."""
    if _held(storage, cid):
        return storage.get_bytes(cid, max_size=max_size)
    with _bounded(storage, timeout) as bounded:
        return bounded.get_bytes(cid, max_size=max_size)


def _fetch_path(storage: Storage, cid: str, dest: Path, timeout: float) -> None:
    """Content the node holds (published data may be large) is read without a deadline."""
    if _held(storage, cid):
        storage.get_path(cid, dest)
        return
    with _bounded(storage, timeout) as bounded:
        bounded.get_path(cid, dest)


# -- finding models on chain ----------------------------------------------------------------


def find_models(
    registry: RegistryView,
    *,
    model_digest: bytes | None = None,
    certificate_digest: bytes | None = None,
    index: LineageIndex | None = None,
) -> list[bytes]:
    """The ids registered with this model digest (or certificate digest), in registration
    order: from a synced :class:`~provenance.chain.index.LineageIndex` when given (it is synced
    first), else by reading the registry's ModelRegistered events."""
    if (model_digest is None) == (certificate_digest is None):
        raise ConfigError("find_models needs exactly one of model_digest, certificate_digest")
    if index is not None:
        from provenance.chain.registry import Registry

        if isinstance(registry, Registry):
            index.sync(registry)
        found = (
            index.by_model_digest(model_digest)
            if model_digest is not None
            else index.by_certificate(certificate_digest or b"")
        )
        return sorted(found, key=lambda m: (_indexed_block(index, m), m))
    key, wanted = (
        ("modelDigest", model_digest)
        if model_digest is not None
        else ("certificateDigest", certificate_digest)
    )
    return [
        bytes(e.args["id"])
        for e in registry.events()
        if e.name == "ModelRegistered" and bytes(e.args[key]) == wanted
    ]


def _indexed_block(index: LineageIndex, model_id: bytes) -> int:
    found = index.get(model_id)
    return 0 if found is None else found.block


def anchor_of(registry: RegistryView, model_id: bytes) -> Anchor | None:
    """The chain's facts about ``model_id``; None when it is not registered."""
    status = registry.status(model_id)
    if status is Status.NONE:
        return None
    record = registry.record(model_id)
    event = registry.registration_event(model_id)
    if event is None:
        raise ChainError(
            f"model 0x{model_id.hex()} is registered in {registry.address} but its "
            "ModelRegistered event was not found (is the registry's first block right?)"
        )
    a = event.args
    return Anchor(
        id=model_id,
        registrant=record.registrant,
        certificate_digest=bytes(a["certificateDigest"]),
        model_digest=bytes(a["modelDigest"]),
        data_commitment=bytes(a["dataCommitment"]),
        block=event.block,
        transaction=event.transaction,
        status=record.status,
        revoked_parent_acknowledged=record.revoked_parent_acknowledged,
    )


def _revocation(registry: RegistryView, anchor: Anchor) -> str:
    for event in registry.events(anchor.block):
        if event.name == "ModelRevoked" and bytes(event.args["id"]) == anchor.id:
            reason = _digest_text(bytes(event.args["reasonDigest"]))
            by = to_checksum_address(event.args["revokedBy"])
            return f"revoked by {by} in block {event.block} (reason {reason})"
    return "revoked"


# -- the checks of one model ---------------------------------------------------------------


def _certificate_checks(
    c: _Checks, anchor: Anchor, ctx: _Context
) -> tuple[Certificate | None, bytes | None]:
    """Fetch, digest, schema. The body (None when a check failed) and the bytes."""
    digest = _digest_text(anchor.certificate_digest)
    cid = raw_block_cid(anchor.certificate_digest)
    try:
        data = fetch_bytes(ctx.storage, cid, timeout=ctx.fetch_timeout, max_size=MAX_BODY_SIZE)
    except IntegrityError as exc:
        c.fail(
            "certificate-digest",
            f"the block {cid} from IPFS is not its content: {exc}",
            IntegrityError,
        )
        return None, None
    except ProvenanceError as exc:
        c.fail(
            "certificate-fetched",
            f"certificate {digest} (CID {cid}) is not retrievable from IPFS at "
            f"{ctx.storage.location}: {exc}",
            StorageError,
        )
        return None, None
    c.ok(
        "certificate-fetched",
        f"certificate {cid} fetched from {ctx.storage.location} ({len(data)} bytes)",
    )
    found = hashlib.sha256(data).digest()
    if found != anchor.certificate_digest:
        c.fail(
            "certificate-digest",
            f"the certificate bytes hash to {_digest_text(found)}, the chain anchors {digest}",
            IntegrityError,
        )
        return None, data
    c.ok("certificate-digest", f"the certificate bytes hash to the anchored digest {digest}")
    try:
        parsed = parse_certificate(data, f"certificate {cid}")
    except CertificateError as exc:
        c.fail("certificate-schema", str(exc), CertificateError)
        return None, data
    if isinstance(parsed, SignedCertificate):
        c.fail(
            "certificate-schema",
            "the anchored bytes are a signed envelope, not a certificate body",
            CertificateError,
        )
        return None, data
    if parsed.canonical_bytes() != data:
        c.fail(
            "certificate-schema",
            "the anchored bytes are not the canonical (RFC 8785) form of the certificate they "
            f"hold, whose digest is {parsed.digest_text}",
            CertificateError,
        )
        return None, data
    c.ok("certificate-schema", f"schema v1 certificate of {parsed.model_name!r}, canonical form")
    return parsed, data


def _anchored_values_checks(c: _Checks, anchor: Anchor, body: Certificate, ctx: _Context) -> None:
    model = _digest_text(anchor.model_digest)
    if body.model.digest != model:
        c.fail(
            "model-digest",
            f"the certificate's model digest {body.model.digest} is not the anchored {model}",
            IntegrityError,
        )
    else:
        c.ok("model-digest", f"the certificate's model digest is the anchored {model}")
    data = _digest_text(anchor.data_commitment)
    if body.data.commitment != data:
        c.fail(
            "data-commitment",
            f"the certificate's data commitment {body.data.commitment} is not the anchored {data}",
            IntegrityError,
        )
    else:
        c.ok("data-commitment", f"the certificate's data commitment is the anchored {data}")
    on_chain: list[tuple[bytes, str]] = sorted(
        (p.id, p.relation.label) for p in ctx.registry.parents(anchor.id)
    )
    stated: list[tuple[bytes, str]] = sorted(
        (bytes.fromhex(p.id[2:]), str(p.relation)) for p in body.parents
    )
    if on_chain != stated:

        def show(items: list[tuple[bytes, str]]) -> str:
            return ", ".join(f"0x{i.hex()}:{r}" for i, r in items) or "none"

        c.fail(
            "parents",
            f"the certificate names parents {show(stated)}, the chain links {show(on_chain)}",
            IntegrityError,
        )
    elif stated:
        c.ok("parents", f"the certificate's {len(stated)} parent link(s) are the chain's")
    else:
        c.ok("parents", "a root model: no parents in the certificate or on chain")


def _signature_check(
    c: _Checks, anchor: Anchor, body: Certificate, envelope: SignedCertificate | None
) -> None:
    if envelope is not None and envelope.certificate.digest != anchor.certificate_digest:
        c.fail(
            "signature",
            f"the signed certificate given ({envelope.certificate.digest_text}) is not the "
            f"registered one ({_digest_text(anchor.certificate_digest)})",
            IntegrityError,
        )
        return
    if body.creator is None:
        c.skip("signature", "the certificate is unsigned: it names no creator")
        return
    if envelope is None:
        c.warn(
            "signature",
            "not checked: the chain anchors the certificate body only, not its signed "
            "envelope (verify the signed certificate file to check it); the registration "
            "by the registrant stands in for it",
        )
        return
    try:
        verify_certificate_signature(envelope)
    except SignatureError as exc:
        c.fail("signature", str(exc), SignatureError)
        return
    c.ok("signature", f"EIP-712 signature by the creator {body.creator}")


def _registrant_checks(
    c: _Checks, anchor: Anchor, body: Certificate | None, ctx: _Context, *, strict_trust: bool
) -> None:
    registrant = anchor.registrant
    if body is not None:
        if body.creator is None:
            c.warn(
                "registrant",
                f"the certificate names no creator; only the registrant {registrant} vouches for it",
            )
        elif to_checksum_address(body.creator) != registrant:
            c.fail(
                "registrant",
                f"registered by {registrant}, but the certificate names creator {body.creator}",
                PolicyError,
            )
        else:
            c.ok("registrant", f"registered by its creator {registrant}")
    if ctx.trusted is not None:
        if registrant in ctx.trusted:
            c.ok("trusted", f"registrant {registrant} is in the trust list")
        elif strict_trust:
            c.fail("trusted", f"registrant {registrant} is not in the trust list", PolicyError)
        else:
            c.warn("trusted", f"registrant {registrant} is not in the trust list")
        return
    if ctx.registry.is_open():
        c.warn("trusted", "open registry: registrant not vouched for")
    elif ctx.registry.has_role("registrant", registrant):
        c.ok("trusted", f"registrant {registrant} holds REGISTRANT_ROLE in an allowlisted registry")
    elif strict_trust:
        c.fail(
            "trusted",
            f"registrant {registrant} no longer holds REGISTRANT_ROLE in the allowlisted registry",
            PolicyError,
        )
    else:
        c.warn("trusted", f"registrant {registrant} no longer holds REGISTRANT_ROLE")


def _status_check(c: _Checks, anchor: Anchor, ctx: _Context) -> None:
    if anchor.status is Status.REVOKED:
        c.fail("status", _revocation(ctx.registry, anchor), PolicyError)
    else:
        c.ok("status", "active (not revoked)")


def _model_checks(
    model_id: bytes,
    ctx: _Context,
    *,
    role: str | None = None,
    envelope: SignedCertificate | None = None,
    ancestor: bool = False,
    signature: bool = True,
) -> tuple[list[Check], Anchor | None, Certificate | None]:
    c = _Checks(_subject(model_id, role))
    anchor = anchor_of(ctx.registry, model_id)
    if anchor is None:
        c.fail(
            "registered",
            f"model 0x{model_id.hex()} is not registered in the registry {ctx.registry.address}",
            IntegrityError,
        )
        return c.items, None, None
    c.ok(
        "registered",
        f"registered by {anchor.registrant} in block {anchor.block} (tx {anchor.transaction})",
    )
    _status_check(c, anchor, ctx)
    body, _ = _certificate_checks(c, anchor, ctx)
    if body is not None:
        _anchored_values_checks(c, anchor, body, ctx)
        if signature:
            _signature_check(c, anchor, body, envelope)
    _registrant_checks(c, anchor, body, ctx, strict_trust=not ancestor)
    if body is not None and not ancestor:
        c.items.extend(_data_checks(body, ctx))
    return c.items, anchor, body


# -- training data ------------------------------------------------------------------------


def _download_name(record: DatasetRecord) -> str:
    manifest = record.manifest
    if isinstance(manifest, FileManifest) and len(manifest.files) == 1:
        name = manifest.files[0].path
        if "/" not in name:
            return name
    return "data"


def _data_checks(body: Certificate, ctx: _Context) -> list[Check]:
    checks: list[Check] = []
    names = {d.name for d in body.data.datasets}
    for unknown in sorted(set(ctx.data_sources) - names):
        checks.append(
            Check(
                "data",
                CheckStatus.FAIL,
                f"a source was given, but the certificate has no dataset {unknown!r} "
                f"(it has: {', '.join(sorted(names)) or 'none'})",
                f"dataset {unknown}",
                True,
                ConfigError,
            )
        )
    for record in body.data.datasets:
        c = _Checks(f"dataset {record.name} ({record.role})")
        if record.confidential:
            c.skip(
                "data",
                "confidential: only its salted commitment is published (its owner checks it "
                "with the opening: provenance data verify --opening)",
            )
            checks.extend(c.items)
            continue
        with tempfile.TemporaryDirectory(prefix="provenance-verify-") as scratch:
            source = ctx.data_sources.get(record.name)
            where = str(source)
            if source is None and record.url and record.url.startswith("ipfs://"):
                if not ctx.fetch_data:
                    c.skip("data", f"published at {record.url}; not fetched (fetching disabled)")
                    checks.extend(c.items)
                    continue
                source = Path(scratch) / _download_name(record)
                cid = record.url.removeprefix("ipfs://")
                try:
                    _fetch_path(ctx.storage, cid, source, ctx.fetch_timeout)
                except ProvenanceError as exc:
                    c.fail(
                        "data",
                        f"the published data {record.url} is not retrievable from IPFS at "
                        f"{ctx.storage.location}: {exc}",
                        StorageError,
                    )
                    checks.extend(c.items)
                    continue
                where = record.url
            if source is None:
                c.skip("data", "no source: not published in IPFS; pass one with --data NAME=PATH")
                checks.extend(c.items)
                continue
            try:
                matched = recompute_dataset(record, source)
            except NotRecomputableError as exc:
                c.skip("data", str(exc))
            except (IntegrityError, CertificateError) as exc:
                c.fail("data", f"recomputed from {where}: {exc}", IntegrityError)
            else:
                c.ok("data", f"recomputed from {where}: {matched}")
        checks.extend(c.items)
    return checks


# -- lineage --------------------------------------------------------------------------------


def _collapse(
    name: str, items: list[Check], subject: str, passed: str | None = None
) -> Check | None:
    """One line for several checks: the first required failure, else the first warning or
    skip, else a pass (``passed``, or their details joined)."""
    if not items:
        return None
    worst = next((i for i in items if i.failed), None)
    for status in (CheckStatus.FAIL, CheckStatus.WARN, CheckStatus.SKIP):
        worst = worst or next((i for i in items if i.status is status), None)
    if worst is not None:
        return replace(worst, name=name, subject=subject)
    detail = passed or "; ".join(i.detail for i in items)
    return Check(name, CheckStatus.PASS, detail, subject)


def _ancestors(registry: RegistryView, model_id: bytes) -> list[tuple[bytes, int]]:
    """Every ancestor with its distance, nearest first (breadth-first over parent links)."""
    seen: dict[bytes, int] = {}
    queue = deque((p.id, 1) for p in registry.parents(model_id))
    while queue:
        node, depth = queue.popleft()
        if node in seen or node == model_id:
            continue
        seen[node] = depth
        queue.extend((p.id, depth + 1) for p in registry.parents(node))
    return list(seen.items())


def _lineage_checks(model_id: bytes, ctx: _Context) -> list[Check]:
    subject = _subject(model_id)
    ancestors = _ancestors(ctx.registry, model_id)
    per_ancestor: list[Check] = []
    revoked: list[tuple[bytes, int]] = []
    for ancestor, depth in ancestors:
        role = generation(depth)
        items, anchor, _ = _model_checks(ancestor, ctx, role=role, ancestor=True)
        sub = _subject(ancestor, role)
        by_name: dict[str, list[Check]] = {}
        for item in items:
            by_name.setdefault(item.name, []).append(item)
        groups = {
            "ancestor-registered": by_name.get("registered", []),
            "ancestor-certificate": [
                i
                for n in (
                    "certificate-fetched",
                    "certificate-digest",
                    "certificate-schema",
                    "model-digest",
                    "data-commitment",
                    "parents",
                )
                for i in by_name.get(n, [])
            ],
            "ancestor-creator": [
                i for n in ("signature", "registrant", "trusted") for i in by_name.get(n, [])
            ],
            "ancestor-status": by_name.get("status", []),
        }
        summaries = {
            "ancestor-certificate": (
                f"certificate {raw_block_cid(anchor.certificate_digest)} fetched; its digest, "
                "schema, model digest, data commitment and parents match the chain"
                if anchor is not None
                else None
            )
        }
        for name, group in groups.items():
            line = _collapse(name, group, sub, summaries.get(name))
            if line is not None:
                per_ancestor.append(line)
        if anchor is not None and anchor.status is Status.REVOKED:
            revoked.append((ancestor, depth))
    if revoked:
        first, depth = revoked[0]
        more = f" (and {len(revoked) - 1} more revoked ancestor(s))" if len(revoked) > 1 else ""
        summary = Check(
            "lineage",
            CheckStatus.FAIL,
            f"tainted: ancestor 0x{first.hex()} ({generation(depth)}) revoked{more}",
            subject,
            True,
            PolicyError,
        )
    elif ancestors:
        summary = Check(
            "lineage",
            CheckStatus.PASS,
            f"{len(ancestors)} ancestor(s), none revoked",
            subject,
        )
    else:
        summary = Check("lineage", CheckStatus.PASS, "a root model: no ancestors", subject)
    return [summary, *per_ancestor]


# -- reports --------------------------------------------------------------------------------


def _context(
    registry: RegistryView,
    storage: Storage,
    trusted_registrants: Iterable[str] | None,
    data_sources: Mapping[str, Path] | None,
    fetch_timeout: float,
    fetch_data: bool,
    index: LineageIndex | None,
) -> _Context:
    trusted = None
    if trusted_registrants is not None:
        bad = [a for a in trusted_registrants if not is_address(a)]
        if bad:
            raise ConfigError(f"{bad[0]!r} is not an Ethereum address")
        trusted = frozenset(to_checksum_address(a) for a in trusted_registrants)
    return _Context(
        registry=registry,
        storage=storage,
        trusted=trusted,
        data_sources=dict(data_sources or {}),
        fetch_timeout=fetch_timeout,
        fetch_data=fetch_data,
        index=index,
    )


def _full_model_checks(
    model_id: bytes, ctx: _Context, envelope: SignedCertificate | None, *, signature: bool = True
) -> tuple[list[Check], Anchor | None, Certificate | None]:
    checks, anchor, body = _model_checks(model_id, ctx, envelope=envelope, signature=signature)
    if anchor is not None:
        checks.extend(_lineage_checks(model_id, ctx))
    return checks, anchor, body


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
    """Every check of a registered model (see the module docstring): its anchoring, its
    certificate from IPFS, creator and registrant, training data, and its ancestry."""
    ctx = _context(
        registry, storage, trusted_registrants, data_sources, fetch_timeout, fetch_data, None
    )
    checks, _, _ = _full_model_checks(model_id, ctx, envelope)
    return Report(f"0x{model_id.hex()}", "model-id", model_id, tuple(checks))


def lineage_report(
    model_id: bytes,
    *,
    registry: RegistryView,
    storage: Storage,
    trusted_registrants: Iterable[str] | None = None,
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
) -> Report:
    """The model's own registration and status, and the lineage checks (taint, ancestors)."""
    ctx = _context(registry, storage, trusted_registrants, None, fetch_timeout, False, None)
    c = _Checks(_subject(model_id))
    anchor = anchor_of(registry, model_id)
    if anchor is None:
        c.fail(
            "registered",
            f"model 0x{model_id.hex()} is not registered in the registry {registry.address}",
            IntegrityError,
        )
    else:
        c.ok("registered", f"registered by {anchor.registrant} in block {anchor.block}")
        _status_check(c, anchor, ctx)
        c.items.extend(_lineage_checks(model_id, ctx))
    return Report(f"0x{model_id.hex()}", "model-id", model_id, tuple(c.items))


def _pick(
    candidates: list[bytes], build: Callable[[bytes], tuple[list[Check], T]]
) -> tuple[bytes, list[Check], T, Check | None]:
    """With several registrations of the same content: the first that verifies (else the
    first registered), and a check line naming them all."""
    built = [(m, *build(m)) for m in candidates[:1]]
    if len(candidates) > 1:
        built = [(m, *build(m)) for m in candidates]
    chosen = next((b for b in built if not any(c.failed for c in b[1])), built[0])
    note = None
    if len(candidates) > 1:
        others = ", ".join(f"0x{m.hex()}" for m in candidates if m != chosen[0])
        note = Check(
            "lookup",
            CheckStatus.WARN,
            f"{len(candidates)} registrations match; reporting 0x{chosen[0].hex()} "
            f"(the first that verifies, else the first registered); also: {others}",
            _subject(chosen[0]),
            False,
        )
    return chosen[0], chosen[1], chosen[2], note


def _sibling_envelope(path: Path) -> tuple[Path, Certificate | SignedCertificate] | None:
    """``certificate.json`` beside model files (where ``provenance.track`` writes it)."""
    folder = path.parent if path.is_file() else path
    for candidate in (folder / CERTIFICATE_FILE, folder.parent / CERTIFICATE_FILE):
        if candidate.is_file():
            try:
                return candidate, parse_certificate(candidate.read_bytes(), str(candidate))
            except (CertificateError, OSError):
                continue
    return None


def _model_files_report(path: Path, ctx: _Context, target: str) -> Report:
    c = _Checks(str(path))
    try:
        manifest = manifest_of(path)
    except (IntegrityError, OSError) as exc:
        c.fail("model-files", f"cannot hash {path}: {exc}", IntegrityError)
        return Report(target, "model-files", None, tuple(c.items))
    digest = manifest.root
    sibling = _sibling_envelope(path)
    envelope = sibling[1] if sibling and isinstance(sibling[1], SignedCertificate) else None
    candidates = find_models(ctx.registry, model_digest=bytes.fromhex(digest[7:]), index=ctx.index)
    if candidates:
        c.ok(
            "model-files",
            f"{len(manifest.files)} file(s) hash to {digest}, a registered model digest",
        )

        def build(m: bytes) -> tuple[list[Check], None]:
            env = envelope if envelope and envelope.certificate.model_id == m else None
            return _full_model_checks(m, ctx, env)[0], None

        model_id, checks, _, note = _pick(candidates, build)
        items = [*c.items, *([note] if note else []), *checks]
        return Report(target, "model-files", model_id, tuple(items))
    if sibling is None:
        c.fail(
            "model-files",
            f"no registered model has the digest {digest} of these {len(manifest.files)} "
            f"file(s) (and there is no {CERTIFICATE_FILE} beside them to compare with)",
            IntegrityError,
        )
        return Report(target, "model-files", None, tuple(c.items))
    cert_path, document = sibling
    body = body_of(document)
    try:
        verify_manifest(body.model.manifest, path)
    except IntegrityError as exc:
        c.fail(
            "model-files",
            f"not the certified model of {cert_path}: {exc}",
            IntegrityError,
        )
    else:
        c.fail(
            "model-files",
            f"the files match {cert_path} ({digest}), but no registered model has that digest",
            IntegrityError,
        )
    model_id = body.model_id
    checks, _, _ = _full_model_checks(model_id, ctx, envelope)
    return Report(target, "model-files", model_id, tuple([*c.items, *checks]))


def _certificate_file_report(
    path: Path, document: Certificate | SignedCertificate, ctx: _Context, target: str
) -> Report:
    body = body_of(document)
    c = _Checks(str(path))
    envelope = document if isinstance(document, SignedCertificate) else None
    c.ok(
        "certificate-file",
        f"schema v1 certificate {body.digest_text} of {body.model_name!r}, model id "
        f"0x{body.model_id.hex()}" + (", signed" if envelope else ", unsigned"),
    )
    if envelope is None:
        c.skip("signature", "the certificate file is unsigned (a bare body)")
    else:
        try:
            verify_certificate_signature(envelope)
        except SignatureError as exc:
            c.fail("signature", str(exc), SignatureError)
        else:
            c.ok("signature", f"EIP-712 signature by the creator {body.creator}")
    checks, _, _ = _full_model_checks(body.model_id, ctx, envelope, signature=False)
    return Report(target, "certificate", body.model_id, tuple([*c.items, *checks]))


def _receipt_report(
    path: Path, data: dict[str, Any], ctx: _Context, attestor: AttestorContract | None, target: str
) -> Report:
    from provenance.attest import Receipt, verify_receipt_offline

    c = _Checks(str(path))
    try:
        receipt = Receipt.from_json(data)
    except IntegrityError as exc:
        c.fail("receipt", str(exc), IntegrityError)
        return Report(target, "receipt", None, tuple(c.items))
    model_id = receipt.record.model_id
    try:
        verify_receipt_offline(receipt)
    except IntegrityError as exc:
        c.fail("receipt", str(exc), IntegrityError)
    else:
        c.ok(
            "receipt",
            f"output {receipt.record.sequence} is in the batch (Merkle proof) signed by node "
            f"{receipt.node}",
        )
    if attestor is None:
        c.warn(
            "receipt-contract",
            f"the receipt names OutputAttestor {receipt.contract}; not compared with a known "
            "deployment",
        )
    elif to_checksum_address(receipt.contract) != to_checksum_address(attestor.address):
        c.fail(
            "receipt-contract",
            f"the receipt names OutputAttestor {receipt.contract}, not the deployed "
            f"{attestor.address}",
            PolicyError,
        )
    else:
        c.ok("receipt-contract", f"anchored on the deployed OutputAttestor {attestor.address}")
    from provenance.chain.attestor import verify_receipt_on_chain

    w3 = getattr(ctx.registry, "w3", None)
    if w3 is None:
        c.skip("receipt-anchored", "no chain connection to check the anchoring")
    else:
        try:
            facts = verify_receipt_on_chain(w3, receipt, ctx.registry.address)
        except IntegrityError as exc:
            c.fail("receipt-anchored", str(exc), IntegrityError)
        else:
            where = facts["anchored_in"]
            c.ok(
                "receipt-anchored",
                f"batch root anchored in block {where['block']} (tx {where['transaction']})",
            )
            if facts["node_still_authorised"]:
                c.ok("node-authorised", f"node {receipt.node} is authorised for this model digest")
            else:
                c.warn(
                    "node-authorised",
                    f"node {receipt.node} is no longer authorised for this model",
                )
    checks, anchor, _ = _full_model_checks(model_id, ctx, None)
    if anchor is not None:
        if anchor.model_digest != receipt.record.model_digest:
            c.fail(
                "receipt-model",
                f"the receipt's model digest 0x{receipt.record.model_digest.hex()} is not the "
                f"registered {_digest_text(anchor.model_digest)}",
                IntegrityError,
            )
        else:
            c.ok("receipt-model", "the receipt's model digest is the registered one")
    return Report(target, "receipt", model_id, tuple([*c.items, *checks]))


def _image_report(image: str, ctx: _Context, engine: DockerEngine, target: str) -> Report:
    from provenance.images import (
        LABEL_CERTIFICATE,
        LABEL_MODEL_DIGEST,
        RECORD_MEDIA_TYPE,
        image_record_of,
        verify_model_image,
    )

    c = _Checks(f"image {image}")
    try:
        found = engine.image(image)
    except ImageError as exc:
        c.fail("image", str(exc), ImageError)
        return Report(target, "image", None, tuple(c.items))
    label = found.labels.get(LABEL_MODEL_DIGEST)
    certificate_label = found.labels.get(LABEL_CERTIFICATE)
    if not label or not re.fullmatch(r"sha256:[0-9a-f]{64}", label):
        c.fail(
            "image",
            f"image {found.id} has no {LABEL_MODEL_DIGEST} label: not a model image",
            ImageError,
        )
        return Report(target, "image", None, tuple(c.items))
    c.ok("image", f"image {found.id} is labelled model {label}")
    if certificate_label and re.fullmatch(r"sha256:[0-9a-f]{64}", certificate_label):
        candidates = find_models(
            ctx.registry, certificate_digest=bytes.fromhex(certificate_label[7:]), index=ctx.index
        )
    else:
        candidates = find_models(
            ctx.registry, model_digest=bytes.fromhex(label[7:]), index=ctx.index
        )
    if not candidates:
        by = f"certificate {certificate_label}" if certificate_label else f"model digest {label}"
        c.fail("registered", f"no registered model has the image's {by}", IntegrityError)
        return Report(target, "image", None, tuple(c.items))

    def build(m: bytes) -> tuple[list[Check], tuple[Anchor | None, Certificate | None]]:
        checks, anchor, body = _full_model_checks(m, ctx, None)
        return checks, (anchor, body)

    model_id, checks, (anchor, body), note = _pick(candidates, build)
    try:
        verify_model_image(engine, found.id, label)
    except IntegrityError as exc:
        c.fail("image-model", str(exc), IntegrityError)
    else:
        c.ok("image-model", f"the model files inside the image hash to {label}")
    anchored_model = _digest_text(anchor.model_digest) if anchor else None
    if anchored_model is not None and anchored_model != label:
        c.fail(
            "image-certified",
            f"the image holds model {label}, the registered model is {anchored_model}",
            IntegrityError,
        )
    elif certificate_label and anchor is not None:
        c.ok("image-certified", f"labelled with the registered certificate {certificate_label}")
    elif body is not None and any(a.media_type == RECORD_MEDIA_TYPE for a in body.attachments):
        try:
            with _bounded(ctx.storage, ctx.fetch_timeout) as bounded:
                record = image_record_of(body, bounded)
        except ProvenanceError as exc:
            c.fail("image-certified", f"the certificate's image record: {exc}", type(exc))
        else:
            if record.image_id == found.id:
                c.ok("image-certified", f"the certificate's image record names image {found.id}")
            else:
                c.fail(
                    "image-certified",
                    f"the certificate's image record names image {record.image_id}, not {found.id}",
                    IntegrityError,
                )
    else:
        c.warn(
            "image-certified",
            "neither the image's labels nor the certificate name this image: only its model "
            "files are certified",
        )
    items = [*c.items, *([note] if note else []), *checks]
    return Report(target, "image", model_id, tuple(items))


_ID = re.compile(r"(?:0x|sha256:)?([0-9a-fA-F]{64})")


def as_id(text: str) -> bytes | None:
    """32 bytes from ``0x`` + 64 hex digits (or ``sha256:<hex>``, or bare hex); None when the
    text is not one."""
    match = _ID.fullmatch(text.strip())
    return None if match is None else bytes.fromhex(match.group(1))


def _looks_like(data: Any, *keys: str) -> bool:
    return isinstance(data, dict) and all(k in data for k in keys)


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
    """The report for whatever ``target`` names: a model id or certificate digest (``0x`` and
    64 hex digits, or ``sha256:<hex>``, which may also be an image id), a certificate JSON file, an output receipt JSON file, model files (a file
    or a directory: re-hashed and looked up on chain by model digest), or a Docker image (a tag
    or id of ``engine``). Never raises for what it finds; ConfigError for an unusable target."""
    ctx = _context(
        registry, storage, trusted_registrants, data_sources, fetch_timeout, fetch_data, index
    )
    path = Path(target)
    raw = as_id(target)
    if raw is not None and not path.exists():
        if registry.status(raw) is Status.NONE:
            by_certificate = find_models(registry, certificate_digest=raw, index=index)
            if by_certificate:
                raw = by_certificate[0]
            elif engine is not None and not target.lower().startswith("0x") and engine.has(target):
                return _image_report(target, ctx, engine, target)  # sha256:<hex>: an image id
        checks, _, _ = _full_model_checks(raw, ctx, None)
        return Report(target, "model-id", raw, tuple(checks))
    if path.is_file() and path.suffix.lower() == ".json":
        with contextlib.suppress(OSError, UntrustedInputError):
            data = loads_json(path.read_bytes(), what=str(path))
            if _looks_like(data, "record", "batch", "proof"):
                return _receipt_report(path, data, ctx, attestor, target)
            if _looks_like(data, "certificate", "signature") or _looks_like(
                data, "version", "model", "data"
            ):
                try:
                    document = parse_certificate(data, f"certificate {path}")
                except CertificateError as exc:
                    c = _Checks(str(path))
                    c.fail("certificate-file", str(exc), CertificateError)
                    return Report(target, "certificate", None, tuple(c.items))
                return _certificate_file_report(path, document, ctx, target)
    if path.exists():
        return _model_files_report(path, ctx, target)
    if engine is None:
        raise ConfigError(
            f"{target!r} is not a model id, a file or a folder; to check it as a Docker image "
            "a Docker engine is needed"
        )
    return _image_report(target, ctx, engine, target)


# -- raising forms ------------------------------------------------------------------------------


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
    ctx = _context(registry, storage, trusted_registrants, data_sources, fetch_timeout, True, index)
    _model_files_report(path, ctx, str(path)).raise_for_failure()


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


__all__ = [
    "Anchor",
    "Check",
    "CheckStatus",
    "RegistryView",
    "Report",
    "anchor_of",
    "as_id",
    "fetch_bytes",
    "find_models",
    "generation",
    "lineage_report",
    "recompute_dataset",
    "report_for_model",
    "report_for_target",
    "verify_lineage",
    "verify_model",
    "verify_model_files",
]
