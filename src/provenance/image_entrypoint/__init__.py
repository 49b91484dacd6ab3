"""The inference entrypoint of model images: a standalone program (standard library only, plus
the library that runs the model's format) that :func:`provenance.images.build_model_image`
copies into every image as ``/opt/provenance/entrypoint.py``. ``provenance serve --source
artifacts`` runs the same runtimes in-process (:mod:`provenance.server.model_files`), so a
model answers the same from its files as from its image.

It loads the model once (``--model FILE --format NAME``; the format as the certificate records
it, default ``pickle``), then answers predictions, as JSON, from stdin (or ``--input``) to
stdout, or over HTTP with ``--serve HOST:PORT`` or ``--serve unix:PATH`` (a Unix socket, so a
container without any network can serve through a mounted folder)::

    $ echo '[[5.1, 3.5, 1.4, 0.2]]' | docker run -i --rm --network none IMAGE
    {"predictions": [0]}
    $ docker run --rm -p 8080:8080 IMAGE --serve 0.0.0.0:8080
    $ curl -d '{"instances": [[5.1, 3.5, 1.4, 0.2]], "method": "predict_proba"}' \\
          localhost:8080/predict

Formats and their runtimes (each library is imported only when its format is loaded):

- ``pickle``, ``joblib``: the unpickled scikit-learn estimator; the methods it has of
  ``predict``, ``predict_proba``, ``predict_log_proba``, ``decision_function``, ``transform``.
- ``onnx``: ONNX Runtime on the CPU; ``predict`` feeds the rows to the first input (as its
  element type; reshaped when that input has a fixed shape of rank above 2) and answers the
  first output. ``{"inputs": {"<name>": value, ...}}`` feeds inputs by name and answers every
  output by name.
- ``torchscript``: ``torch.jit.load`` on the CPU, under ``torch.no_grad()``; ``predict`` calls
  the module on the rows as one float32 tensor (the first tensor of a tuple it answers).
- ``xgboost``, ``lightgbm``: the Booster; ``predict``, and ``decision_function`` for its raw
  margin.

A request is a list of rows (each a list of feature values), or an object
``{"instances": rows, "method": "predict" | "predict_proba" | "decision_function" | ...}``.
The answer is ``{"predictions": [...]}`` (the result's ``tolist()``, so floats round-trip
exactly). Bad input: a message on stderr and exit code 2 (stdin mode), or HTTP 400 with
``{"error": ...}``; a model that does not load: a message and exit code 1. ``GET /health``
answers ``{"status": "ok"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import socketserver
import sys
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function", "transform")
MAX_REQUEST = 64 << 20

FORMAT_RUNTIMES = {
    "pickle": "sklearn",
    "joblib": "sklearn",
    "onnx": "onnxruntime",
    "torchscript": "torch",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
}
"""The formats this program serves, by the name certificates record, and the library that runs
each (``provenance.model_formats.FORMATS`` says the same: a test keeps them equal)."""

_TITLES = {
    "sklearn": "scikit-learn models",
    "onnxruntime": "ONNX models",
    "torch": "TorchScript models",
    "xgboost": "XGBoost models",
    "lightgbm": "LightGBM models",
}
_PACKAGES = {
    "sklearn": "scikit-learn",
    "onnxruntime": "onnxruntime",
    "torch": "torch",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
}


class RequestError(ValueError):
    """The request is not a list of rows or names a method the model lacks."""


class ModelLoadError(RuntimeError):
    """The model file does not load with its format's library (the message says why)."""


class MissingRuntime(ModelLoadError):
    """The library that runs this format is not installed (the message names its package)."""


class Runtime:
    """A loaded model answering ``predict(rows, method)``: ``methods`` are the ones it has
    (the first is its default). Subclasses wrap one library each."""

    kind = "models"
    methods: tuple[str, ...] = ("predict",)

    def predict(self, rows: Any, method: str = "predict") -> list[Any]:
        if method not in self.methods:
            raise RequestError(
                f"the model has no method {method} ({self.kind} answer {', '.join(self.methods)})"
            )
        try:
            result = self._run(rows, method)
        except RequestError:
            raise
        # each library raises its own errors on rows it cannot take (a wrong count of
        # features, text where numbers belong): the request's fault, said in one line
        except Exception as exc:
            raise RequestError(f"the model refused the instances: {_first_line(exc)}") from exc
        return result.tolist() if hasattr(result, "tolist") else list(result)

    def _run(self, rows: Any, method: str) -> Any:
        raise NotImplementedError


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class SklearnRuntime(Runtime):
    """An unpickled estimator (scikit-learn or anything with its methods)."""

    kind = "scikit-learn models"

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.methods = tuple(m for m in METHODS if callable(getattr(estimator, m, None)))

    def predict(self, rows: Any, method: str = "predict") -> list[Any]:
        function = getattr(self.estimator, method, None)
        if function is None:
            raise RequestError(f"the model has no method {method}")
        import numpy as np

        try:
            result = function(np.asarray(rows))
        except (ValueError, TypeError) as exc:
            raise RequestError(f"the model refused the instances: {exc}") from exc
        return result.tolist() if hasattr(result, "tolist") else list(result)


