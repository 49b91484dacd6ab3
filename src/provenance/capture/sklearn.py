"""scikit-learn models: what they are (every pipeline step and its ``get_params``) and how they
are serialised before hashing.

Format: **pickle, protocol 5** (``model.pkl``), the format scikit-learn itself documents for
persistence. Why: it round-trips every estimator exactly, with no extra dependency; skops
refuses unknown types by default and ONNX (skl2onnx) covers only part of scikit-learn and
changes numerics. Unpickling runs code, so a consumer must check the file against the
certificate's manifest digest first (``provenance certificate verify --model``), and must trust
the signer; the certificate records the scikit-learn version the pickle needs.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from pydantic import JsonValue

from provenance.capture.values import as_json, opaque, type_name
from provenance.certificate import EstimatorNode, Framework, OpaqueValue
from provenance.errors import CaptureError

FORMAT = "pickle-5"
FILE_NAME = "model.pkl"

# Parameters that hold lists of named sub-estimators.
_NAMED_LISTS = ("steps", "transformer_list", "transformers", "estimators")


def is_estimator(value: object) -> bool:
    return callable(getattr(value, "get_params", None)) and callable(getattr(value, "fit", None))


def framework() -> Framework:
    import sklearn

    return Framework(name="scikit-learn", version=sklearn.__version__)


def describe(estimator: Any, name: str | None = None) -> EstimatorNode:
    """The estimator's class and ``get_params(deep=False)``; sub-estimators (pipeline steps,
    column-transformer and feature-union branches, ensemble members, wrapped estimators)
    become named child nodes, recursively, in their order."""
    try:
        params = dict(estimator.get_params(deep=False))
    except Exception as exc:  # a third-party estimator may raise anything here
        raise CaptureError(f"{type_name(estimator)}.get_params() failed: {exc}") from exc
    plain: dict[str, Any] = {}
    other: dict[str, OpaqueValue] = {}
    children: list[EstimatorNode] = []
    for key, value in params.items():
        if key in _NAMED_LISTS and isinstance(value, list | tuple) and _named_list(value):
            layout: list[JsonValue] = []
            for entry in value:
                child_name, child = entry[0], entry[1]
                children.append(_node(child, f"{key}.{child_name}"))
                # a column transformer's third element says which columns the branch takes
                extra = [_json_or_repr(e) for e in entry[2:]]
                layout.append([child_name, *extra] if extra else child_name)
            plain[key] = layout
        elif is_estimator(value):
            children.append(describe(value, key))
        else:
            ok, converted = as_json(value)
            if ok:
                plain[key] = converted
            else:
                other[key] = opaque(value)
    return EstimatorNode(
        name=name,
        type=type_name(estimator),
        params=plain,
        opaque_params=other,
        steps=tuple(children),
    )


def _named_list(value: list[Any] | tuple[Any, ...]) -> bool:
    return all(isinstance(e, tuple | list) and len(e) >= 2 and isinstance(e[0], str) for e in value)


def _node(value: object, name: str) -> EstimatorNode:
    if is_estimator(value):
        return describe(value, name)
    # "passthrough", "drop" or None in a pipeline or column transformer
    return EstimatorNode(name=name, type=str(value) if isinstance(value, str) else type_name(value))


def _json_or_repr(value: object) -> JsonValue:
    ok, converted = as_json(value)
    return converted if ok else opaque(value).repr


def save(estimator: object, path: Path) -> None:
    """Pickle (protocol 5) to ``path``, streamed to the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "wb") as f:
            pickle.dump(estimator, f, protocol=5)
    except (OSError, pickle.PicklingError, TypeError, AttributeError) as exc:
        raise CaptureError(f"cannot pickle the model to {path}: {exc}") from exc
