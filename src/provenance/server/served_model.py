"""The model a service answers with: checked against the chain and its certificate, then
loaded (:func:`load_served_model`), from its files or from its Docker image.

Before anything is fetched or loaded: the model is registered and active and no ancestor is
revoked (:func:`check_servable`); its registrant is trusted (:func:`check_trusted_registrant`:
serving unpickles or runs what the registrant published); its certificate, fetched from IPFS
by the digest on chain, hashes to that digest and derives that model id; the model files (from
the certificate's ``ipfs://`` URL, or inside its Docker image: the one the certificate records
or the one its registrant bound on chain, pulled from IPFS by image id) have the certificate's
model digest. :mod:`provenance.server.service` serves it over HTTP.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import anyio

from provenance.certificate import Certificate
from provenance.chain.types import Status
from provenance.errors import (
    CertificateError,
    ConfigError,
    PolicyError,
    ProvenanceError,
)
from provenance.hashing import parse_digest
from provenance.image_entrypoint import RequestError
from provenance.registered import fetch_certificate
from provenance.server.model_files import (
    check_runnable,
    fetch_verified,
    load_model,
    model_entry,
    served_format,
)

MAX_REQUEST_BYTES = 1 << 20
MAX_ROWS = 10_000
MAX_BACKLOG = 10_000
"""/healthz answers 503 when more outputs than this wait for the chain..."""
MAX_BACKLOG_AGE = 60.0
"""...or when the oldest of them has waited longer than this (seconds)."""


class ModelSource(Protocol):
    """What loading needs of the registry (:class:`provenance.chain.registry.Registry`)."""

    def registration_event(self, model_id: bytes) -> Any: ...

    def status(self, model_id: bytes) -> Status: ...

    def is_tainted(self, model_id: bytes) -> bool: ...

    def record(self, model_id: bytes) -> Any: ...

    def image_binding(self, model_id: bytes) -> Any: ...

    def is_open(self) -> bool: ...

    def has_role(self, role: str, account: str) -> bool: ...


Predictor = Callable[[list[Any], str], list[Any]]


@dataclass(frozen=True)
class ServedModel:
    """A model checked against its certificate and ready to answer: where it came from (``source``
    "image" or "artifacts"), its image id when it runs in its image, and the predictor."""

    model_id: bytes
    certificate: Certificate
    source: str
    predictor: Predictor
    image_id: str | None = None
    close: Callable[[], None] = field(default=lambda: None)

    @property
    def model_digest(self) -> str:
        return self.certificate.model.digest

    @property
    def model_digest_bytes(self) -> bytes:
        return parse_digest(self.model_digest, "model digest")

    @property
    def image_id_bytes(self) -> bytes:
        """The image id as the contract stores it (zero for a model served from its files)."""
        return parse_digest(self.image_id, "image id") if self.image_id else b"\x00" * 32


def check_servable(model_id: bytes, registry: ModelSource) -> None:
    """PolicyError unless the model is registered, active, and no ancestor is revoked."""
    status = registry.status(model_id)
    if status is Status.NONE:
        raise PolicyError(f"model 0x{model_id.hex()} is not registered; refusing to serve it")
    if status is Status.REVOKED:
        raise PolicyError(f"model 0x{model_id.hex()} is revoked; refusing to serve it")
    if registry.is_tainted(model_id):
        raise PolicyError(
            f"model 0x{model_id.hex()} descends from a revoked model (tainted); refusing to serve it"
        )


def check_trusted_registrant(
    model_id: bytes,
    registry: ModelSource,
    registrants: Collection[str] | None,
    *,
    serving_account: str | None = None,
) -> str:
    """The model's registrant, when it is trusted: in ``registrants`` (``--trust``, ``[trust]
    registrants``), holding REGISTRANT_ROLE in an allowlisted registry, or the serving account
    itself (the key that authorises the node). PolicyError otherwise: serving a model unpickles
    or runs what its registrant published, so an untrusted registrant's model is never loaded."""
    from eth_utils.address import to_checksum_address

    registrant = to_checksum_address(registry.record(model_id).registrant)
    trusted = {to_checksum_address(a) for a in registrants or ()}
    if serving_account is not None:
        trusted.add(to_checksum_address(serving_account))
    if registrant in trusted:
        return registrant
    if not registry.is_open() and registry.has_role("registrant", registrant):
        return registrant
    raise PolicyError(
        f"model 0x{model_id.hex()} is registered by {registrant}, who is not trusted; refusing "
        f"to load it (trust it with --trust {registrant}, or list it in registrants of the "
        "config's trust section)"
    )


