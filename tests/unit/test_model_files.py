"""Serving a model from its files: what is recognised as a pickle or joblib file, and what is
refused with one line (issue 15, journey 4: models made by `provenance run` write joblib)."""

from __future__ import annotations

import pickle
from pathlib import Path

import joblib
import pytest
from sklearn.linear_model import LogisticRegression

from provenance.errors import CertificateError, ConfigError
from provenance.server.model_files import load_pickled_model, pickle_kind


def _model() -> LogisticRegression:
    return LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])


def test_pickle_kind_knows_pickles_and_compressed_files_by_their_first_bytes() -> None:
    assert pickle_kind(pickle.dumps(1, protocol=5)) == "pickle"
    assert pickle_kind(pickle.dumps(1, protocol=2)) == "pickle"
    assert pickle_kind(b"\x1f\x8b\x08\x00") == "compressed"
    assert pickle_kind(b"x\x9c\x01\x02") == "compressed"
    assert pickle_kind(b"ONNX....") is None
    assert pickle_kind(b"") is None
    assert pickle_kind(b"\x80\x09") is None  # no such protocol


@pytest.mark.parametrize("compress", [0, 3])
def test_a_joblib_file_loads_and_predicts(tmp_path: Path, compress: int) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(_model(), path, compress=compress)
    loaded = load_pickled_model(path, "model 0x01")
    assert loaded.predict([[0.0], [3.0]]).tolist() == [0, 1]


def test_a_plain_pickle_loads_without_joblib(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_model(), protocol=5))
    loaded = load_pickled_model(path, "model 0x01", joblib_installed=False)
    assert loaded.predict([[3.0]]).tolist() == [1]


def test_without_joblib_a_joblib_file_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(_model(), path, compress=3)
    with pytest.raises(ConfigError) as caught:
        load_pickled_model(path, "model 0x01", joblib_installed=False)
    assert str(caught.value) == (
        "model 0x01: model.joblib is a joblib file; install joblib (scikit-learn brings it) "
        "to serve it"
    )


def test_a_file_that_is_no_pickle_is_refused_before_anything_is_unpickled(
    tmp_path: Path,
) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07\x12\x04onnx")
    with pytest.raises(CertificateError) as caught:
        load_pickled_model(path, "model 0x01")
    assert str(caught.value) == (
        "model 0x01: its file model.onnx is not a pickle or joblib file; serving from files "
        "supports one pickled (or joblib) scikit-learn model: serve it from its image instead"
    )


def test_a_pickle_of_something_that_cannot_predict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "metrics.pkl"
    path.write_bytes(pickle.dumps({"accuracy": 1.0}, protocol=5))
    with pytest.raises(CertificateError) as caught:
        load_pickled_model(path, "model 0x01")
    assert str(caught.value) == (
        "model 0x01: metrics.pkl holds a dict, which has none of the methods predict, "
        "predict_proba, predict_log_proba, decision_function, transform"
    )


def test_a_truncated_pickle_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_model(), protocol=5)[:40])
    with pytest.raises(CertificateError, match=r"^model 0x01: model.pkl does not unpickle: "):
        load_pickled_model(path, "model 0x01")
