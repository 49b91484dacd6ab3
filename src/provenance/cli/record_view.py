"""How ``show`` prints a model's record (names from the certificates, times in UTC, the
revocation reason from IPFS), and what ``revoke`` does around the transaction: it asks for
confirmation, and stores the reason's text in IPFS, where its CID follows from the sha-256 that
goes on chain, so ``show`` can print the reason."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

from provenance.cli._common import err, out, shown
from provenance.errors import ConfigError, ProvenanceError
from provenance.untrusted import printable

if TYPE_CHECKING:
    from provenance.chain.index import IndexedModel
    from provenance.chain.types import ModelRecord
    from provenance.session import Session
    from provenance.storage import Storage

MAX_REASON = 16 * 1024
"""The longest revocation reason stored as text (bytes of UTF-8); a longer report goes
elsewhere and its digest on chain."""

NOT_CONFIRMED = (
    "revoking is permanent and there is no terminal to confirm it on: add --yes to revoke"
)


@dataclass(frozen=True)
class Reader:
    """Where certificates and reasons are read: ``fetch`` when storage holds nothing itself
    (a gateway, which fetches within its timeout), else only what it holds is read."""

    storage: Storage
    fetch: bool


READ_TIMEOUT = 10.0
"""Seconds a gateway may take per certificate or reason read for ``show`` and ``tree`` (at
most the configured timeout): a name that does not come in time is shown as unknown."""


@contextmanager
def reader(session: Session) -> Iterator[Reader]:
    """The configuration's storage for reading (the stack's kubo, a gateway, or the local
    store: :attr:`provenance.session.Session.storage`); a gateway with a timeout of at most
    :data:`READ_TIMEOUT`."""
    if session.storage_kind != "gateway":
        yield Reader(session.storage, False)
        return
    ipfs = session.config.ipfs
    view = session.storage.with_timeout(min(ipfs.timeout, READ_TIMEOUT))
    try:
        yield Reader(view, True)
    finally:
        view.close()


def _hex(value: bytes | None) -> str | None:
    return None if value is None else "0x" + value.hex()


def reason_text(data: bytes | None) -> str | None:
    """The stored reason as text (None when it is not in storage or not UTF-8)."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def model_format_of(read: Reader, certificate_digest: bytes) -> str | None:
    """The model's format as its certificate (read from storage) records it, for people
    (:func:`provenance.verify.report.model_format_text`); None when the certificate is not
    there or does not parse."""
    from provenance.certificate import MAX_BODY_SIZE, body_of, parse_certificate
    from provenance.lineage import stored_text
    from provenance.verify.report import model_format_text

    data = stored_text(
        read.storage, certificate_digest, max_size=MAX_BODY_SIZE, fetch_missing=read.fetch
    )
    if data is None:
        return None
    try:
        return model_format_text(body_of(parse_certificate(data, "certificate")).model)
    except ProvenanceError:
        return None


def show_report(
    record: ModelRecord,
    indexed: IndexedModel,
    tainted: bool,
    names: Mapping[bytes, str],
    reason: bytes | None,
    model_format: str | None = None,
) -> dict[str, Any]:
    """``show``'s JSON (parents and children are added by the caller); ``model_format``: see
    :func:`model_format_of`."""
    from provenance.lineage import utc_time

    return {
        "id": _hex(record.id),
        "name": names.get(record.id),
        "status": record.status.label,
        "tainted": tainted,
        "registrant": record.registrant,
        "registered_at": record.registered_at,
        "registered_at_utc": utc_time(record.registered_at),
        "block": indexed.block,
        "transaction": indexed.transaction,
        "certificate_digest": "sha256:" + indexed.certificate_digest.hex(),
        "model_digest": "sha256:" + indexed.model_digest.hex(),
        "model_format": model_format,
        "data_commitment": "sha256:" + indexed.data_commitment.hex(),
        "revoked_parent_acknowledged": record.revoked_parent_acknowledged,
        "revoked_by": indexed.revoked_by,
        "revoke_reason": _hex(indexed.revoke_reason),
        "revoke_reason_text": reason_text(reason),
    }


def print_show(report: Mapping[str, Any]) -> None:
    """``show``'s text: one line per field, names and times readable, unknowns said so."""
    lines: list[tuple[str, str]] = []
    for key, value in report.items():
        if key in ("registered_at_utc", "revoke_reason_text"):
            continue
        if key in ("name", "model_format"):
            value = value if value is not None else "(unknown: the certificate is not in IPFS)"
        elif key == "registered_at":
            value = f"{report['registered_at_utc']} ({value})"
        elif key == "revoke_reason" and value is not None:
            text = report["revoke_reason_text"]
            value = f"{value} " + (
                repr(text) if text is not None else "(the text is not in IPFS, or not text)"
            )
        elif isinstance(value, list):
            value = (
                ", ".join(
                    f"{v['id']} {v['name'] or '(name unknown)'} ({v['relation']})" for v in value
                )
                or "-"
            )
        lines.append((key, value))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        out.print(f"{key:<{width}}  {shown(value)}", highlight=False, soft_wrap=True)


def confirm_revocation(model_id: str, reason: str | None, yes: bool) -> None:
    """Nothing with ``yes``; on a terminal a question (no: "not revoked", exit 1); without
    one, ConfigError (a permanent act is never taken without being asked for)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfigError(NOT_CONFIRMED)
    why = f" (reason: {reason!r})" if reason is not None else ""
    question = (
        f"Revoke model {model_id}{why}? It and every descendant will fail verification; this "
        "cannot be undone"
    )
    if not typer.confirm(printable(question, one_line=True), default=False):
        err.print("not revoked", highlight=False)
        raise typer.Exit(1)


def store_reason(session: Session, text: bytes, digest: bytes) -> str | None:
    """Put the reason's text in IPFS (one raw block: its CID follows from ``digest``); its CID,
    or None with a warning when it cannot be stored (the revocation goes ahead: only the
    digest goes on chain, and the text can be stored later)."""
    from provenance.certificate import raw_block_cid

    expected = raw_block_cid(digest)
    try:
        if session.storage_kind == "gateway":
            raise ConfigError("the configured storage is a read-only gateway")
        cid: str = session.storage.put_bytes(text)
    except ProvenanceError as exc:
        err.print(
            f"[yellow]warning:[/] the reason's text is not stored in IPFS ({shown(exc)}); only "
            f"its digest goes on chain, `show` cannot print it (its CID would be {expected})",
            highlight=False,
            soft_wrap=True,
        )
        return None
    if cid != expected:  # one raw block up to 256 KiB: the CID is the digest's
        raise ConfigError(f"IPFS stored the reason as {cid}, not {expected}; not revoking")
    return cid


__all__ = [
    "MAX_REASON",
    "NOT_CONFIRMED",
    "READ_TIMEOUT",
    "Reader",
    "confirm_revocation",
    "model_format_of",
    "print_show",
    "reader",
    "reason_text",
    "show_report",
    "store_reason",
]
