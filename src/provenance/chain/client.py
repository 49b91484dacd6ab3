"""Connecting to an Ethereum JSON-RPC endpoint, with errors that name it."""

from __future__ import annotations

import requests
from web3 import Web3
from web3.exceptions import Web3Exception

from provenance.errors import ServiceError


def connect(rpc_url: str, *, timeout: float = 10.0) -> Web3:
    """A Web3 client for ``rpc_url``; raises ServiceError when nothing answers there."""
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    try:
        w3.eth.chain_id  # noqa: B018 - the probe
    except (requests.RequestException, Web3Exception, OSError, ValueError) as exc:
        raise ServiceError(f"chain RPC {rpc_url} is unreachable: {_reason(exc)}") from exc
    return w3


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, requests.ConnectionError):
        return "connection refused or host unreachable"
    return text[:200]