def load_served_model(
    model_id: bytes,
    *,
    registry: ModelSource,
    storage: Any,
    workdir: Path,
    source: Literal["image", "artifacts"] = "artifacts",
    engine: Any = None,
    certificate: Certificate | None = None,
    registrants: Collection[str] | None,
    serving_account: str | None = None,
) -> ServedModel:
    """Fetch, check and start the model (see the module docstring). ``source="image"`` needs a
    :class:`provenance.images.DockerEngine`; the container runs without network and answers on
    a Unix socket (:func:`provenance.images.start_model_server`). ``certificate``: the one
    :func:`fetch_certificate` already returned for ``model_id``, not fetched again.
    ``registrants`` and ``serving_account``: who is trusted
    (:func:`check_trusted_registrant`, checked before anything is fetched or loaded)."""
    check_servable(model_id, registry)
    check_trusted_registrant(model_id, registry, registrants, serving_account=serving_account)
    if certificate is None:
        certificate = fetch_certificate(model_id, registry, storage)
    if source == "image":
        if engine is None:
            raise ConfigError("serving from the image needs a Docker engine")
        return _from_image(model_id, certificate, storage, engine, registry)
    return _from_artifacts(model_id, certificate, storage, workdir)


MODEL_FOLDER = "model"
"""Where, in the service's work folder, a model of several files is put (one file keeps its
own name)."""


def _from_artifacts(
    model_id: bytes, certificate: Certificate, storage: Any, workdir: Path
) -> ServedModel:
    model = certificate.model
    what = f"model 0x{model_id.hex()}"
    if model.url is None or not model.url.startswith("ipfs://"):
        raise CertificateError(
            f"the certificate of {what} does not say where its files are stored "
            "(model.url); serve it from its image instead"
        )
    # a format this version cannot serve is refused before anything is fetched
    recorded = served_format(model.format, what)
    if recorded is not None:
        check_runnable(recorded, what)
    files = [f.path for f in model.manifest.files]
    target = workdir / (files[0] if len(files) == 1 else MODEL_FOLDER)
    fetch_verified(model.manifest, model.url.removeprefix("ipfs://"), storage, workdir, target)
    # every file's digest is checked above: only now are they read, then loaded
    fmt, entry = model_entry(target, model.format, files, what)
    runtime = load_model(entry, fmt, what)

    def predict(rows: list[Any], method: str) -> list[Any]:
        try:
            return runtime.predict(rows, method)
        except RequestError as exc:
            raise RequestRefused(str(exc)) from exc

    return ServedModel(model_id, certificate, "artifacts", predict)


def _from_image(
    model_id: bytes, certificate: Certificate, storage: Any, engine: Any, registry: ModelSource
) -> ServedModel:
    """The image the certificate's image record names, else the one the model's registrant
    bound on chain (its record fetched by the digest on chain and checked); PolicyError when
    neither names one: an image only labelled for the certificate is never served."""
    from provenance.bound_image import fetch_bound_record
    from provenance.images import (
        RECORD_MEDIA_TYPE,
        image_record_of,
        pull_from_ipfs,
        start_model_server,
        verify_model_image,
    )

    if any(a.media_type == RECORD_MEDIA_TYPE for a in certificate.attachments):
        record = image_record_of(certificate, storage)
    else:
        binding = registry.image_binding(model_id)
        if binding is None:
            raise PolicyError(
                f"model 0x{model_id.hex()} has no image: its certificate records none and its "
                "registrant bound none on chain (provenance image bind); refusing to serve an "
                "unbound image"
            )
        record = fetch_bound_record(binding, storage, certificate.model.digest)
    if not engine.has(record.image_id):
        pull_from_ipfs(engine, storage, record.archive, record.image_id)
    verify_model_image(engine, record.image_id, certificate.model.digest)
    server = start_model_server(engine, record.image_id)

    def predict(rows: list[Any], method: str) -> list[Any]:
        try:
            return server.predict(rows, method)
        except ValueError as exc:  # the entrypoint's 400: the request, not the service
            raise RequestRefused(str(exc)) from exc

    return ServedModel(model_id, certificate, "image", predict, record.image_id, server.stop)


class RequestRefused(ProvenanceError):
    """The model cannot answer this request (wrong shape, unknown method): a 400."""


def one_line(exc: BaseException) -> str:
    """The first line of an error's message (at most 500 characters), for a one-line answer."""
    lines = str(exc).strip().splitlines()
    return lines[0][:500] if lines else type(exc).__name__


class ModelState:
    """The model's state on chain ("ok", "revoked", "tainted", "unregistered"), read again at
    most every ``ttl`` seconds, in a worker thread (the chain client blocks)."""

    def __init__(self, model_id: bytes, registry: ModelSource, ttl: float) -> None:
        self.model_id, self.registry, self.ttl = model_id, registry, ttl
        self._at = -float("inf")
        self._value = "ok"
        self._lock = threading.Lock()

    def read(self) -> str:
        with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                status = self.registry.status(self.model_id)
                self._value = (
                    "unregistered"
                    if status is Status.NONE
                    else "revoked"
                    if status is Status.REVOKED
                    else "tainted"
                    if self.registry.is_tainted(self.model_id)
                    else "ok"
                )
                self._at = time.monotonic()
            return self._value

    async def current(self) -> str:
        if time.monotonic() - self._at < self.ttl:
            return self._value
        return await anyio.to_thread.run_sync(self.read)


__all__ = [
    "ModelSource",
    "ModelState",
    "Predictor",
    "RequestRefused",
    "ServedModel",
    "check_servable",
    "check_trusted_registrant",
    "load_served_model",
    "one_line",
]
