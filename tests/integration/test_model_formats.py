"""Every model format through the real stack: a tiny model built here by its own library,
captured with ``track()`` (format and framework version recorded), stored in kubo, registered
on anvil; ``provenance verify`` passes from a fresh folder and names the format, ``show``
prints it; one byte changed and verify fails with the exact reason."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import provenance
import provenance.manifest
from provenance.model_formats import FORMATS, SUPPORTED
from provenance.stack import Stack

pytestmark = pytest.mark.integration

PROVENANCE = Path(sys.executable).parent / "provenance"


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROVENANCE), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def _rows() -> tuple[np.ndarray, np.ndarray]:
    rows = np.random.default_rng(0).random((40, 3))
    return rows, (rows[:, 0] > 0.5).astype(int)


def state_dict(folder: Path) -> Path:
    import torch

    torch.save(torch.nn.Linear(3, 2).state_dict(), folder / "model.pt")
    return folder / "model.pt"


def torchscript(folder: Path) -> Path:
    import torch

    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), folder / "scripted.pt")
    return folder / "scripted.pt"


def safetensors(folder: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    save_file(dict(torch.nn.Linear(3, 2).state_dict()), folder / "model.safetensors")
    return folder / "model.safetensors"


def onnx_model(folder: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph([helper.make_node("Relu", ["X"], ["Y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph), folder / "model.onnx")
    return folder / "model.onnx"


def npz(folder: Path) -> Path:
    np.savez_compressed(folder / "weights.npz", w=np.ones((2, 3)), b=np.zeros(2))
    return folder / "weights.npz"


def huggingface(folder: Path) -> Path:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=8,
        vocab_size=20,
        max_position_embeddings=16,
    )
    BertModel(config).save_pretrained(folder / "bert", max_shard_size="2KB")
    return folder / "bert"


def xgboost_ubj(folder: Path) -> Path:
    import xgboost

    rows, labels = _rows()
    xgboost.XGBClassifier(n_estimators=2).fit(rows, labels).save_model(folder / "model.ubj")
    return folder / "model.ubj"


def xgboost_json(folder: Path) -> Path:
    import xgboost

    rows, labels = _rows()
    xgboost.train({"max_depth": 2}, xgboost.DMatrix(rows, label=labels), 2).save_model(
        folder / "model.json"
    )
    return folder / "model.json"


def lightgbm_text(folder: Path) -> Path:
    import lightgbm

    rows, labels = _rows()
    params = {"verbose": -1, "min_data_in_leaf": 1}
    booster = lightgbm.train(params, lightgbm.Dataset(rows, label=labels), 2)
    booster.save_model(str(folder / "model.txt"))
    return folder / "model.txt"


def joblib_compressed(folder: Path) -> Path:
    import joblib
    from sklearn.linear_model import LogisticRegression

    rows, labels = _rows()
    joblib.dump(LogisticRegression().fit(rows, labels), folder / "model.joblib", compress=3)
    return folder / "model.joblib"


BUILDERS: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    "pytorch": (state_dict, "pytorch", "torch"),
    "torchscript": (torchscript, "torchscript", "torch"),
    "safetensors": (safetensors, "safetensors", "safetensors"),
    "onnx": (onnx_model, "onnx", "onnx"),
    "npz": (npz, "npz", "numpy"),
    "huggingface": (huggingface, "huggingface", "transformers"),
    "xgboost-ubj": (xgboost_ubj, "xgboost", "xgboost-cpu"),
    "xgboost-json": (xgboost_json, "xgboost", "xgboost-cpu"),
    "lightgbm": (lightgbm_text, "lightgbm", "lightgbm"),
    "joblib": (joblib_compressed, "joblib", "scikit-learn"),
}
"""Variant: (builder, recorded format, distribution whose version is recorded)."""


def _flip_one_byte(path: Path) -> Path:
    """The file changed (a folder: its largest file), one byte in its middle."""
    target = max(path.rglob("*"), key=lambda p: p.stat().st_size) if path.is_dir() else path
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("variant", sorted(BUILDERS))
def test_each_format_is_certified_stored_registered_and_verified(
    stack: Stack, stack_config_path: Path, cli_env: dict[str, str], tmp_path: Path, variant: str
) -> None:
    build, recorded, distribution = BUILDERS[variant]
    out = tmp_path / "out"
    out.mkdir()
    model = build(out)
    with (
        provenance.connect(config_file=stack_config_path) as session,
        provenance.track(
            f"tiny {variant}", session=session, output_dir=out, environment=False, source_dir=out
        ) as run,
    ):
        run.log_model(model)
    cert = run.certificate
    assert cert is not None and run.registered is not None and run.cid is not None
    assert cert.model.format == recorded and cert.warnings == ()
    assert cert.model.framework is not None
    assert cert.model.framework.name == FORMATS[recorded].framework
    assert cert.model.framework.version == importlib.metadata.version(distribution)
    model_id = "0x" + run.registered.id.hex()

    # a fresh folder: the model files and the certificate beside them, nothing else
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    copy = fresh / model.name
    if model.is_dir():
        shutil.copytree(model, copy)
    else:
        shutil.copy2(model, copy)
    shutil.copy2(out / "certificate.json", fresh / "certificate.json")
    title = f"{FORMATS[recorded].title} ({recorded}), written with {FORMATS[recorded].framework}"
    verified = run_cli("verify", str(copy), env=cli_env, cwd=fresh)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"canonical form; model: {title} " in verified.stdout
    assert "verified: every required check passed" in verified.stdout
    shown = run_cli("show", model_id, env=cli_env, cwd=fresh)
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf"^model_format +{re.escape(title)} \S+$", shown.stdout, re.M), shown.stdout

    changed = _flip_one_byte(copy)
    refused = run_cli("verify", str(copy), env=cli_env, cwd=fresh)
    assert refused.returncode != 0
    name = changed.relative_to(copy).as_posix() if copy.is_dir() else copy.name
    entry = next(f for f in cert.model.manifest.files if f.path == name)
    found = provenance.manifest.manifest_of(copy)
    now = next(f for f in found.files if f.path == name)
    assert now.digest != entry.digest
    assert refused.stdout.splitlines()[-1] == (
        f"NOT verified: 1 required check(s) failed; first: {copy} model-files: not the "
        f"certified model of {fresh / 'certificate.json'}: {copy}: {name} has {now.size} bytes "
        f"and digest {now.digest}, the manifest says {entry.size} bytes and {entry.digest}"
    )


def test_files_in_no_format_are_certified_with_a_warning_naming_the_formats(
    stack: Stack, stack_config_path: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    model = tmp_path / "weights.dat"
    model.write_bytes(os.urandom(256))
    with (
        provenance.connect(config_file=stack_config_path) as session,
        provenance.track(
            "opaque weights", session=session, output_dir=tmp_path, environment=False
        ) as run,
    ):
        run.log_model(model)
    cert = run.certificate
    assert cert is not None and run.registered is not None
    assert cert.model.format == "files" and cert.model.framework is None
    assert cert.warnings == (
        "model format not recognised, recorded as 'files': weights.dat is not in a supported "
        f"model format; supported: {SUPPORTED} (the model verifies, but serving it needs one "
        "of these formats)",
    )
    verified = run_cli("verify", str(model), env=cli_env, cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "model: files in none of the supported formats (not servable)" in verified.stdout
