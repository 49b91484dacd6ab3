"""What verification answers: a :class:`Report` of :class:`Check` lines, each a named fact
(:class:`CheckName`) with its status, subject and one line of why.

    report.ok                      # no required check failed
    report.first_failure()         # the first failed required check, or None
    report.raise_for_failure()     # raises its error class (IntegrityError, PolicyError, ...)
    report.to_json()               # {"target", "kind", "model_id", "ok", "checks": [...]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from provenance.errors import ProvenanceError
from provenance.hashing import format_digest
from provenance.model_formats import UNDETECTED, format_named

if TYPE_CHECKING:
    from provenance.certificate import ModelArtifact

Kind = Literal["model-id", "model-files", "image", "certificate", "receipt"]


class CheckStatus(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    SKIP = "skip"


class CheckName(StrEnum):
    """Every check verification makes (a StrEnum: each compares equal to its name)."""

    # a model: its anchoring on chain, its certificate, its creator, its data
    REGISTERED = "registered"
    STATUS = "status"
    CERTIFICATE_FETCHED = "certificate-fetched"
    CERTIFICATE_DIGEST = "certificate-digest"
    CERTIFICATE_SCHEMA = "certificate-schema"
    MODEL_DIGEST = "model-digest"
    DATA_COMMITMENT = "data-commitment"
    PARENTS = "parents"
    SIGNATURE = "signature"
    REGISTRANT = "registrant"
    TRUSTED = "trusted"
    DATA = "data"
    # its ancestry
    LINEAGE = "lineage"
    ANCESTOR_REGISTERED = "ancestor-registered"
    ANCESTOR_CERTIFICATE = "ancestor-certificate"
    ANCESTOR_CREATOR = "ancestor-creator"
    ANCESTOR_STATUS = "ancestor-status"
    # what the target was
    LOOKUP = "lookup"
    MODEL_FILES = "model-files"
    OMS_SIGNATURE = "oms-signature"
    CERTIFICATE_FILE = "certificate-file"
    IMAGE = "image"
    IMAGE_MODEL = "image-model"
    IMAGE_CERTIFIED = "image-certified"
    # an output receipt
    RECEIPT = "receipt"
    RECEIPT_CHAIN = "receipt-chain"
    RECEIPT_CONTRACT = "receipt-contract"
    RECEIPT_ANCHORED = "receipt-anchored"
    NODE_AUTHORISED = "node-authorised"
    RECEIPT_MODEL = "receipt-model"
    RECEIPT_OUTPUT = "receipt-output"


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
            "name": str(self.name),
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


class Checks:
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

    @property
    def failed(self) -> bool:
        return any(c.failed for c in self.items)


def short(model_id: bytes) -> str:
    """``0x12ab34cd…``: a model id for a subject line."""
    return f"0x{model_id[:4].hex()}\u2026"


def subject_of(model_id: bytes, role: str | None = None) -> str:
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


def model_format_text(model: ModelArtifact) -> str:
    """The model's format as a certificate records it, for people: ``ONNX model (onnx),
    written with onnx 1.23.2``; a recorded name this version does not know is shown as it is."""
    from provenance.untrusted import printable

    recorded = model.format
    if recorded is None:
        return "format not recorded"
    known = format_named(recorded)
    if recorded == UNDETECTED:
        text = "files in none of the supported formats (not servable)"
    elif known is None:
        text = printable(recorded, one_line=True)
    else:
        text = f"{known.title} ({printable(recorded, one_line=True)})"
    if model.framework is not None:
        framework = printable(f"{model.framework.name} {model.framework.version}", one_line=True)
        text += f", written with {framework}"
    return text


def digest_text(raw: bytes) -> str:
    return format_digest(raw)


__all__ = [
    "Check",
    "CheckName",
    "CheckStatus",
    "Checks",
    "Kind",
    "Report",
    "digest_text",
    "generation",
    "model_format_text",
    "short",
    "subject_of",
]
