"""The attesting inference service behind ``provenance serve``: a registered model, checked
against its certificate before the first request, answering predictions over HTTP, each with a
receipt of its output attestation.

    served = load_served_model(model_id, registry=registry, storage=storage, engine=engine,
                               source="image", workdir=Path("serve"))
    attestor = Attestor(model_id, served.model_digest_bytes, node, AttestorContract(...), journal)
    app = create_app(served, attestor, registry)       # FastAPI; uvicorn.run(app, port=8700)

Before serving, :func:`load_served_model` checks, and refuses (a ProvenanceError) on any failure:
the model is registered and active and no ancestor is revoked; its registrant is trusted
(:func:`check_trusted_registrant`: serving unpickles or runs what the registrant published);
its certificate, fetched from
IPFS by the digest on chain, hashes to that digest and derives that model id; the model files
(from the certificate's ``ipfs://`` URL, or inside its Docker image pulled from IPFS by image
id) have the certificate's model digest.

HTTP: ``POST /predict`` (``{"instances": rows, "method": "predict"}``, at most
``max_request_bytes``) answers the predictions, the digests of input and output, the sequence
number of the record and, with ``?wait=true``, the anchored receipt. The input digest is the
sha-256 of the request body as sent; the output digest is the sha-256 of the RFC 8785 bytes of
``{"predictions": [...]}``. ``GET /receipts/{sequence}`` answers a receipt once its batch is
anchored (202 while it waits), ``GET /healthz`` the model's state on chain and how the
background anchoring fares (503 with the reason once the model is revoked, the chain cannot be
read, the anchoring loop stopped or its backlog is too large or too old), ``GET /openapi.json``
the schema. ``/predict`` takes ``application/json`` only (415 otherwise: a cross-site form
cannot spend gas); a failing chain, journal or model container is a 503 ``{"error": "..."}``,
never a traceback; an answer leaves only once its record is journaled. The application owns the
model and the attestor: its shutdown anchors what the journal holds and stops the model.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import rfc8785
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provenance.attest import AnchoringHealth, Attestor
from provenance.certificate import Certificate
from provenance.chain.types import Status
from provenance.errors import (
    CertificateError,
    ConfigError,
    PolicyError,
    ProvenanceError,
)
from provenance.hashing import format_digest, parse_digest
from provenance.image_entrypoint import RequestError
from provenance.registered import fetch_certificate
from provenance.server.model_files import (
    METHODS,
    check_runnable,
    fetch_verified,
    load_model,
    model_entry,
    served_format,
)
from provenance.untrusted import UntrustedInputError, loads_json

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


# -- HTTP ---------------------------------------------------------------------------------------


class PredictRequest(BaseModel):
    """Rows of feature values, and the method to call (the ones a model has depend on its
    runtime: :mod:`provenance.image_entrypoint`). Rows of scalars are the contract for every
    format: an ONNX input of a fixed higher rank gets each row reshaped, a TorchScript module
    gets one rank-2 float32 tensor; inputs of another shape need an image of their own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instances: list[list[float | int | str | bool | None]] = Field(
        min_length=1, max_length=MAX_ROWS
    )
    method: Literal[
        "predict", "predict_proba", "predict_log_proba", "decision_function", "transform"
    ] = "predict"


class PredictResponse(BaseModel):
    predictions: list[Any]
    model_id: str
    model_digest: str
    sequence: int
    input_digest: str
    output_digest: str
    receipt_url: str
    receipt: dict[str, Any] | None = None


class Anchoring(BaseModel):
    """The background anchoring: its loop, and the outputs still waiting for the chain."""

    running: bool
    backlog: int
    backlog_age: float | None
    failures: int
    last_error: str | None
    last_success: float | None


class Health(BaseModel):
    """``status`` is the model's state on chain ("unknown" while the chain cannot be read);
    ``error`` says why the service is not healthy (None when it is: a 200)."""

    status: Literal["ok", "revoked", "tainted", "unregistered", "unknown"]
    model_id: str
    model_name: str
    model_digest: str
    source: str
    image_id: str | None
    node: str
    pending: int
    last_error: str | None
    anchoring: Anchoring
    error: str | None


def output_bytes(predictions: list[Any]) -> bytes:
    """What the output digest is taken over: RFC 8785 bytes of ``{"predictions": [...]}``.
    ValueError for values JSON cannot carry (NaN, Infinity, integers beyond 2**53)."""
    return bytes(rfc8785.dumps({"predictions": predictions}))


