"""Publishing a built certificate: sign it, store it (and on request the model and public
training data) and register it on chain.

:class:`~provenance.capture.tracker.Run` only accumulates and builds; :func:`publish` does the
rest, in an order that loses nothing: the model files are stored first (their CID becomes the
unsigned body's ``model.url``), then the body is signed, stored (its CID must follow from its
digest) with its signed envelope, written to ``path``, and registered last::

    with provenance.connect() as session:
        done = publish(run.build(), session, model_files=Path("model.joblib"))
        done.cid, done.registered.id

Clients come from a :class:`~provenance.session.Session` (signer, storage, a registry sending
as the signer) or are passed one by one. A registry without storage is refused: it would
anchor a certificate nobody can fetch, so the model could never be verified by its id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from provenance.certificate import (
    Certificate,
    SignedCertificate,
    Signer,
    body_of,
    sign_certificate,
    to_json,
)
from provenance.errors import ConfigError, IntegrityError, ProvenanceError
from provenance.manifest import DatasetRecord, manifest_of, manifest_of_files

if TYPE_CHECKING:
    from provenance.chain.registry import Registered
    from provenance.registration import Registration
    from provenance.session import Session


class BlobStore(Protocol):
    """What publishing needs of a storage backend (:class:`provenance.storage.Storage` has it)."""

    def put_bytes(self, data: bytes, *, pin: bool = True, confidential: bool = False) -> str: ...

    def put_path(self, path: Path, *, pin: bool = True, confidential: bool = False) -> str: ...


class ModelRegistry(Protocol):
    """What publishing needs of the chain (:class:`provenance.chain.registry.Registry` has it)."""

    @property
    def sender(self) -> str | None: ...

    def register(self, registration: Registration) -> Registered: ...

    def register_signed(self, account: Signer, registration: Registration) -> Registered: ...


NO_STORAGE = (
    "registering a certificate that is stored nowhere: nobody could fetch it, so the model "
    "could never be verified by its id; pass session= (or storage=) as well"
)

ModelFiles = Path | Mapping[str, Path]
"""The model: one file or folder, or several files by the names the certificate records."""


@dataclass(frozen=True)
class Published:
    """What :func:`publish` did."""

    certificate: Certificate
    signed: SignedCertificate | None
    cid: str
    stored: bool
    envelope_cid: str | None = None
    model_cid: str | None = None
    data_cids: Mapping[str, str] = field(default_factory=dict)
    path: Path | None = None
    registered: Registered | None = None

    @property
    def document(self) -> Certificate | SignedCertificate:
        """The signed envelope when there is one, else the body."""
        return self.signed or self.certificate


def publish(
    certificate: Certificate | SignedCertificate,
    session: Session | None = None,
    *,
    signer: Signer | None = None,
    storage: BlobStore | None = None,
    registry: ModelRegistry | None = None,
    register: bool = True,
    model_files: ModelFiles | None = None,
    data: Sequence[Path] = (),
    path: Path | None = None,
    acknowledge_revoked_parents: bool = False,
) -> Published:
    """Sign (an unsigned body, when there is a signer), store, write and register a
    certificate; see the module doc.

    With a ``session``, what is not passed comes from it: its signer, its storage, and (when
    ``register``) its registry sending as the signer. ``model_files`` and ``data`` are stored
    too, after checking that they are what the certificate records (``IntegrityError`` if not);
    confidential datasets are never stored."""
    if session is not None:
        storage = storage if storage is not None else session.storage
        if signer is None and (register or not isinstance(certificate, SignedCertificate)):
            signer = session.signer
        if register and registry is None:
            registry = session.registry_for(signer)  # type: ignore[arg-type]
    if registry is not None and storage is None:
        raise ConfigError(NO_STORAGE)
    body = body_of(certificate)
    signed = certificate if isinstance(certificate, SignedCertificate) else None
    model_cid = None
    if model_files is not None and storage is not None:
        model_cid = _store_model(storage, body, model_files)
        if signed is None and body.model.url is None:
            model = body.model.model_copy(update={"url": "ipfs://" + model_cid})
            body = Certificate.model_validate(body.model_copy(update={"model": model}).model_dump())
    data_cids = _store_data(storage, body, data) if data else {}
    if signed is None and signer is not None:
        if body.creator is not None and body.creator.lower() != str(signer.address).lower():
            raise ConfigError(
                f"the certificate names creator {body.creator} but the signer is {signer.address}"
            )
        signed = sign_certificate(body, signer)
        body = signed.certificate
    cid, envelope_cid = body.cid, None
    if storage is not None:
        stored_cid = storage.put_bytes(body.canonical_bytes())
        if stored_cid != body.cid:
            raise IntegrityError(
                f"storage returned CID {stored_cid} for the certificate, expected {body.cid}"
            )
        if signed is not None:
            envelope_cid = storage.put_bytes(to_json(signed).encode())
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(to_json(signed or body), encoding="utf-8")
    registered = None
    if registry is not None:
        registered = register_certificate(registry, body, signer, acknowledge_revoked_parents)
    return Published(
        certificate=body,
        signed=signed,
        cid=cid,
        stored=storage is not None,
        envelope_cid=envelope_cid,
        model_cid=model_cid,
        data_cids=data_cids,
        path=path,
        registered=registered,
    )


def register_certificate(
    registry: ModelRegistry,
    certificate: Certificate,
    signer: Signer | None,
    acknowledge_revoked_parents: bool = False,
) -> Registered:
    """Register with the signer as registrant: the id binds the registrant, and a verifier
    accepts only the creator's registration. When the registry sends as another account, the
    signer signs the registration and the registry relays it (``registerFor``)."""
    registration = certificate.registration(acknowledge_revoked_parents)
    sender = registry.sender
    if signer is not None and (sender or "").lower() != str(signer.address).lower():
        done = registry.register_signed(signer, registration)
    else:
        done = registry.register(registration)
    expected = registration.model_id_for(certificate.creator or done.registrant)
    if done.id != expected:
        raise IntegrityError(
            f"the registry returned id 0x{done.id.hex()}, the certificate derives "
            f"0x{expected.hex()}"
        )
    return done


def _store_model(storage: BlobStore, body: Certificate, files: ModelFiles) -> str:
    """Store the model after checking its manifest root is the certificate's model digest."""
    manifest = manifest_of(files) if isinstance(files, Path) else manifest_of_files(files)
    if manifest.root != body.model.digest:
        raise IntegrityError(
            f"the model files have digest {manifest.root}, the certificate records "
            f"{body.model.digest}: not the certified model"
        )
    if isinstance(files, Path):
        return storage.put_path(files)
    if len(files) == 1:
        return storage.put_path(next(iter(files.values())))
    raise ConfigError("storing a model of several files needs their folder: pass one path")


