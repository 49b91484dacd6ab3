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
- no header the client did not send is added, but ``Host`` and ``Content-Length`` (an HTTP
  client's default ``Accept-Encoding`` would make the upstream compress an answer the client
  never asked to decode).

An upstream that cannot be reached or answers garbage is an :class:`UpstreamError` carrying the
HTTP status the client gets (502, or 504 on a timeout).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import aiohttp
from yarl import URL

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
SKIPPED_AUTO_HEADERS = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
MAX_HEADER_LINE = 16 << 10
"""The longest status or header line an upstream may send (aiohttp's default is 8 KiB)."""
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
    :class:`aiohttp.ClientSession` (keep-alive connections, ``timeout`` seconds to wait for a
    pooled connection and between reads, ``connect_timeout`` to connect), created on the first
    request, in the server's event loop. Redirects, proxies from the environment and cookies
    are neither followed nor kept: the answer the client gets is the upstream's own, and no
    client's cookie reaches another.

    Why aiohttp and not httpx: on the forwarding path httpx's client costs about 1.4 ms of CPU
    per request, aiohttp's (C parser) under 0.2 ms (benchmarks/proxy.py)."""

    def __init__(
        self,
        base_url: str,
        *,
        max_response_bytes: int,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_connections: int = 100,
    ) -> None:
        try:
            url = URL(base_url)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"the upstream {base_url!r} is not a URL: {exc}") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"the upstream {base_url!r} is not an http:// or https:// URL")
        if url.query_string or url.fragment:
            raise ConfigError(f"the upstream {base_url!r} must not carry a query or fragment")
        self.url = url
        self._origin = str(url.origin())
        self._prefix = url.raw_path.rstrip("/")
        self.max_response_bytes = max_response_bytes
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=connect_timeout, sock_read=timeout
        )
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def __str__(self) -> str:
        return str(self.url)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self.max_connections,
                    # below the 5 s idle timeout of common servers (Node's http among them), so
                    # a pooled connection is not reused just as the upstream closes it
                    keepalive_timeout=4.0,
                ),
                timeout=self.timeout,
                # no header the client did not send: aiohttp's own Accept, Accept-Encoding,
                # User-Agent, and the Content-Type it would give a body
                skip_auto_headers=SKIPPED_AUTO_HEADERS,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                max_line_size=MAX_HEADER_LINE,
                max_field_size=MAX_HEADER_LINE,
            )
        return self._session

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
        target = self._prefix + raw_path.decode("latin-1")
        if query:
            target += "?" + query.decode("latin-1")
        try:
            async with self._client().request(
                method,
                URL(self._origin + target, encoded=True),
                headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers],
                data=body or None,
                allow_redirects=False,
            ) as response:
                raw = await self._read(response)
                status, received = response.status, response.raw_headers
        except UpstreamError:
            raise
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too
            raise UpstreamError(
                f"the upstream {self.url} did not answer in time ({_reason(exc)})", 504
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"the upstream {self.url} failed: {_reason(exc)}") from exc
        keep = {b"content-length"} if method == "HEAD" else set()
        passed = pass_on(received, drop=frozenset({b"content-length"} - keep))
        return Answer(status, passed, raw)

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.max_response_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise UpstreamError(
                f"the upstream's answer has {declared} bytes; the proxy passes on at most {limit}"
            )
        body = bytearray()
        try:
            async for chunk in response.content.iter_any():
                body += chunk
                if len(body) > limit:
                    raise UpstreamError(
                        f"the upstream's answer has more than {limit} bytes; the proxy passes on "
                        f"at most {limit}"
                    )
        except TimeoutError as exc:
            raise UpstreamError(
                f"the upstream {self.url} did not finish its answer in time ({_reason(exc)})", 504
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"the upstream {self.url} broke off its answer: {_reason(exc)}"
            ) from exc
        return bytes(body)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


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
