"""HTTP plumbing shared by the kubo RPC client and the gateway client: one httpx client per
endpoint, retries with backoff on connection failures only, errors that name the endpoint."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from provenance.errors import ServiceError

Body = Callable[[], Iterator[bytes]]
"""Makes a fresh request body for each attempt (a generator does not rewind)."""

_RETRIED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)


class Endpoint:
    """An HTTP endpoint named ``label`` (e.g. ``IPFS API http://127.0.0.1:5001``) in errors."""

    def __init__(
        self,
        base_url: str,
        label: str,
        *,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 0.2,
    ) -> None:
        self.label = label
        self._http = httpx.Client(
            base_url=base_url,
            headers=headers or {},
            auth=httpx.BasicAuth(*auth) if auth else None,
            timeout=timeout,
        )
        self._retries = retries
        self._backoff = backoff

    def close(self) -> None:
        self._http.close()

    def open(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: dict[str, Any] | None = None,
        body: Body | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        """Send a request and return the response with its body not yet read (the caller
        closes it). Connection failures are retried with exponential backoff; any other
        failure, and a status outside ``ok``, raise ServiceError naming the endpoint."""
        attempt = 0
        while True:
            request = self._http.build_request(
                method, path, params=params, headers=headers, content=body() if body else None
            )
            try:
                response = self._http.send(request, stream=True)
            except _RETRIED as exc:
                if attempt >= self._retries:
                    raise ServiceError(f"{self.label} is unreachable ({what}): {exc}") from exc
                time.sleep(self._backoff * 2**attempt)
                attempt += 1
                continue
            except httpx.HTTPError as exc:
                raise ServiceError(f"{self.label} {what} failed: {exc}") from exc
            if response.status_code not in ok:
                try:
                    response.read()
                except httpx.HTTPError:
                    pass
                finally:
                    response.close()
                raise ServiceError(
                    f"{self.label} {what} answered {response.status_code}: {_message(response)}"
                )
            return response

    def call(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        """Like :meth:`open`, with the body read."""
        response = self.open(method, path, what, **kwargs)
        try:
            response.read()
        except httpx.HTTPError as exc:
            raise ServiceError(f"{self.label} {what} failed: {exc}") from exc
        finally:
            response.close()
        return response

    @contextlib.contextmanager
    def stream(self, method: str, path: str, what: str, **kwargs: Any) -> Iterator[httpx.Response]:
        response = self.open(method, path, what, **kwargs)
        try:
            yield response
        finally:
            response.close()

    def chunks(self, response: httpx.Response, what: str) -> Iterator[bytes]:
        """The body of a streamed response; transport failures become ServiceError."""
        try:
            yield from response.iter_bytes()
        except httpx.HTTPError as exc:
            raise ServiceError(f"{self.label} {what} failed while streaming: {exc}") from exc

    def lines(self, response: httpx.Response, what: str) -> Iterator[str]:
        try:
            for line in response.iter_lines():
                if line.strip():
                    yield line
        except httpx.HTTPError as exc:
            raise ServiceError(f"{self.label} {what} failed while streaming: {exc}") from exc


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(data, dict) and "Message" in data:
        return str(data["Message"])[:300]
    return response.text.strip()[:300]
