"""What every exporter starts from: the certificate and what is known about it on chain."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provenance.certificate import Certificate, SignedCertificate, body_of, raw_block_cid

if TYPE_CHECKING:
    from provenance.session import Session


@dataclass(frozen=True)
class Subject:
    """A certificate to export.

    ``certificate``: the body; ``envelope``: the creator-signed envelope when at hand.
    ``model_id``: the registered id (None: not registered, or unknown). ``chain_id`` and
    ``registry``: where it is registered (for "how to verify" sections). ``model_files``: the
    model's files on disk, when an exporter needs them (they are checked against the
    certificate's manifest by whoever sets this field)."""

    certificate: Certificate
    envelope: SignedCertificate | None = None
    model_id: bytes | None = None
    chain_id: int | None = None
    registry: str | None = None
    model_files: Path | None = None

    @classmethod
    def of(cls, document: Certificate | SignedCertificate, **known: object) -> Subject:
        """A subject of a certificate file's content (body or signed envelope); ``known``
        fills the other fields. The model id defaults to the creator's, when it names one."""
        body = body_of(document)
        envelope = document if isinstance(document, SignedCertificate) else None
        if "model_id" not in known and body.creator is not None:
            known["model_id"] = body.model_id
        return cls(body, envelope, **known)  # type: ignore[arg-type]

    @property
    def cid(self) -> str:
        """The certificate body's CID (one raw block: the CIDv1 of its digest)."""
        return raw_block_cid(self.certificate.digest)

    @property
    def model_id_hex(self) -> str | None:
        return None if self.model_id is None else "0x" + self.model_id.hex()


def subject_for(target: str, session: Session, *, model_files: Path | None = None) -> Subject:
    """The subject ``target`` names: a certificate file (signed or not), else a registered model
    id or unique prefix, whose certificate comes from the session's storage by the digest on
    its trusted registry (checked)."""
    from provenance.certificate import load_certificate

    path = Path(target)
    if path.is_file():
        return Subject.of(load_certificate(path), model_files=model_files)
    model_id = session.resolve_id(target)
    return Subject(
        session.certificate(model_id),
        model_id=model_id,
        chain_id=session.chain_id,
        registry=session.registry.address,
        model_files=model_files,
    )


__all__ = ["Subject", "subject_for"]
