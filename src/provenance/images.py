"""Docker: the engine connection (and, later, model images moved through IPFS)."""

from __future__ import annotations

import docker
import docker.errors
import requests

from provenance.errors import ServiceError


def engine_version(host: str, *, timeout: float = 10.0) -> str:
    """The version of the Docker engine at ``host``; ServiceError when it does not answer."""
    try:
        client = docker.DockerClient(base_url=host, timeout=int(timeout))
        try:
            return str(client.version()["Version"])
        finally:
            client.close()
    except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
        raise ServiceError(f"Docker engine at {host} does not answer: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