def anchoring_problem(
    health: AnchoringHealth, *, max_backlog: int, max_backlog_age: float
) -> str | None:
    """Why the anchoring is unhealthy (its loop died, or too much or too old a backlog)."""
    if not health.running:
        return "the anchoring loop is not running" + (
            f" (last error: {health.last_error})" if health.last_error else ""
        )
    late = health.backlog_age is not None and health.backlog_age > max_backlog_age
    if health.backlog > max_backlog or late:
        age = 0.0 if health.backlog_age is None else health.backlog_age
        return (
            f"{health.backlog} outputs wait to be anchored, the oldest for {age:.0f} s "
            f"(at most {max_backlog} and {max_backlog_age:g} s)"
            + (f"; last error: {health.last_error}" if health.last_error else "")
        )
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__


class _Status:
    """The model's state on chain, re-read at most every ``ttl`` seconds."""

    def __init__(self, model_id: bytes, registry: ModelSource, ttl: float) -> None:
        self.model_id, self.registry, self.ttl = model_id, registry, ttl
        self._at = 0.0
        self._value: str = "ok"
        self._lock = threading.Lock()

    def get(self) -> str:
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


def create_app(
    served: ServedModel,
    attestor: Attestor,
    registry: ModelSource,
    *,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    status_ttl: float = 5.0,
    max_backlog: int = MAX_BACKLOG,
    max_backlog_age: float = MAX_BACKLOG_AGE,
    on_shutdown: Callable[[str], None] | None = None,
) -> FastAPI:
    """The FastAPI application of one served model (see the module docstring).

    The application owns ``served`` and ``attestor`` from its start: when it shuts down (the
    server stops, on SIGTERM as on SIGINT) it anchors what the journal holds, closes the journal
    and stops the model (its container); ``on_shutdown`` then gets a one-line account."""
    mid = "0x" + served.model_id.hex()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        from starlette.concurrency import run_in_threadpool

        message = await run_in_threadpool(_shut_down)
        if on_shutdown is not None:
            on_shutdown(message)

    def _shut_down() -> str:
        node = attestor.node.address
        try:
            try:
                attestor.flush()
                message = f"stopped; every recorded output is anchored (node {node})"
            except Exception as exc:  # the journal keeps them for the next start
                message = (
                    f"stopped; {attestor.pending()} recorded outputs are not anchored yet, they "
                    f"stay in the journal for the next start (node {node}): {_one_line(exc)}"
                )
            attestor.close()
        finally:
            served.close()
        return message

    app = FastAPI(
        title=f"provenance: {served.certificate.model_name}",
        version="1",
        description=(
            f"Predictions of model {mid} ({served.model_digest}), each attested on chain by node "
            f"{attestor.node.address}."
        ),
        lifespan=lifespan,
    )
    state = _Status(served.model_id, registry, status_ttl)

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}})
    def healthz() -> JSONResponse:
        problems = []
        try:
            status = state.get()
        except ProvenanceError as exc:
            status = "unknown"
            problems.append(f"the model's state on chain cannot be read: {_one_line(exc)}")
        if status not in ("ok", "unknown"):
            problems.insert(0, f"model {mid} is {status} on chain; not serving")
        loop = attestor.health()
        problem = anchoring_problem(loop, max_backlog=max_backlog, max_backlog_age=max_backlog_age)
        if problem is not None:
            problems.append(problem)
        body = Health(
            status=status,
            model_id=mid,
            model_name=served.certificate.model_name,
            model_digest=served.model_digest,
            source=served.source,
            image_id=served.image_id,
            node=attestor.node.address,
            pending=loop.backlog,
            last_error=loop.last_error,
            anchoring=Anchoring(**vars(loop)),
            error="; ".join(problems) or None,
        )
        return JSONResponse(body.model_dump(), status_code=503 if problems else 200)

    @app.post(
        "/predict",
        response_model=PredictResponse,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
            }
        },
        responses={
            400: {"description": "not JSON, or the model cannot answer it"},
            413: {"description": "larger than the service accepts"},
            415: {"description": "not sent as application/json"},
            422: {"description": "not a list of rows and a method"},
            500: {"description": "the model answered something JSON cannot carry"},
            503: {
                "description": "the model was revoked (or an ancestor), or the chain, the "
                "journal or the model's container failed: not serving"
            },
        },
    )
    async def predict(request: Request, wait: bool = False) -> JSONResponse:
        # a form post from any web page would spend gas: only JSON, which needs a CORS preflight
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != "application/json":
            raise HTTPException(
                415, f"the request must be sent as application/json, not {kind or 'untyped'}"
            )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_request_bytes:
            raise HTTPException(
                413, f"the request has {declared} bytes; at most {max_request_bytes}"
            )
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > max_request_bytes:
                raise HTTPException(413, f"the request has more than {max_request_bytes} bytes")
        body = bytes(raw)
        try:
            loads_json(body, what="the request body", max_bytes=max_request_bytes)
        except UntrustedInputError as exc:
            raise HTTPException(400, str(exc)) from None
        try:
            parsed = PredictRequest.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise HTTPException(422, f"{where}: {first['msg']}") from None
        return await _answer(parsed, body, wait)

    async def _answer(parsed: PredictRequest, body: bytes, wait: bool) -> JSONResponse:
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_answer_sync, parsed, body, wait)

    def _answer_sync(parsed: PredictRequest, body: bytes, wait: bool) -> JSONResponse:
        status = state.get()
        if status != "ok":
            raise HTTPException(503, f"model {mid} is {status} on chain; not serving")
        try:
            predictions = served.predictor(list(parsed.instances), parsed.method)
        except RequestRefused as exc:
            raise HTTPException(400, str(exc)) from None
        try:
            out = output_bytes(predictions)
        except (ValueError, TypeError) as exc:  # NaN, Infinity: not JSON; nothing is recorded
            raise HTTPException(
                500, f"the model answered values JSON cannot carry ({exc}); nothing was recorded"
            ) from None
        # journaled before the answer leaves: record() returns once the commit covering it is
        # synced (concurrent requests share commits: provenance.attest.journal)
        record = attestor.record(body, out)
        receipt = None
        if wait:
            attestor.flush()
            found = attestor.receipt(record.sequence)
            receipt = None if found is None else found.to_json()
        # PredictResponse's fields, as a dict: FastAPI would validate and re-encode a model it
        # was returned, a cost on every answer (the schema still says PredictResponse)
        return JSONResponse(
            {
                "predictions": predictions,
                "model_id": mid,
                "model_digest": served.model_digest,
                "sequence": record.sequence,
                "input_digest": format_digest(record.input_digest),
                "output_digest": format_digest(record.output_digest),
                "receipt_url": f"/receipts/{record.sequence}",
                "receipt": receipt,
            }
        )

    @app.get(
        "/receipts/{sequence}",
        responses={
            202: {"description": "recorded, not anchored yet"},
            404: {"description": "no such output"},
        },
    )
    def receipt(sequence: int) -> JSONResponse:
        if sequence < 0 or sequence >= attestor.next_sequence:
            raise HTTPException(404, f"no output with sequence {sequence} from this node")
        found = attestor.receipt(sequence)
        if found is None or found.transaction is None:
            return JSONResponse(
                {"status": "pending", "sequence": sequence, "detail": "not anchored yet"},
                status_code=202,
            )
        return JSONResponse(found.to_json())

    @app.exception_handler(HTTPException)
    async def _error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    # the chain, IPFS, the journal or the model's container failed: a 503 the client can retry,
    # one line, no traceback
    @app.exception_handler(ProvenanceError)
    async def _unavailable(_: Request, exc: ProvenanceError) -> JSONResponse:
        return JSONResponse({"error": _one_line(exc)}, status_code=503)

    @app.exception_handler(OSError)
    async def _io(_: Request, exc: OSError) -> JSONResponse:
        return JSONResponse({"error": f"the service failed: {_one_line(exc)}"}, status_code=503)

    @app.exception_handler(sqlite3.Error)
    async def _journal(_: Request, exc: sqlite3.Error) -> JSONResponse:
        return JSONResponse({"error": f"the journal failed: {_one_line(exc)}"}, status_code=503)

    return app


@contextlib.contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int = 8700) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="provenance-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ConfigError(f"the service did not start on {host}:{port}")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


__all__ = [
    "METHODS",
    "Health",
    "PredictRequest",
    "PredictResponse",
    "RequestRefused",
    "ServedModel",
    "anchoring_problem",
    "check_servable",
    "check_trusted_registrant",
    "create_app",
    "fetch_certificate",
    "load_served_model",
    "output_bytes",
    "running",
]
