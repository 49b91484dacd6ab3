"""The certificate of a registered model: fetched from IPFS by the certificate digest the
chain anchored, and checked (its bytes hash to that digest; it derives the model id under the
registrant on record). Serving, exporting and the session use it."""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from provenance.certificate import MAX_BODY_SIZE, Certificate, parse_certificate, raw_block_cid
from provenance.errors import CertificateError, IntegrityError, PolicyError


class Registrations(Protocol):
    """What fetching needs of the registry (:class:`provenance.chain.registry.Registry`)."""

    def registration_event(self, model_id: bytes) -> Any: ...


def fetch_certificate(model_id: bytes, registry: Registrations, storage: Any) -> Certificate:
    """The certificate of a registered model, from IPFS by the digest on chain, checked: its
    bytes hash to that digest and it derives ``model_id``."""
    event = registry.registration_event(model_id)
    if event is None:
        raise PolicyError(f"model 0x{model_id.hex()} is not registered")
    digest = bytes(event.args["certificateDigest"])
    cid = raw_block_cid(digest)
    data = storage.get_bytes(cid, max_size=MAX_BODY_SIZE)
    if hashlib.sha256(data).digest() != digest:  # storage checks blocks; this is belt and braces
        raise IntegrityError(f"the certificate {cid} does not hash to the digest on chain")
    parsed = parse_certificate(data, f"the certificate of model 0x{model_id.hex()} ({cid})")
    if not isinstance(parsed, Certificate):
        raise CertificateError(f"the block {cid} holds a signed envelope, not a certificate body")
    derived = parsed.model_id_for(str(event.args["registrant"]))  # the id binds the registrant
    if derived != model_id:
        raise IntegrityError(
            f"the certificate {cid} derives model id 0x{derived.hex()}, not 0x{model_id.hex()}"
        )
    return parsed


__all__ = ["Registrations", "fetch_certificate"]