def _store_data(
    storage: BlobStore | None, body: Certificate, paths: Sequence[Path]
) -> dict[str, str]:
    """Store public training data files, each after finding the dataset it recomputes."""
    if storage is None:
        raise ConfigError("storing training data needs storage")
    stored: dict[str, str] = {}
    for path in paths:
        record = _dataset_of(body.data.datasets, path)
        stored[record.name] = storage.put_path(path)
    return stored


def _dataset_of(datasets: Sequence[DatasetRecord], path: Path) -> DatasetRecord:
    """The public dataset of the certificate that ``path`` recomputes (tried by name first)."""
    from provenance.manifest import recompute_dataset

    named = [d for d in datasets if d.name in (path.name, str(path))]
    for record in named:
        if record.confidential:
            raise ConfigError(
                f"dataset {record.name!r} is confidential: it is never stored, only committed to"
            )
    for record in [*named, *(d for d in datasets if d not in named and not d.confidential)]:
        try:
            recompute_dataset(record, path)
        except ProvenanceError:
            continue
        return record
    raise IntegrityError(f"{path} is none of the certificate's public datasets")


__all__ = [
    "NO_STORAGE",
    "BlobStore",
    "ModelFiles",
    "ModelRegistry",
    "Published",
    "publish",
    "register_certificate",
]
