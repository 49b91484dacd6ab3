"""Forwarding one request to the upstream inference server and reading its answer, bounded.

    upstream = Upstream("http://127.0.0.1:9000", max_response_bytes=16 << 20)
    answer = await upstream.forward("POST", b"/v1/predict", b"", headers, body)
    answer.status, answer.headers, answer.body          # the bytes exactly as the upstream sent

What passes, and what does not:

- the method, the raw path (percent-encoding kept), the query string without the proxy's own
  ``wait`` parameter, the body, and every header except the hop-by-hop ones (RFC 9110 7.6.1:
  ``Connection`` and the headers it names, ``Keep-Alive``, ``TE``, ``Trailer``,
  ``Transfer-Encoding``, ``Upgrade``, ``Proxy-*``), ``Host`` (the upstream gets its own; the
  client's is passed as ``X-Forwarded-Host``), ``Content-Length`` (recomputed) and every
  ``X-Provenance-*`` header: those are the proxy's to set, never a client's or an upstream's;
- the answer's body is read raw (a ``Content-Encoding`` the upstream chose is kept, and the
  digest is over the encoded bytes the client receives), streamed answers included: they are
  buffered up to ``max_response_bytes`` and sent on with a ``Content-Length``;
- no header the client did not send is added (httpx's default ``Accept-Encoding`` would make
  the upstream compress an answer the client never asked to decode).

An upstream that cannot be reached or answers garbage is an :class:`UpstreamError` carrying the
HTTP status the client gets (502, or 504 on a timeout).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httpx

from provenance.errors import ConfigError, ServiceError

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
OWN_HEADER_PREFIX = b"x-provenance-"
"""Headers the proxy sets; a client's or an upstream's are dropped, never passed on."""
WAIT_PARAMETER = b"wait"
"""``?wait=true``: the proxy's own query parameter, not forwarded."""


class UpstreamError(ServiceError):
    """The upstream could not be reached, timed out, or its answer cannot be passed on;
    ``status`` is what the client gets (502 or 504)."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Answer:
    """The upstream's answer: status, headers as they pass on to the client, raw body."""

    status: int
    headers: Headers
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _dropped(headers: Sequence[tuple[bytes, bytes]], extra: frozenset[bytes]) -> set[bytes]:
    """Names not to pass on: hop-by-hop, the ones ``Connection`` names, our own, ``extra``."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    return set(HOP_BY_HOP | extra) | named


def pass_on(headers: Sequence[tuple[bytes, bytes]], *, drop: Iterable[bytes] = ()) -> Headers:
    """``headers`` without the hop-by-hop ones, ``X-Provenance-*`` and ``drop`` (lower case)."""
    dropped = _dropped(headers, frozenset(drop))
    return [
        (name, value)
        for name, value in headers
        if (low := name.lower()) not in dropped and not low.startswith(OWN_HEADER_PREFIX)
    ]


def query_without_wait(query: bytes) -> tuple[bytes, bool]:
    """The query string without the proxy's ``wait`` parameter (the rest byte for byte), and
    whether it asked to wait (``wait=true``, ``wait=1``, or a bare ``wait``)."""
    if WAIT_PARAMETER not in query:
        return query, False
    kept, wait = [], False
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == WAIT_PARAMETER:
            wait = value.lower() in (b"", b"true", b"1", b"yes")
        else:
            kept.append(part)
    return b"&".join(kept), wait


class Upstream:
    """The upstream inference server at ``base_url``, through one pooled
    :class:`httpx.AsyncClient` (keep-alive connections, ``timeout`` seconds per read, write and
    pool wait, ``connect_timeout`` to connect). Redirects and proxies from the environment are
    not followed: the answer the client gets is the upstream's own."""

    def __init__(
        self,
        base_url: str,
        *,
        max_response_bytes: int,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_connections: int = 100,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"the upstream {base_url!r} is not an http:// or https:// URL")
        if url.query or url.fragment:
            raise ConfigError(f"the upstream {base_url!r} must not carry a query or fragment")
        self.url = url
        self._prefix = url.raw_path.rstrip(b"/")
        self.max_response_bytes = max_response_bytes
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            follow_redirects=False,
            trust_env=False,
        )

    def __str__(self) -> str:
        return str(self.url)

    async def forward(
        self,
        method: str,
        raw_path: bytes,
        query: bytes,
        headers: Headers,
        body: bytes,
    ) -> Answer:
        """Send one request (``headers`` already passed through :func:`pass_on`) and read the
        answer, at most ``max_response_bytes`` of body (UpstreamError beyond)."""
        target = self._prefix + raw_path + (b"?" + query if query else b"")
        request = httpx.Request(
            method,
            self.url.copy_with(raw_path=target),
            headers=headers,
            content=body,
        )
        try:
            response = await self.client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamError(
                f"the upstream {self.url} did not answer in time ({_reason(exc)})", 504
            ) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"the upstream {self.url} failed: {_reason(exc)}") from exc
        try:
            raw = await self._read(response)
        finally:
            await response.aclose()
        keep = {b"content-length"} if method == "HEAD" else set()
        passed = pass_on(response.headers.raw, drop=frozenset({b"content-length"} - keep))
        return Answer(response.status_code, passed, raw)

    async def _read(self, response: httpx.Response) -> bytes:
        limit = self.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise UpstreamError(
                f"the upstream's answer has {declared} bytes; the proxy passes on at most {limit}"
            )
        body = bytearray()
        try:
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > limit:
                    raise UpstreamError(
                        f"the upstream's answer has more than {limit} bytes; the proxy passes on "
                        f"at most {limit}"
                    )
        except httpx.TimeoutException as exc:
            raise UpstreamError(
                f"the upstream {self.url} did not finish its answer in time ({_reason(exc)})", 504
            ) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"the upstream {self.url} broke off its answer: {_reason(exc)}"
            ) from exc
        return bytes(body)

    async def aclose(self) -> None:
        await self.client.aclose()


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


__all__ = [
    "HOP_BY_HOP",
    "OWN_HEADER_PREFIX",
    "Answer",
    "Headers",
    "Upstream",
    "UpstreamError",
    "pass_on",
    "query_without_wait",
]
