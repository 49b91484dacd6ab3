"""The inference entrypoint of model images: a standalone program (standard library only, plus
whatever the pickled model needs) that :func:`provenance.images.build_model_image` copies into
every image as ``/opt/provenance/entrypoint.py``. It is not imported by provenance itself.

It unpickles the model once, then answers predictions, as JSON, from stdin (or ``--input``)
to stdout, or over HTTP with ``--serve HOST:PORT`` or ``--serve unix:PATH`` (a Unix socket,
so a container without any network can serve through a mounted folder)::

    $ echo '[[5.1, 3.5, 1.4, 0.2]]' | docker run -i --rm --network none IMAGE
    {"predictions": [0]}
    $ docker run --rm -p 8080:8080 IMAGE --serve 0.0.0.0:8080
    $ curl -d '{"instances": [[5.1, 3.5, 1.4, 0.2]], "method": "predict_proba"}' \\
          localhost:8080/predict

A request is a list of rows (each a list of feature values), or an object
``{"instances": rows, "method": "predict" | "predict_proba" | "decision_function" | ...}``.
The answer is ``{"predictions": [...]}`` (numpy's ``tolist()`` of the method's result, so
floats round-trip exactly). Bad input: a message on stderr and exit code 2 (stdin mode), or
HTTP 400 with ``{"error": ...}``. ``GET /health`` answers ``{"status": "ok"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import socketserver
import sys
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform")
MAX_REQUEST = 64 << 20


class RequestError(ValueError):
    """The request is not a list of rows or names a method the model lacks."""


def load_model(path: Path) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


def predict(model: Any, request: Any, method: str = "predict") -> dict[str, Any]:
    """The answer to one request (a parsed JSON value)."""
    rows = request
    if isinstance(request, dict):
        if "instances" not in request:
            raise RequestError('a request object needs "instances": a list of rows')
        rows = request["instances"]
        method = request.get("method", method)
    if not isinstance(rows, list):
        raise RequestError("the instances must be a list of rows")
    if method not in METHODS:
        raise RequestError(f"unknown method {method!r}; use one of: {', '.join(METHODS)}")
    function = getattr(model, method, None)
    if function is None:
        raise RequestError(f"the model has no method {method}")
    import numpy as np

    try:
        result = function(np.asarray(rows))
    except (ValueError, TypeError) as exc:
        raise RequestError(f"{method} failed: {exc}") from exc
    values = result.tolist() if hasattr(result, "tolist") else list(result)
    return {"predictions": values}


def _handler(model: Any, method: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._answer(200, {"status": "ok"})
            else:
                self._answer(404, {"error": f"no such path {self.path}"})

        def do_POST(self) -> None:
            if self.path != "/predict":
                self._answer(404, {"error": f"no such path {self.path}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_REQUEST:
                self._answer(413, {"error": f"a request is at most {MAX_REQUEST} bytes"})
                return
            try:
                self._answer(200, predict(model, json.loads(self.rfile.read(length)), method))
            except (RequestError, json.JSONDecodeError) as exc:
                self._answer(400, {"error": str(exc)})

        def address_string(self) -> str:
            # a Unix socket's peer has no address
            return str(self.client_address[0]) if self.client_address else "unix"

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return Handler


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """HTTP over a Unix socket, one thread per connection."""

    daemon_threads = True

    def server_bind(self) -> None:
        path = str(self.server_address)
        if os.path.exists(path):
            os.unlink(path)
        super().server_bind()
        os.chmod(path, 0o666)  # whoever may reach the folder may ask


def server(
    model: Any, address: str, method: str = "predict"
) -> ThreadingHTTPServer | UnixHTTPServer:
    """An HTTP server answering ``POST /predict`` at ``HOST:PORT`` or ``unix:PATH`` (not yet
    serving)."""
    if address.startswith("unix:"):
        return UnixHTTPServer(address.removeprefix("unix:"), _handler(model, method))
    host, _, port = address.rpartition(":")
    return ThreadingHTTPServer((host or "0.0.0.0", int(port)), _handler(model, method))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="entrypoint", description="Serve predictions of a pickled model."
    )
    parser.add_argument("--model", type=Path, required=True, help="the pickled model")
    parser.add_argument("--method", default="predict", choices=METHODS)
    parser.add_argument("--input", type=Path, help="read the request from this file, not stdin")
    parser.add_argument("--serve", metavar="HOST:PORT|unix:PATH", help="answer over HTTP instead")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    if args.serve:
        with server(model, args.serve, args.method) as httpd:
            sys.stderr.write(f"serving predictions at {args.serve} (POST /predict)\n")
            httpd.serve_forever()
        return 0
    text = args.input.read_text(encoding="utf-8") if args.input else sys.stdin.read()
    try:
        answer = predict(model, json.loads(text), args.method)
    except (RequestError, json.JSONDecodeError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
