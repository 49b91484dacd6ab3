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


# -------------------------------------------------------------------- formats beyond pickles
def test_weights_without_their_code_are_refused_with_where_to_serve_them(tmp_path: Path) -> None:
    from provenance.server.model_files import load_model

    path = tmp_path / "model.safetensors"
    path.write_bytes(b"never read")
    with pytest.raises(CertificateError) as caught:
        load_model(path, "safetensors", "model 0x01")
    assert str(caught.value) == (
        "model 0x01 is in the safetensors format (safetensors weights): weights without the "
        "code that runs them; serve it from an image of your own (provenance image build "
        "--dockerfile) or behind provenance proxy"
    )


@pytest.mark.parametrize("name", ["pytorch", "npz", "huggingface"])
def test_every_weights_only_format_is_refused(tmp_path: Path, name: str) -> None:
    from provenance.model_formats import FORMATS
    from provenance.server.model_files import WEIGHTS_ONLY, load_model

    with pytest.raises(CertificateError) as caught:
        load_model(tmp_path, name, "model 0x01")
    assert str(caught.value).startswith(
        f"model 0x01 is in the {name} format ({FORMATS[name].title}): "
    )
    assert str(caught.value).endswith(WEIGHTS_ONLY)


def test_an_unknown_format_is_refused_naming_the_supported_ones(tmp_path: Path) -> None:
    from provenance.model_formats import SUPPORTED
    from provenance.server.model_files import load_model, served_format

    with pytest.raises(CertificateError) as caught:
        load_model(tmp_path / "model.keras", "keras", "model 0x01")
    assert str(caught.value) == (
        f"model 0x01: cannot serve the format 'keras'; supported: {SUPPORTED}"
    )
    with pytest.raises(CertificateError) as caught:
        served_format("keras", "model 0x01")
    assert str(caught.value) == (
        "model 0x01: its certificate records the format 'keras', which this version does not "
        f"know; supported: {SUPPORTED}"
    )
    assert served_format("files", "model 0x01") is None
    assert served_format(None, "model 0x01") is None
    assert served_format("pickle-5", "model 0x01").name == "pickle"  # type: ignore[union-attr]


def test_a_pickle_loads_as_the_scikit_learn_runtime(tmp_path: Path) -> None:
    from provenance.server.model_files import load_model

    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_model(), protocol=5))
    runtime = load_model(path, "pickle-5", "model 0x01")
    assert runtime.predict([[0.0], [3.0]], "predict") == [0, 1]
    assert runtime.methods == ("predict", "predict_proba", "predict_log_proba", "decision_function")


def test_a_missing_runtime_library_is_a_config_error_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from provenance.server.model_files import load_model

    monkeypatch.setitem(sys.modules, "lightgbm", None)  # import lightgbm raises ImportError
    with pytest.raises(ConfigError) as caught:
        load_model(tmp_path / "model.txt", "lightgbm", "model 0x01")
    assert str(caught.value).startswith(
        "model 0x01: serving LightGBM models needs lightgbm, which is not installed ("
    )
    assert str(caught.value).endswith("); pip install 'provenance[boost]'")


def test_a_file_its_library_cannot_load_is_a_certificate_error(tmp_path: Path) -> None:
    from provenance.server.model_files import load_model

    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07 not a graph")
    with pytest.raises(CertificateError) as caught:
        load_model(path, "onnx", "model 0x01")
    assert str(caught.value).startswith("model 0x01: model.onnx does not load as an ONNX model: ")


def _lightgbm_file(path: Path) -> Path:
    path.write_text("tree\nversion=v4\nnum_class=1\n", encoding="utf-8")
    return path


def test_the_entry_of_a_folder_is_its_one_model_file(tmp_path: Path) -> None:
    from provenance.server.model_files import model_entry

    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    _lightgbm_file(folder / "sub" / "booster.txt")
    (folder / "README.md").write_text("notes", encoding="utf-8")
    files = ["README.md", "sub/booster.txt"]
    for recorded in (None, "files", "lightgbm"):
        fmt, entry = model_entry(folder, recorded, files, "model 0x01")
        assert (fmt.name, entry) == ("lightgbm", folder / "sub" / "booster.txt")


def test_files_that_are_not_what_the_certificate_records_are_refused(tmp_path: Path) -> None:
    from provenance.server.model_files import model_entry

    path = _lightgbm_file(tmp_path / "model.txt")
    with pytest.raises(CertificateError) as caught:
        model_entry(path, "onnx", ["model.txt"], "model 0x01")
    assert str(caught.value) == (
        "model 0x01: its certificate records the onnx format, but its files are in the "
        "lightgbm format (LightGBM model text file); refusing to load them"
    )
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(CertificateError) as caught:
        model_entry(tmp_path / "notes.txt", None, ["notes.txt"], "model 0x01")
    assert str(caught.value).startswith(
        "model 0x01: notes.txt is not in a supported model format; supported: "
    )
