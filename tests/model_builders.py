"""Tiny real models for the format tests, each built by its own library from a fixed seed
(no downloads): TorchScript, ONNX (MatMul + Add), XGBoost and LightGBM trained on 20 rows."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import onnx
import torch
import xgboost as xgb
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(16)
X20 = RNG.normal(size=(20, 4)).round(3)
Y20 = (X20[:, 0] + X20[:, 1] > 0).astype(int)
ROWS = X20[:3].tolist()


def torchscript_model(folder: Path) -> tuple[Path, torch.jit.ScriptModule]:
    torch.manual_seed(16)
    module = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Softmax(1)))
    path = folder / "model.pt"
    torch.jit.save(module, str(path))
    return path, module


def onnx_linear(folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """y = x @ W + b: one float input [N, 4], one output [N, 2] (MatMul then Add)."""
    weights = RNG.normal(size=(4, 2)).astype(np.float32)
    bias = np.array([0.5, -0.25], dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "b")],
    )
    return _save_onnx(graph, folder / "model.onnx"), weights, bias


def _save_onnx(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def xgboost_model(folder: Path, suffix: str = ".json") -> tuple[Path, xgb.Booster]:
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
        xgb.DMatrix(X20, label=Y20),
        num_boost_round=4,
    )
    path = folder / f"model{suffix}"
    booster.save_model(str(path))
    return path, booster


def lightgbm_model(folder: Path) -> tuple[Path, lgb.Booster]:
    booster = lgb.train(
        {
            "objective": "binary",
            "min_data_in_leaf": 2,
            "min_data_in_bin": 1,
            "num_threads": 1,
            "verbose": -1,
        },
        lgb.Dataset(X20, label=Y20),
        num_boost_round=4,
    )
    path = folder / "model.txt"
    booster.save_model(str(path))
    return path, booster
