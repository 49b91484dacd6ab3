"""Attestation for any inference service: ``provenance proxy``, an attesting reverse proxy in
front of any HTTP inference server, and its sidecar API for services that answer by themselves.

- :mod:`~provenance.proxy.forwarding`: what passes to the upstream and back, bounded;
- :mod:`~provenance.proxy.sidecar`: the sidecar's bearer token and request (pure);
- :mod:`~provenance.proxy.recorder`: :class:`Recorder`, journaling from the event loop, one
  commit per batch of requests;
- :mod:`~provenance.proxy.app`: :class:`ProxyApp`, the ASGI application that forwards, journals
  each 2xx answer with :class:`provenance.attest.Attestor` and serves receipts.
"""

from provenance.proxy.app import (
    MAX_REQUEST_BYTES,
    MAX_RESPONSE_BYTES,
    PREFIX,
    ProxyApp,
    server_options,
)
from provenance.proxy.forwarding import Answer, Upstream, UpstreamError, pass_on, query_without_wait
from provenance.proxy.recorder import Recorder
from provenance.proxy.sidecar import AttestationRefused, Token, parse_attestation

__all__ = [
    "MAX_REQUEST_BYTES",
    "MAX_RESPONSE_BYTES",
    "PREFIX",
    "Answer",
    "AttestationRefused",
    "ProxyApp",
    "Recorder",
    "Token",
    "Upstream",
    "UpstreamError",
    "parse_attestation",
    "pass_on",
    "query_without_wait",
    "server_options",
]
