"""XGBoost and LightGBM capture (provenance.capture.boosting) with the real libraries: the
parameters, rounds, per-round metrics, training data and native model file in the
certificate, exactly, and what is refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from provenance.capture import Run, log_booster, track
from provenance.errors import CertificateError
from provenance.manifest import open_table

NOON = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)


def fixed(folder: Path, **options: Any) -> Run:
    defaults: dict[str, Any] = {
        "output_dir": folder / "out",
        "environment": False,
        "source_dir": folder,
        "clock": lambda: NOON,
        "timer": lambda: 0.0,
    }
    return track("Tiny booster", **(defaults | options))


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3))
    return x, x[:, 0] * 2 + rng.normal(size=64) * 0.1


@pytest.mark.parametrize("file", ["model.ubj", "model.json"])
def test_an_xgboost_booster_with_its_history_and_data(tmp_path: Path, file: str) -> None:
    x, y = data()
    params = {"max_depth": 2, "eta": 0.3, "objective": "reg:squarederror", "seed": 0}
    history: dict[str, Any] = {}
    matrix = xgb.DMatrix(x, label=y)
    booster = xgb.train(
        params, matrix, 3, evals=[(matrix, "train")], evals_result=history, verbose_eval=False
    )
    with fixed(tmp_path) as run:
        log_booster(run, booster, params=params, data=x, evals_result=history, path=tmp_path / file)
    certificate = run.certificate
    assert certificate is not None
    assert certificate.training.parameters == {
        "booster": {"class": "xgboost.core.Booster", **params},
        "rounds": 3,
    }
    rounds = history["train"]["rmse"]
    assert len(rounds) == 3
    assert certificate.training.metrics == {"train.rmse": rounds[-1], "train.rmse.rounds": rounds}
    (train,) = certificate.data.datasets
    assert (train.name, train.role) == ("train", "train")
    assert train.manifest == open_table(x).manifest()
    model = certificate.model
    assert (model.format, [f.path for f in model.manifest.files]) == ("xgboost", [file])
    assert model.framework is not None
    assert (model.framework.name, model.framework.version) == ("xgboost", xgb.__version__)
    again = xgb.Booster(model_file=str(tmp_path / file))
    assert np.array_equal(again.predict(xgb.DMatrix(x)), booster.predict(xgb.DMatrix(x)))
    assert certificate.warnings == ()


def test_a_lightgbm_model_reports_its_own_params_and_history(tmp_path: Path) -> None:
    x, y = data()
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    model = lgb.LGBMRegressor(n_estimators=4, num_leaves=4, min_child_samples=2, verbose=-1)
    model.fit(frame, y, eval_X=(frame,), eval_y=(y,))
    with fixed(tmp_path) as run:
        log_booster(run, model, data=frame)
    certificate = run.certificate
    assert certificate is not None
    booster_params = certificate.training.parameters["booster"]
    assert isinstance(booster_params, dict)
    assert booster_params["class"] == "lightgbm.sklearn.LGBMRegressor"
    assert (booster_params["n_estimators"], booster_params["num_leaves"]) == (4, 4)
    assert certificate.training.parameters["rounds"] == 4
    l2 = [float(v) for v in model.evals_result_["training"]["l2"]]
    assert len(l2) == 4
    assert certificate.training.metrics == {"training.l2": l2[-1], "training.l2.rounds": l2}
    assert certificate.data.datasets[0].manifest == open_table(frame).manifest()
    artifact = certificate.model
    assert (artifact.format, [f.path for f in artifact.manifest.files]) == (
        "lightgbm",
        ["model.txt"],
    )
    assert artifact.framework is not None and artifact.framework.name == "lightgbm"
    again = lgb.Booster(model_file=str(tmp_path / "out" / "model.txt"))
    assert np.allclose(again.predict(frame), model.predict(frame))


# -- adversarial ------------------------------------------------------------------------------


def test_something_that_is_not_a_booster_is_refused(tmp_path: Path) -> None:
    with (
        pytest.raises(
            CertificateError,
            match=r"^log_booster\(\) needs an XGBoost or LightGBM booster or model, not a "
            r"builtins\.dict$",
        ),
        fixed(tmp_path) as run,
    ):
        log_booster(run, {"trees": []})


def test_an_untrained_wrapper_is_refused(tmp_path: Path) -> None:
    with (
        pytest.raises(
            CertificateError,
            match=r"^log_booster\(\) needs a trained model: this xgboost\.sklearn\.XGBRegressor "
            r"was not fitted$",
        ),
        fixed(tmp_path) as run,
    ):
        log_booster(run, xgb.XGBRegressor())


def test_an_xgboost_model_file_with_another_suffix_is_refused(tmp_path: Path) -> None:
    x, y = data()
    booster = xgb.train({"max_depth": 1}, xgb.DMatrix(x, label=y), 1)
    with (
        pytest.raises(
            CertificateError,
            match=r"^an XGBoost model is saved as \.ubj or \.json, not model\.bin$",
        ),
        fixed(tmp_path) as run,
    ):
        log_booster(run, booster, path=tmp_path / "model.bin")


def test_a_dmatrix_as_data_is_not_committed_and_says_so(tmp_path: Path) -> None:
    x, y = data()
    matrix = xgb.DMatrix(x, label=y)
    booster = xgb.train({"max_depth": 1}, matrix, 1)
    with fixed(tmp_path) as run:
        log_booster(run, booster, data=matrix)
    assert run.certificate is not None
    assert run.certificate.data.datasets == ()
    assert run.certificate.warnings == (
        "training data of type xgboost.core.DMatrix is not a numpy array or pandas frame: not "
        "committed (log it with run.log_dataset)",
    )
