"""The attesting inference service behind ``provenance serve``: a registered model, checked
against its certificate before the first request, answering predictions over HTTP, each with a
receipt of its output attestation.

    served = load_served_model(model_id, registry=registry, storage=storage, engine=engine,
                               source="image", workdir=Path("serve"))
    attestor = Attestor(model_id, served.model_digest_bytes, node, AttestorContract(...), journal)
    app = create_app(served, attestor, registry)       # FastAPI; uvicorn.run(app, port=8700)

Before serving, :func:`load_served_model` checks, and refuses (a ProvenanceError) on any failure:
the model is registered and active and no ancestor is revoked; its certificate, fetched from
IPFS by the digest on chain, hashes to that digest and derives that model id; the model files
(from the certificate's ``ipfs://`` URL, or inside its Docker image pulled from IPFS by image
id) have the certificate's model digest.

HTTP: ``POST /predict`` (``{"instances": rows, "method": "predict"}``, at most
``max_request_bytes``) answers the predictions, the digests of input and output, the sequence
number of the record and, with ``?wait=true``, the anchored receipt. The input digest is the
sha-256 of the request body as sent; the output digest is the sha-256 of the RFC 8785 bytes of
``{"predictions": [...]}``. ``GET /receipts/{sequence}`` answers a receipt once its batch is
anchored (202 while it waits), ``GET /healthz`` the model's state on chain (503 once it is
revoked: predictions stop), ``GET /openapi.json`` the schema.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import rfc8785
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provenance.attest import Attestor
from provenance.certificate import MAX_BODY_SIZE, Certificate, parse_certificate, raw_block_cid
from provenance.chain.types import Status
from provenance.errors import (
    CertificateError,
    ConfigError,
    IntegrityError,
    PolicyError,
    ProvenanceError,
)
from provenance.hashing import format_digest, parse_digest
from provenance.manifest import verify_manifest
from provenance.untrusted import UntrustedInputError, loads_json

METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform")
MAX_REQUEST_BYTES = 1 << 20
MAX_ROWS = 10_000


class ModelSource(Protocol):
    """What loading needs of the registry (:class:`provenance.chain.registry.Registry`)."""

    def registration_event(self, model_id: bytes) -> Any: ...

    def status(self, model_id: bytes) -> Status: ...

    def is_tainted(self, model_id: bytes) -> bool: ...


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


def fetch_certificate(model_id: bytes, registry: ModelSource, storage: Any) -> Certificate:
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
    if parsed.model_id != model_id:
        raise IntegrityError(
            f"the certificate {cid} derives model id 0x{parsed.model_id.hex()}, "
            f"not 0x{model_id.hex()}"
        )
    return parsed


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


def load_served_model(
    model_id: bytes,
    *,
    registry: ModelSource,
    storage: Any,
    workdir: Path,
    source: Literal["image", "artifacts"] = "artifacts",
    engine: Any = None,
    certificate: Certificate | None = None,
) -> ServedModel:
    """Fetch, check and start the model (see the module docstring). ``source="image"`` needs a
    :class:`provenance.images.DockerEngine`; the container runs without network and answers on
    a Unix socket (:func:`provenance.images.start_model_server`). ``certificate``: the one
    :func:`fetch_certificate` already returned for ``model_id``, not fetched again."""
    check_servable(model_id, registry)
    if certificate is None:
        certificate = fetch_certificate(model_id, registry, storage)
    if source == "image":
        if engine is None:
            raise ConfigError("serving from the image needs a Docker engine")
        return _from_image(model_id, certificate, storage, engine)
    return _from_artifacts(model_id, certificate, storage, workdir)


def _from_artifacts(
    model_id: bytes, certificate: Certificate, storage: Any, workdir: Path
) -> ServedModel:
    model = certificate.model
    if model.url is None or not model.url.startswith("ipfs://"):
        raise CertificateError(
            f"the certificate of model 0x{model_id.hex()} does not say where its files are stored "
            "(model.url); serve it from its image instead"
        )
    from provenance.capture.sklearn import FORMAT

    if model.format != FORMAT or len(model.manifest.files) != 1:
        raise CertificateError(
            f"model 0x{model_id.hex()} is {model.format!r} with {len(model.manifest.files)} files; "
            "serving from files supports one pickled scikit-learn model"
        )
    target = workdir / model.manifest.files[0].path
    target.parent.mkdir(parents=True, exist_ok=True)
    storage.get_path(model.url.removeprefix("ipfs://"), target)
    verify_manifest(model.manifest, target)  # before anything unpickles it
    import pickle

    with open(target, "rb") as f:
        estimator = pickle.load(f)  # its digest is the certificate's, checked above

    def predict(rows: list[Any], method: str) -> list[Any]:
        import numpy as np

        function = getattr(estimator, method, None)
        if function is None:
            raise RequestRefused(f"the model has no method {method}")
        try:
            result = function(np.asarray(rows))
        except (ValueError, TypeError) as exc:
            raise RequestRefused(f"the model refused the instances: {exc}") from exc
        return list(result.tolist())

    return ServedModel(model_id, certificate, "artifacts", predict)


def _from_image(
    model_id: bytes, certificate: Certificate, storage: Any, engine: Any
) -> ServedModel:
    from provenance.images import (
        image_record_of,
        pull_from_ipfs,
        start_model_server,
        verify_model_image,
    )

    record = image_record_of(certificate, storage)
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
    """Rows of feature values, and the estimator method to call."""

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


class Health(BaseModel):
    status: Literal["ok", "revoked", "tainted", "unregistered"]
    model_id: str
    model_name: str
    model_digest: str
    source: str
    image_id: str | None
    node: str
    pending: int
    last_error: str | None


def output_bytes(predictions: list[Any]) -> bytes:
    """What the output digest is taken over: RFC 8785 bytes of ``{"predictions": [...]}``."""
    return bytes(rfc8785.dumps({"predictions": predictions}))


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
) -> FastAPI:
    """The FastAPI application of one served model (see the module docstring)."""
    mid = "0x" + served.model_id.hex()
    app = FastAPI(
        title=f"provenance: {served.certificate.model_name}",
        version="1",
        description=(
            f"Predictions of model {mid} ({served.model_digest}), each attested on chain by node "
            f"{attestor.node.address}."
        ),
    )
    state = _Status(served.model_id, registry, status_ttl)

    @app.get("/healthz", response_model=Health)
    def healthz() -> JSONResponse:
        status = state.get()
        body = Health(
            status=status,
            model_id=mid,
            model_name=served.certificate.model_name,
            model_digest=served.model_digest,
            source=served.source,
            image_id=served.image_id,
            node=attestor.node.address,
            pending=attestor.pending(),
            last_error=None if attestor.last_error is None else str(attestor.last_error),
        )
        return JSONResponse(body.model_dump(), status_code=200 if status == "ok" else 503)

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
            422: {"description": "not a list of rows and a method"},
            503: {"description": "the model was revoked (or an ancestor): not serving"},
        },
    )
    async def predict(request: Request, wait: bool = False) -> PredictResponse:
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

    async def _answer(parsed: PredictRequest, body: bytes, wait: bool) -> PredictResponse:
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_answer_sync, parsed, body, wait)

    def _answer_sync(parsed: PredictRequest, body: bytes, wait: bool) -> PredictResponse:
        status = state.get()
        if status != "ok":
            raise HTTPException(503, f"model {mid} is {status} on chain; not serving")
        try:
            predictions = served.predictor(list(parsed.instances), parsed.method)
        except RequestRefused as exc:
            raise HTTPException(400, str(exc)) from None
        out = output_bytes(predictions)
        record = attestor.record(body, out)
        receipt = None
        if wait:
            attestor.flush()
            found = attestor.receipt(record.sequence)
            receipt = None if found is None else found.to_json()
        return PredictResponse(
            predictions=predictions,
            model_id=mid,
            model_digest=served.model_digest,
            sequence=record.sequence,
            input_digest=format_digest(record.input_digest),
            output_digest=format_digest(record.output_digest),
            receipt_url=f"/receipts/{record.sequence}",
            receipt=receipt,
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
    "check_servable",
    "create_app",
    "fetch_certificate",
    "load_served_model",
    "output_bytes",
    "running",
]
