"""A client of kubo's RPC API (``/api/v0``) over httpx.

Every kubo RPC call is a POST. Errors name the endpoint; connection errors are retried with
backoff, HTTP errors are not.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from provenance.errors import ServiceError


class Kubo:
    """The RPC API of one kubo node (or an IPFS Cluster proxy that speaks it)."""

    def __init__(
        self,
        api_url: str,
        *,
        auth: str | None = None,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 0.2,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        headers = {"Authorization": auth} if auth else {}
        self._http = httpx.Client(
            base_url=f"{self.api_url}/api/v0", headers=headers, timeout=timeout
        )
        self._retries = retries
        self._backoff = backoff

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Kubo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, command: str, **params: Any) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._http.post(f"/{command}", params=params)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                if attempt >= self._retries:
                    raise ServiceError(
                        f"IPFS API {self.api_url} is unreachable ({command}): {exc}"
                    ) from exc
                time.sleep(self._backoff * 2**attempt)
                attempt += 1
                continue
            except httpx.HTTPError as exc:
                raise ServiceError(f"IPFS API {self.api_url} {command} failed: {exc}") from exc
            if response.status_code != 200:
                raise ServiceError(
                    f"IPFS API {self.api_url} {command} answered {response.status_code}: "
                    f"{_message(response)}"
                )
            return response

    def version(self) -> str:
        """The node's kubo version, e.g. ``0.43.1``."""
        return str(self._post("version").json()["Version"])

    def id(self) -> str:
        """The node's peer id."""
        return str(self._post("id").json()["ID"])


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("Message", response.text))[:300]
    except ValueError:
        return response.text[:300]
