"""The attesting inference service behind ``provenance serve``: a registered model, checked
against its certificate before the first request, answering predictions over HTTP, each with a
receipt of its output attestation.

    served = load_served_model(model_id, registry=registry, storage=storage, engine=engine,
                               source="image", workdir=Path("serve"))
    attestor = Attestor(model_id, served.model_digest_bytes, node, AttestorContract(...), journal)
    app = create_app(served, attestor, registry)       # FastAPI; uvicorn.run(app, port=8700)

Before serving, :func:`~provenance.server.served_model.load_served_model` (in
:mod:`provenance.server.served_model`) checks the model on chain and against its certificate and
loads it, refusing (a ProvenanceError) on any failure.

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
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

import rfc8785
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provenance.attest import AnchoringHealth, Attestor
from provenance.errors import (
    ConfigError,
    ProvenanceError,
)
from provenance.hashing import format_digest
from provenance.registered import fetch_certificate
from provenance.server.model_files import (
    METHODS,
)
from provenance.server.served_model import (
    ModelSource,
    ModelState,
    RequestRefused,
    ServedModel,
    check_servable,
    check_trusted_registrant,
    load_served_model,
    one_line,
)
from provenance.untrusted import UntrustedInputError, loads_json

MAX_REQUEST_BYTES = 1 << 20
MAX_ROWS = 10_000
MAX_BACKLOG = 10_000
"""/healthz answers 503 when more outputs than this wait for the chain..."""
MAX_BACKLOG_AGE = 60.0
"""...or when the oldest of them has waited longer than this (seconds)."""


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
                    f"stay in the journal for the next start (node {node}): {one_line(exc)}"
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
    state = ModelState(served.model_id, registry, status_ttl)

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}})
    def healthz() -> JSONResponse:
        problems = []
        try:
            status = state.read()
        except ProvenanceError as exc:
            status = "unknown"
            problems.append(f"the model's state on chain cannot be read: {one_line(exc)}")
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
        status = state.read()
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
        return JSONResponse({"error": one_line(exc)}, status_code=503)

    @app.exception_handler(OSError)
    async def _io(_: Request, exc: OSError) -> JSONResponse:
        return JSONResponse({"error": f"the service failed: {one_line(exc)}"}, status_code=503)

    @app.exception_handler(sqlite3.Error)
    async def _journal(_: Request, exc: sqlite3.Error) -> JSONResponse:
        return JSONResponse({"error": f"the journal failed: {one_line(exc)}"}, status_code=503)

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
    "ModelSource",
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
