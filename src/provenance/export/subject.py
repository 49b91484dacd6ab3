"""What every exporter starts from: the certificate and what is known about it on chain."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from provenance.certificate import Certificate, SignedCertificate, body_of, raw_block_cid


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


__all__ = ["Subject"]
