"""XGBoost and LightGBM boosters into a :class:`~provenance.capture.tracker.Run` (the
``boosting`` extras; neither library is imported here until a booster is handed over)::

    history = {}
    booster = xgboost.train(params, dtrain, 20, evals=[(dvalid, "valid")], evals_result=history)
    log_booster(run, booster, params=params, data=X_train, evals_result=history)

:func:`log_booster` records the parameters (``params=``, else what the booster or the
scikit-learn wrapper reports), the number of boosting rounds, each evaluation metric's last
value as a metric (``valid.rmse``) and its values per round (``valid.rmse.rounds``, up to
:data:`MAX_ROUNDS`), the training matrix (a numpy array or pandas frame, through
:meth:`~provenance.capture.tracker.Run.log_dataset`), and saves the model in the library's
own format (XGBoost UBJSON ``model.ubj`` or ``model.json``; LightGBM ``model.txt``), logged as
the model. The evaluation history: ``evals_result`` of ``xgboost.train``, LightGBM's
``record_evaluation`` dict, or what a scikit-learn wrapper kept (``evals_result_``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import JsonValue

from provenance.capture.framework_models import log_framework_model
from provenance.capture.values import as_json, bounded_repr, is_data, type_name
from provenance.certificate import Framework, ModelArtifact
from provenance.errors import CertificateError

if TYPE_CHECKING:
    from provenance.capture.tracker import Run

MAX_ROUNDS = 10_000
"""The most per-round values a metric's history records; longer histories keep the last
value only, with a warning."""

XGBOOST_SUFFIXES = (".ubj", ".json")


def _library(booster: object) -> str | None:
    top = type(booster).__module__.split(".", 1)[0]
    return top if top in ("xgboost", "lightgbm") else None


def log_booster(
    run: Run,
    booster: object,
    *,
    params: Mapping[str, object] | None = None,
    data: object = None,
    evals_result: Mapping[str, Mapping[str, object]] | None = None,
    path: Path | None = None,
) -> ModelArtifact:
    """Record a trained XGBoost or LightGBM booster (or scikit-learn wrapper) in ``run``; see
    the module docstring. ``path``: where to save the model (XGBoost: ``.ubj`` or ``.json``),
    by default in ``run.output_dir``."""
    library = _library(booster)
    if library is None:
        raise CertificateError(
            f"log_booster() needs an XGBoost or LightGBM booster or model, not a "
            f"{type_name(booster)}"
        )
    native, wrapper = _native(booster, library)
    run.log_params(booster=_booster_params(native, wrapper, library, params))
    run.log_params(rounds=_rounds(native, library))
    history = evals_result if evals_result is not None else _wrapper_history(wrapper)
    if history:
        _log_history(run, history)
    if data is not None:
        if not is_data(data):
            run.warn(
                f"training data of type {type_name(data)} is not a numpy array or pandas frame: "
                "not committed (log it with run.log_dataset)"
            )
        else:
            run.log_dataset(data, role="train", name="train")
    if library == "xgboost":
        location = path or run.output_dir / "model.ubj"
        if location.suffix.lower() not in XGBOOST_SUFFIXES:
            raise CertificateError(
                f"an XGBoost model is saved as .ubj or .json, not {location.name}"
            )
    else:
        location = path or run.output_dir / "model.txt"
    location.parent.mkdir(parents=True, exist_ok=True)
    native.save_model(str(location))
    return log_framework_model(run, location, _framework(library))


def _native(booster: Any, library: str) -> tuple[Any, Any]:
    """(the native Booster, the scikit-learn wrapper or None)."""
    fitted = getattr(booster, "__sklearn_is_fitted__", None)
    if callable(fitted) and not fitted():
        raise CertificateError(
            f"log_booster() needs a trained model: this {type_name(booster)} was not fitted"
        )
    if library == "xgboost":
        import xgboost

        if isinstance(booster, xgboost.Booster):
            return booster, None
        if isinstance(booster, xgboost.XGBModel):
            return booster.get_booster(), booster
    else:
        import lightgbm

        if isinstance(booster, lightgbm.Booster):
            return booster, None
        if isinstance(booster, lightgbm.LGBMModel):
            return booster.booster_, booster
    raise CertificateError(
        f"log_booster() needs a trained Booster or scikit-learn model, not a {type_name(booster)}"
    )


def _plain(values: Mapping[str, object]) -> dict[str, JsonValue]:
    out: dict[str, JsonValue] = {}
    for key, value in values.items():
        ok, converted = as_json(value)
        out[str(key)] = converted if ok else bounded_repr(value)
    return out


def _booster_params(
    native: Any, wrapper: Any, library: str, given: Mapping[str, object] | None
) -> dict[str, JsonValue]:
    if given is not None:
        chosen: Mapping[str, object] = given
    elif wrapper is not None:
        chosen = wrapper.get_params()
    elif library == "lightgbm":
        chosen = dict(native.params)
    else:
        chosen = {}  # a bare XGBoost Booster does not keep its training parameters
    return {"class": type_name(wrapper if wrapper is not None else native), **_plain(chosen)}


def _rounds(native: Any, library: str) -> int:
    if library == "xgboost":
        return int(native.num_boosted_rounds())
    return int(native.current_iteration())


def _wrapper_history(wrapper: Any) -> Mapping[str, Mapping[str, object]] | None:
    """What a scikit-learn wrapper kept of its evaluation sets (both libraries keep it as
    ``evals_result_``, set only when it was given some)."""
    found = getattr(wrapper, "evals_result_", None) if wrapper is not None else None
    return found if isinstance(found, Mapping) else None


def _log_history(run: Run, history: Mapping[str, Mapping[str, object]]) -> None:
    """Each ``{data: {metric: [per round]}}`` as metrics ``data.metric`` (the last value) and
    ``data.metric.rounds`` (every value)."""
    metrics: dict[str, object] = {}
    for data_name, per_metric in history.items():
        for metric, values in per_metric.items():
            series = list(values) if isinstance(values, list | tuple) else [values]
            if not series:
                continue
            key = f"{data_name}.{metric}"
            metrics[key] = series[-1]
            if len(series) <= MAX_ROUNDS:
                metrics[f"{key}.rounds"] = series
            else:
                run.warn(
                    f"metric {key} has {len(series):,} rounds, above {MAX_ROUNDS:,}: only its "
                    "last value is recorded"
                )
    run.log_metrics(metrics)


def _framework(library: str) -> Framework:
    if library == "xgboost":
        import xgboost

        return Framework(name="xgboost", version=xgboost.__version__)
    import lightgbm

    return Framework(name="lightgbm", version=lightgbm.__version__)


__all__ = ["MAX_ROUNDS", "log_booster"]
