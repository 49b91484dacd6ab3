"""The runtimes of the servable formats (provenance.image_entrypoint, run in-process by
`provenance serve --source artifacts` and inside model images): each loads a tiny real model
built here and answers what the format's own library answers, and refuses bad requests in
one line that says what the model can do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
import xgboost as xgb
from onnx import TensorProto, helper, numpy_helper

from provenance import image_entrypoint
from provenance.image_entrypoint import (
    FORMAT_RUNTIMES,
    LightGBMRuntime,
    ModelLoadError,
    OnnxRuntime,
    RequestError,
    TorchScriptRuntime,
    XGBoostRuntime,
    load_runtime,
)
from provenance.model_formats import FORMATS
from tests.model_builders import (
    ROWS,
    _save_onnx,
    lightgbm_model,
    onnx_linear,
    torchscript_model,
    xgboost_model,
)

ENTRYPOINT = Path(image_entrypoint.__file__ or "")


# -------------------------------------------------------------------- each runtime
def test_every_format_with_a_runtime_is_served_by_the_entrypoint() -> None:
    # the entrypoint is standalone (it cannot import model_formats): the two lists agree
    assert {n: f.runtime for n, f in FORMATS.items() if f.runtime is not None} == FORMAT_RUNTIMES


def test_torchscript_answers_what_the_module_answers(tmp_path: Path) -> None:
    path, module = torchscript_model(tmp_path)
    runtime = load_runtime(path, "torchscript")
    assert isinstance(runtime, TorchScriptRuntime)
    with torch.no_grad():
        expected = module(torch.tensor(ROWS, dtype=torch.float32)).tolist()
    assert runtime.predict(ROWS, "predict") == expected
    with pytest.raises(RequestError) as info:
        runtime.predict(ROWS, "predict_proba")
    assert str(info.value) == (
        "the model has no method predict_proba (TorchScript models answer predict)"
    )
    with pytest.raises(
        RequestError,
        match=r"^the model refused the instances: addmm: mat1 and mat2 shapes cannot be ",
    ):
        runtime.predict([[1.0, 2.0]], "predict")


def test_onnx_answers_what_onnxruntime_answers(tmp_path: Path) -> None:
    path, weights, bias = onnx_linear(tmp_path)
    runtime = load_runtime(path, "onnx")
    assert isinstance(runtime, OnnxRuntime)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": np.asarray(ROWS, dtype=np.float32)})[0]
    got = runtime.predict(ROWS, "predict")
    assert got == expected.tolist()
    assert np.allclose(got, np.asarray(ROWS, dtype=np.float32) @ weights + bias, atol=1e-5)
    with pytest.raises(RequestError) as info:
        runtime.predict(ROWS, "decision_function")
    assert str(info.value) == (
        "the model has no method decision_function (ONNX models answer predict)"
    )
    with pytest.raises(
        RequestError, match=r"^the model refused the instances: \[ONNXRuntimeError\]"
    ):
        runtime.predict([[1.0, 2.0]], "predict")


def test_onnx_rows_are_reshaped_to_a_fixed_input_shape_of_higher_rank(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Mul", ["image", "two"], ["doubled"])],
        "images",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 2, 2])],
        [helper.make_tensor_value_info("doubled", TensorProto.FLOAT, ["N", 1, 2, 2])],
        [numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")],
    )
    runtime = load_runtime(_save_onnx(graph, tmp_path / "images.onnx"), "onnx")
    assert runtime.predict([[1, 2, 3, 4]], "predict") == [[[[2.0, 4.0], [6.0, 8.0]]]]


def test_onnx_inputs_by_name_answer_every_output_by_name(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["a", "b"], ["sum"]),
            helper.make_node("Mul", ["a", "b"], ["product"]),
        ],
        "two",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["N", 2]),
        ],
        [
            helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("product", TensorProto.FLOAT, ["N", 2]),
        ],
    )
    # b is int64 in the graph: Cast it so Add and Mul see floats
    graph.node.insert(0, helper.make_node("Cast", ["b_int"], ["b"], to=TensorProto.FLOAT))
    graph.input[1].name = "b_int"
    path = _save_onnx(graph, tmp_path / "two.onnx")
    runtime = load_runtime(path, "onnx")
    request = {"inputs": {"a": [[1.5, 2.0]], "b_int": [[2, 3]]}}
    assert image_entrypoint.predict(runtime, request) == {
        "predictions": {"sum": [[3.5, 5.0]], "product": [[3.0, 6.0]]}
    }
    with pytest.raises(RequestError) as info:
        runtime.predict([[1.0, 2.0]], "predict")
    assert str(info.value) == (
        'the model has 2 inputs (a, b_int): name them, {"inputs": {"<name>": rows, ...}}'
    )
    with pytest.raises(RequestError) as info:
        image_entrypoint.predict(runtime, {"inputs": {"a": [[1.0, 2.0]], "c": [[1, 2]]}})
    assert str(info.value) == "the model has no input 'c'; its inputs: a, b_int"
    with pytest.raises(RequestError) as info:
        image_entrypoint.predict(runtime, {"inputs": {"a": [[1.0, 2.0]]}})
    assert str(info.value) == "the request lacks the model's input 'b_int'"


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_xgboost_answers_what_the_booster_answers(tmp_path: Path, suffix: str) -> None:
    path, booster = xgboost_model(tmp_path, suffix)
    runtime = load_runtime(path, "xgboost")
    assert isinstance(runtime, XGBoostRuntime)
    data = xgb.DMatrix(np.asarray(ROWS, dtype=np.float32))
    assert runtime.predict(ROWS, "predict") == booster.predict(data).tolist()
    margins = booster.predict(data, output_margin=True).tolist()
    assert runtime.predict(ROWS, "decision_function") == margins
    with pytest.raises(RequestError) as info:
        runtime.predict(ROWS, "predict_proba")
    assert str(info.value) == (
        "the model has no method predict_proba (XGBoost models answer predict, decision_function)"
    )
    with pytest.raises(
        RequestError, match=r"^the model refused the instances: it takes rows of 4 features, not 2$"
    ):
        runtime.predict([[1.0, 2.0]], "predict")


def test_lightgbm_answers_what_the_booster_answers(tmp_path: Path) -> None:
    path, booster = lightgbm_model(tmp_path)
    runtime = load_runtime(path, "lightgbm")
    assert isinstance(runtime, LightGBMRuntime)
    rows = np.asarray(ROWS, dtype=np.float64)
    assert runtime.predict(ROWS, "predict") == booster.predict(rows).tolist()
    assert (
        runtime.predict(ROWS, "decision_function") == booster.predict(rows, raw_score=True).tolist()
    )
    with pytest.raises(RequestError) as info:
        runtime.predict(ROWS, "transform")
    assert str(info.value) == (
        "the model has no method transform (LightGBM models answer predict, decision_function)"
    )
    with pytest.raises(RequestError, match=r"^the model refused the instances: The number of "):
        runtime.predict([[1.0, 2.0]], "predict")


@pytest.mark.parametrize("make", [torchscript_model, onnx_linear, xgboost_model, lightgbm_model])
def test_text_where_numbers_belong_is_refused_in_one_line(tmp_path: Path, make: Any) -> None:
    path = make(tmp_path)[0]
    fmt = {".pt": "torchscript", ".onnx": "onnx", ".json": "xgboost", ".txt": "lightgbm"}
    runtime = load_runtime(path, fmt[path.suffix])
    with pytest.raises(RequestError) as info:
        runtime.predict([["a", "b", "c", "d"]], "predict")
    message = str(info.value)
    assert message.startswith("the model refused the instances: ") and "\n" not in message


@pytest.mark.parametrize(
    ("fmt", "name", "error"),
    [
        ("onnx", "model.onnx", "model.onnx does not load as an ONNX model: "),
        ("torchscript", "model.pt", "model.pt does not load as TorchScript: "),
        ("xgboost", "model.json", "model.json does not load as an XGBoost model: "),
        ("lightgbm", "model.txt", "model.txt does not load as a LightGBM model: "),
    ],
)
def test_a_file_its_library_cannot_load_is_a_load_error(
    tmp_path: Path, fmt: str, name: str, error: str
) -> None:
    path = tmp_path / name
    path.write_bytes(b'{"learner": 1}\x08\x00 not a model')
    with pytest.raises(ModelLoadError) as info:
        load_runtime(path, fmt)
    assert str(info.value).startswith(error)


def test_an_unknown_format_is_refused_by_the_entrypoint(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        load_runtime(tmp_path / "model.safetensors", "safetensors")
    assert str(info.value) == (
        "cannot serve format 'safetensors'; served: pickle, joblib, onnx, torchscript, xgboost, "
        "lightgbm"
    )


# -------------------------------------------------------------------- the standalone program
def test_the_entrypoint_imports_with_the_standard_library_alone() -> None:
    # -S: no site-packages at all; the libraries are imported only when a model is loaded
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(ENTRYPOINT), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "--format {joblib,lightgbm,onnx,pickle,torchscript,xgboost}" in done.stdout


def test_the_entrypoint_says_which_library_a_format_needs() -> None:
    code = (
        "import sys; sys.modules['onnxruntime'] = None; "
        f"sys.argv = ['entrypoint', '--model', {str(ENTRYPOINT)!r}, '--format', 'onnx']; "
        f"exec(open({str(ENTRYPOINT)!r}).read())"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.startswith(
        "error: serving ONNX models needs onnxruntime, which is not installed ("
    )


@pytest.mark.parametrize(
    ("fmt", "make"),
    [
        ("onnx", onnx_linear),
        ("torchscript", torchscript_model),
        ("xgboost", xgboost_model),
        ("lightgbm", lightgbm_model),
    ],
)
def test_the_entrypoint_program_predicts_each_format_from_stdin(
    tmp_path: Path, fmt: str, make: Any
) -> None:
    path = make(tmp_path)[0]
    expected = load_runtime(path, fmt).predict(ROWS, "predict")
    done = subprocess.run(
        [sys.executable, "-I", str(ENTRYPOINT), "--model", str(path), "--format", fmt],
        input=json.dumps({"instances": ROWS}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"predictions": expected}