_ONNX_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


class OnnxRuntime(Runtime):
    """An ONNX model in ONNX Runtime (CPU). Rows go to the model's first input, as an array of
    its declared element type (float32 for a float input); when that input has a fixed shape
    of rank above 2 (``[N, 1, 28, 28]``), each row is that shape flattened, and is reshaped.
    ``predict`` answers the first output; :meth:`run_named` feeds inputs by name and answers
    every output by name."""

    kind = "ONNX models"

    def __init__(self, path: Path) -> None:
        ort = _library("onnxruntime")
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types
            raise ModelLoadError(f"{path.name} does not load as an ONNX model: {exc}") from exc
        self.inputs = list(self.session.get_inputs())
        self.outputs = [o.name for o in self.session.get_outputs()]

    def _array(self, spec: Any, value: Any, *, reshape: bool) -> Any:
        import numpy as np

        array = np.asarray(value, dtype=_ONNX_TYPES.get(spec.type, "float32"))
        dims = list(spec.shape)[1:]
        if (
            reshape
            and array.ndim == 2
            and len(dims) > 1
            and all(isinstance(d, int) for d in dims)
            and array.shape[1] == int(np.prod(dims))
        ):
            array = array.reshape((array.shape[0], *dims))
        return array

    def _run(self, rows: Any, method: str) -> Any:
        if len(self.inputs) != 1:
            names = ", ".join(i.name for i in self.inputs)
            raise RequestError(
                f"the model has {len(self.inputs)} inputs ({names}): name them, "
                '{"inputs": {"<name>": rows, ...}}'
            )
        first = self.inputs[0]
        feed = {first.name: self._array(first, rows, reshape=True)}
        return self.session.run(self.outputs[:1], feed)[0]

    def run_named(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Every output by name, for inputs given by name."""
        specs = {i.name: i for i in self.inputs}
        if unknown := sorted(set(inputs) - set(specs)):
            raise RequestError(
                f"the model has no input {unknown[0]!r}; its inputs: {', '.join(specs)}"
            )
        if missing := [n for n in specs if n not in inputs]:
            raise RequestError(f"the request lacks the model's input {missing[0]!r}")
        try:
            feed = {n: self._array(specs[n], v, reshape=True) for n, v in inputs.items()}
            values = self.session.run(self.outputs, feed)
        except Exception as exc:  # numpy's and onnxruntime's own errors
            raise RequestError(f"the model refused the inputs: {_first_line(exc)}") from exc
        return {
            name: value.tolist() if hasattr(value, "tolist") else value
            for name, value in zip(self.outputs, values, strict=True)
        }


class TorchScriptRuntime(Runtime):
    """A TorchScript module (``torch.jit.save``), on the CPU, in eval mode, without gradients.
    Rows go in as one float32 tensor; a module answering a tuple answers its first tensor."""

    kind = "TorchScript models"

    def __init__(self, path: Path) -> None:
        torch = _library("torch")
        try:
            self.module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # torch raises RuntimeError and more
            raise ModelLoadError(f"{path.name} does not load as TorchScript: {exc}") from exc
        self.module.eval()
        self.torch = torch

    def _run(self, rows: Any, method: str) -> Any:
        torch = self.torch
        with torch.no_grad():
            tensor = torch.tensor(rows, dtype=torch.float32)
            try:
                result = self.module(tensor)
            except RuntimeError as exc:  # TorchScript's interpreter says why on its last line
                reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
                reason = reason.removeprefix("RuntimeError: ")
                raise RequestError(f"the model refused the instances: {reason}") from exc
        if isinstance(result, tuple | list) and result:
            result = result[0]
        if not isinstance(result, torch.Tensor):
            raise RequestError(f"the model answered a {type(result).__name__}, not a tensor")
        return result


class XGBoostRuntime(Runtime):
    """An XGBoost Booster (``save_model``'s JSON or UBJSON). ``predict`` is the Booster's
    prediction (probabilities for a logistic objective), ``decision_function`` its margin."""

    kind = "XGBoost models"
    methods = ("predict", "decision_function")

    def __init__(self, path: Path) -> None:
        import threading

        self.xgb = _library("xgboost")
        try:
            self.booster = self.xgb.Booster(model_file=str(path))
        except Exception as exc:  # XGBoostError and the JSON reader's
            raise ModelLoadError(f"{path.name} does not load as an XGBoost model: {exc}") from exc
        self.lock = threading.Lock()

    def _run(self, rows: Any, method: str) -> Any:
        import numpy as np

        array = np.asarray(rows, dtype=np.float32)
        wanted = self.booster.num_features()
        if array.ndim != 2 or array.shape[1] != wanted:
            # XGBoost would answer rows of too few features as if the rest were missing
            width = array.shape[1] if array.ndim == 2 else f"a {array.ndim}-dimensional array"
            raise RequestError(
                f"the model refused the instances: it takes rows of {wanted} features, not {width}"
            )
        data = self.xgb.DMatrix(array, feature_names=self.booster.feature_names)
        with self.lock:
            return self.booster.predict(data, output_margin=method == "decision_function")


class LightGBMRuntime(Runtime):
    """A LightGBM Booster (its model text file). ``predict`` is the Booster's prediction,
    ``decision_function`` its raw score."""

    kind = "LightGBM models"
    methods = ("predict", "decision_function")

    def __init__(self, path: Path) -> None:
        import threading

        lgb = _library("lightgbm")
        try:
            self.booster = lgb.Booster(model_file=str(path))
        except Exception as exc:  # LightGBMError
            raise ModelLoadError(f"{path.name} does not load as a LightGBM model: {exc}") from exc
        self.lock = threading.Lock()

    def _run(self, rows: Any, method: str) -> Any:
        import numpy as np

        with self.lock:
            return self.booster.predict(
                np.asarray(rows, dtype=np.float64), raw_score=method == "decision_function"
            )


def _library(runtime: str) -> Any:
    """Import the library of ``runtime`` (inside the loader, so this program imports with the
    standard library alone); MissingRuntime names the package when it is absent."""
    import importlib

    try:
        return importlib.import_module(runtime)
    except ImportError as exc:
        raise MissingRuntime(
            f"serving {_TITLES[runtime]} needs {_PACKAGES[runtime]}, which is not installed ({exc})"
        ) from exc


def load_model(path: Path) -> Any:
    """Unpickle the model file at ``path`` (a pickle; joblib's files when joblib is installed)."""
    try:
        import joblib  # type: ignore[import-untyped]
    except ImportError:
        with open(path, "rb") as f:
            return pickle.load(f)
    return joblib.load(path)


def load_runtime(path: Path, format: str = "pickle") -> Runtime:
    """The model at ``path`` (the entry file of its format), loaded by its format's library.
    ValueError for a format this program does not serve; MissingRuntime when the library is
    not installed; ModelLoadError when the file does not load."""
    runtime = FORMAT_RUNTIMES.get("pickle" if format == "pickle-5" else format)
    if runtime is None:
        raise ValueError(f"cannot serve format {format!r}; served: {', '.join(FORMAT_RUNTIMES)}")
    if runtime == "sklearn":
        return SklearnRuntime(load_model(path))
    loaders: dict[str, Callable[[Path], Runtime]] = {
        "onnxruntime": OnnxRuntime,
        "torch": TorchScriptRuntime,
        "xgboost": XGBoostRuntime,
        "lightgbm": LightGBMRuntime,
    }
    return loaders[runtime](path)


def as_runtime(model: Any) -> Runtime:
    """A Runtime as is; anything else (an unpickled estimator) wrapped as scikit-learn's."""
    return model if isinstance(model, Runtime) else SklearnRuntime(model)


def predict(model: Any, request: Any, method: str = "predict") -> dict[str, Any]:
    """The answer to one request (a parsed JSON value); ``model``: a :class:`Runtime` (or an
    unpickled estimator)."""
    runtime = as_runtime(model)
    rows = request
    if isinstance(request, dict):
        method = request.get("method", method)
        if "inputs" in request and isinstance(runtime, OnnxRuntime):
            if not isinstance(request["inputs"], dict):
                raise RequestError('"inputs" must be an object: {"<input name>": rows, ...}')
            return {"predictions": runtime.run_named(request["inputs"])}
        if "instances" not in request:
            raise RequestError('a request object needs "instances": a list of rows')
        rows = request["instances"]
    if not isinstance(rows, list):
        raise RequestError("the instances must be a list of rows")
    if method not in METHODS:
        raise RequestError(f"unknown method {method!r}; use one of: {', '.join(METHODS)}")
    return {"predictions": runtime.predict(rows, method)}


def _handler(model: Any, method: str) -> type[BaseHTTPRequestHandler]:
    model = as_runtime(model)

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
    parser = argparse.ArgumentParser(prog="entrypoint", description="Serve a model's predictions.")
    parser.add_argument("--model", type=Path, required=True, help="the model's (entry) file")
    parser.add_argument(
        "--format",
        default="pickle",
        choices=sorted(FORMAT_RUNTIMES),
        help="the model's format, as its certificate records it (default: pickle)",
    )
    parser.add_argument("--method", default="predict", choices=METHODS)
    parser.add_argument("--input", type=Path, help="read the request from this file, not stdin")
    parser.add_argument("--serve", metavar="HOST:PORT|unix:PATH", help="answer over HTTP instead")
    args = parser.parse_args(argv)
    try:
        model = load_runtime(args.model, args.format)
    except ModelLoadError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
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
