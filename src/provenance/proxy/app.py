"""The attesting reverse proxy: an ASGI application in front of any HTTP inference server.

    upstream = Upstream("http://127.0.0.1:9000", max_response_bytes=16 << 20)
    app = ProxyApp(attestor, registry, upstream, token=Token.of(secret))
    uvicorn.run(app, port=8701)

Every request outside ``/_provenance/`` goes to the upstream (see
:mod:`provenance.proxy.forwarding` for what passes). A 2xx answer is journaled before it leaves:
input digest = SHA-256 of the request body as the proxy received it, output digest = SHA-256 of
the answer body as the client receives it (the upstream's bytes, unchanged). The answer keeps
the upstream's status, headers and body, plus ``X-Provenance-Sequence``,
``X-Provenance-Receipt`` (the absolute URL of its receipt), ``X-Provenance-Input-Digest`` and
``X-Provenance-Output-Digest``. With ``?wait=true`` it leaves once its batch is anchored, and
its receipt URL answers 200 at once. Any other answer (4xx, 5xx) passes unattested, without
those headers; an upstream that cannot be reached is a 502, one that times out a 504, an answer
larger than ``max_response_bytes`` a 502, a request larger than ``max_request_bytes`` a 413:
each ``{"error": "<one line>"}``. A model revoked on chain (or tainted) is a 503 and nothing is
forwarded.

The proxy's own paths live under ``/_provenance/`` so they never shadow the upstream's own
``/healthz`` or ``/v1/...``:

- ``GET /_provenance/receipts/{sequence}``: the receipt (202 while its batch waits, 404 unknown);
- ``GET /_provenance/healthz``: the model's state on chain and the background anchoring (503 with
  the reason when unhealthy);
- ``POST /_provenance/v1/attestations``: the sidecar (:mod:`provenance.proxy.sidecar`):
  ``{"input_digest": "sha256:..", "output_digest": "sha256:.."}`` with
  ``Authorization: Bearer TOKEN``; answers ``{"sequence": n, "receipt_url": ..}``. 404 when the
  proxy was started without a token, 401 without the right one, 400 with the reason for
  anything but two digests. With no upstream (``upstream=None``) the proxy is a sidecar only.

Why the proxy attests without knowing what runs upstream: the node's operator vouches for it,
as the node key authorised for the model on the OutputAttestor. ``provenance serve`` checks the
model files against the certificate; a proxy cannot, so it is for services that load the
certified model themselves.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from provenance.attest import Attestor
from provenance.attest.records import OutputRecord
from provenance.errors import ProvenanceError
from provenance.hashing import format_digest
from provenance.proxy.forwarding import (
    Headers,
    Upstream,
    UpstreamError,
    pass_on,
    query_without_wait,
)
from provenance.proxy.recorder import Recorder
from provenance.proxy.sidecar import (
    MAX_ATTESTATION_BYTES,
    AttestationRefused,
    Token,
    parse_attestation,
)
from provenance.server.served_model import ModelState, one_line
from provenance.server.service import MAX_BACKLOG, MAX_BACKLOG_AGE, ModelSource, anchoring_problem

PREFIX = "/_provenance"
MAX_REQUEST_BYTES = 1 << 20
MAX_RESPONSE_BYTES = 16 << 20

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_HOST = re.compile(rb"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


class _ClientGone(Exception):
    """The client disconnected before its request was read."""


def _error_body(message: str) -> bytes:
    return json.dumps({"error": message}, ensure_ascii=False).encode("utf-8")


async def _respond(send: Send, status: int, headers: Headers, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, status: int, message: str) -> None:
    body = _error_body(message)
    await _respond(
        send,
        status,
        [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        body,
    )


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None once it passes ``limit`` bytes (the rest is not read)."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body", False):
            return bytes(body)


def _header(headers: Headers, name: bytes) -> bytes | None:
    return next((v for n, v in headers if n == name), None)


class ProxyApp:
    """The proxy's ASGI application (see the module docstring). It owns ``attestor`` and
    ``upstream`` from its start: its shutdown anchors what the journal holds, closes the journal
    and the upstream's connections; ``on_shutdown`` then gets a one-line account.

    ``public_url``: the base of receipt URLs (default: the scheme and ``Host`` of each request,
    when the host is a plain host name or address; else the listening address)."""

    def __init__(
        self,
        attestor: Attestor,
        registry: ModelSource,
        upstream: Upstream | None,
        *,
        token: Token | None = None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        public_url: str | None = None,
        status_ttl: float = 5.0,
        max_backlog: int = MAX_BACKLOG,
        max_backlog_age: float = MAX_BACKLOG_AGE,
        on_shutdown: Callable[[str], None] | None = None,
    ) -> None:
        self.attestor = attestor
        self.recorder = Recorder(attestor)
        self.upstream = upstream
        self.token = token
        self.max_request_bytes = max_request_bytes
        self.public_url = None if public_url is None else public_url.rstrip("/")
        self.max_backlog = max_backlog
        self.max_backlog_age = max_backlog_age
        self.on_shutdown = on_shutdown
        self.model_id = attestor.model_id
        self.mid = "0x" + attestor.model_id.hex()
        self.state = ModelState(attestor.model_id, registry, status_ttl)
        self.own = Starlette(
            routes=[
                Route(PREFIX + "/healthz", self.healthz, methods=["GET"]),
                Route(PREFIX + "/receipts/{sequence:int}", self.receipt, methods=["GET"]),
                Route(PREFIX + "/v1/attestations", self.attestation, methods=["POST"]),
                Route("/{path:path}", self.unknown),
            ],
            lifespan=self._lifespan,
        )

    # ------------------------------------------------------------------ dispatch
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or self.upstream is None
            or scope["path"] == PREFIX
            or scope["path"].startswith(PREFIX + "/")
        ):
            await self.own(scope, receive, send)
            return
        with contextlib.suppress(_ClientGone):
            await self._forward(self.upstream, scope, receive, send)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: Starlette) -> AsyncIterator[None]:
        yield
        message = await anyio.to_thread.run_sync(self._shut_down)
        if self.upstream is not None:
            await self.upstream.aclose()
        if self.on_shutdown is not None:
            self.on_shutdown(message)

    def _shut_down(self) -> str:
        node = self.attestor.node.address
        self.recorder.close()
        try:
            self.attestor.flush()
            message = f"stopped; every recorded output is anchored (node {node})"
        except Exception as exc:  # the journal keeps them for the next start
            message = (
                f"stopped; {self.attestor.pending()} recorded outputs are not anchored yet, they "
                f"stay in the journal for the next start (node {node}): {one_line(exc)}"
            )
        self.attestor.close()
        return message

    # ------------------------------------------------------------------ proxying
    async def _forward(
        self, upstream: Upstream, scope: Scope, receive: Receive, send: Send
    ) -> None:
        refused = await self._refusal()
        if refused is not None:
            await _error(send, 503, refused)
            return
        headers: Headers = scope["headers"]
        limit = self.max_request_bytes
        declared = _header(headers, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _error(send, 413, f"the request has {int(declared)} bytes; at most {limit}")
            return
        body = await _read_body(receive, limit)
        if body is None:
            await _error(send, 413, f"the request has more than {limit} bytes")
            return
        query, wait = query_without_wait(scope["query_string"])
        forwarded = pass_on(headers, drop=(b"host", b"content-length"))
        forwarded += self._forwarded_for(scope, headers)
        try:
            answer = await upstream.forward(
                scope["method"],
                scope.get("raw_path") or scope["path"].encode(),
                query,
                forwarded,
                body,
            )
        except UpstreamError as exc:
            await _error(send, exc.status, str(exc))
            return
        out = answer.headers
        if _header(out, b"content-length") is None:
            out.append((b"content-length", str(len(answer.body)).encode()))
        if not answer.ok:  # passed on unattested
            await _respond(send, answer.status, out, answer.body)
            return
        try:
            record = await self.recorder.record(body, answer.body)
        except (ProvenanceError, OSError, sqlite3.Error) as exc:
            await _error(send, 503, f"the answer could not be attested: {one_line(exc)}")
            return
        receipt_url = self._receipt_url(scope, headers, record.sequence)
        if wait:
            problem = await self._anchor(record)
            if problem is not None:
                await _error(send, 503, f"{problem}; its receipt follows at {receipt_url}")
                return
        out += [
            (b"x-provenance-sequence", str(record.sequence).encode()),
            (b"x-provenance-receipt", receipt_url.encode()),
            (b"x-provenance-input-digest", format_digest(record.input_digest).encode()),
            (b"x-provenance-output-digest", format_digest(record.output_digest).encode()),
        ]
        await _respond(send, answer.status, out, answer.body)

    async def _refusal(self) -> str | None:
        """Why nothing may be attested now: the model is not active on chain, or its state
        cannot be read."""
        try:
            status = await self.state.current()
        except ProvenanceError as exc:
            return f"the model's state on chain cannot be read: {one_line(exc)}"
        if status != "ok":
            return f"model {self.mid} is {status} on chain; not attesting"
        return None

    async def _anchor(self, record: OutputRecord) -> str | None:
        """Anchor what the journal holds (``?wait=true``); why it failed, or None."""
        try:
            await anyio.to_thread.run_sync(self.attestor.flush)
        except (ProvenanceError, OSError, sqlite3.Error) as exc:
            return f"output {record.sequence} is recorded but not anchored: {one_line(exc)}"
        return None

    @staticmethod
    def _forwarded_for(scope: Scope, headers: Headers) -> Headers:
        added: Headers = []
        client = scope.get("client")
        if client:
            earlier = _header(headers, b"x-forwarded-for")
            ip = client[0].encode()
            added.append((b"x-forwarded-for", earlier + b", " + ip if earlier else ip))
        host = _header(headers, b"host")
        if host is not None:
            added.append((b"x-forwarded-host", host))
        added.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
        return added

    def _base_url(self, scope: Scope, headers: Headers) -> str:
        if self.public_url is not None:
            return self.public_url
        scheme = scope.get("scheme", "http")
        host = _header(headers, b"host")
        if host is not None and _HOST.fullmatch(host):
            return f"{scheme}://{host.decode('ascii')}"
        server = scope.get("server")
        if server:
            return f"{scheme}://{server[0]}:{server[1]}"
        return ""

    def _receipt_url(self, scope: Scope, headers: Headers, sequence: int) -> str:
        return f"{self._base_url(scope, headers)}{PREFIX}/receipts/{sequence}"

    # ---------------------------------------------------------------- own routes
    async def healthz(self, request: Request) -> JSONResponse:
        problems = []
        try:
            status = await self.state.current()
        except ProvenanceError as exc:
            status = "unknown"
            problems.append(f"the model's state on chain cannot be read: {one_line(exc)}")
        if status not in ("ok", "unknown"):
            problems.insert(0, f"model {self.mid} is {status} on chain; not attesting")
        loop = self.attestor.health()
        problem = anchoring_problem(
            loop, max_backlog=self.max_backlog, max_backlog_age=self.max_backlog_age
        )
        if problem is not None:
            problems.append(problem)
        body = {
            "status": status,
            "model_id": self.mid,
            "model_digest": format_digest(self.attestor.model_digest),
            "node": self.attestor.node.address,
            "upstream": None if self.upstream is None else str(self.upstream),
            "sidecar": self.token is not None,
            "pending": loop.backlog,
            "anchoring": vars(loop),
            "error": "; ".join(problems) or None,
        }
        return JSONResponse(body, status_code=503 if problems else 200)

    async def receipt(self, request: Request) -> JSONResponse:
        sequence: int = request.path_params["sequence"]
        if sequence >= self.attestor.next_sequence:
            return JSONResponse(
                {"error": f"no output with sequence {sequence} from this node"}, status_code=404
            )
        found = await anyio.to_thread.run_sync(self.attestor.receipt, sequence)
        if found is None or found.transaction is None:
            return JSONResponse(
                {"status": "pending", "sequence": sequence, "detail": "not anchored yet"},
                status_code=202,
            )
        return JSONResponse(found.to_json())

    async def attestation(self, request: Request) -> Response:
        if self.token is None:
            return _json_error(
                404, "the sidecar API is off: start the proxy with --token-file or a token variable"
            )
        if not self.token.admits(request.headers.get("authorization", "").encode("latin-1")):
            response = _json_error(401, "a valid Authorization: Bearer token is required")
            response.headers["www-authenticate"] = 'Bearer realm="provenance"'
            return response
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != "application/json":
            return _json_error(
                415, f"the request must be sent as application/json, not {kind or 'untyped'}"
            )
        body = await _read_body(request.receive, MAX_ATTESTATION_BYTES)
        if body is None:
            return _json_error(413, f"the request has more than {MAX_ATTESTATION_BYTES} bytes")
        try:
            input_digest, output_digest = parse_attestation(body)
        except AttestationRefused as exc:
            return _json_error(400, str(exc))
        refused = await self._refusal()
        if refused is not None:
            return _json_error(503, refused)
        try:
            record = await self.recorder.record_digests(input_digest, output_digest)
        except (ProvenanceError, OSError, sqlite3.Error) as exc:
            return _json_error(503, f"the output could not be attested: {one_line(exc)}")
        headers: Headers = request.scope["headers"]
        url = self._receipt_url(request.scope, headers, record.sequence)
        if request.query_params.get("wait", "").lower() in ("true", "1", "yes"):
            problem = await self._anchor(record)
            if problem is not None:
                return _json_error(503, f"{problem}; its receipt follows at {url}")
        return JSONResponse(
            {
                "sequence": record.sequence,
                "receipt_url": url,
                "input_digest": format_digest(input_digest),
                "output_digest": format_digest(output_digest),
            }
        )

    async def unknown(self, request: Request) -> Response:
        where = "this sidecar has no upstream" if self.upstream is None else "not a proxy path"
        return _json_error(404, f"no such path {request.url.path[:200]!r}: {where}")


def server_options(loop: str = "auto") -> dict[str, Any]:
    """How ``provenance proxy`` runs uvicorn (``uvicorn.run(app, host=.., port=..,
    **server_options())``; benchmarks/proxy.py serves it the same way): its C HTTP parser
    (httptools, in the ``server`` extra) and uvloop when installed (``loop="auto"``), warnings
    only, no access log."""
    return {"http": "httptools", "loop": loop, "log_level": "warning", "access_log": False}


def _json_error(status: int, message: str) -> Response:
    return Response(_error_body(message), status_code=status, media_type="application/json")


__all__ = [
    "MAX_REQUEST_BYTES",
    "MAX_RESPONSE_BYTES",
    "PREFIX",
    "ProxyApp",
    "server_options",
]
