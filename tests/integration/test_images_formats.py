"""Model images of every servable format, and of your own Dockerfile, on the session stack's
real dockerd (and kubo for the CLI's push): tiny models made here (no downloads), their
predictions in a network-less container equal to their own library's in this process.

TorchScript runs on provenance/torch:bookworm, Debian's CPU build of PyTorch 1.13.1, not this
environment's torch: its numbers may differ from it in the last bit of a float32 (different
kernels; trixie's 2.6 gives the same numbers as bookworm's), so they are compared to a relative
1e-6, and the classes they pick must be the same.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from provenance.errors import ImageError, IntegrityError
from provenance.images import (
    BASE_IMAGE,
    LABEL_MODEL_DIGEST,
    LABEL_MODEL_FORMAT,
    LABEL_MODEL_PATH,
    LABEL_PACKAGES,
    TORCH_IMAGE,
    DockerEngine,
    build_model_image,
    build_own_image,
    default_rootfs,
    ensure_base_image,
    make_rootfs,
    run_prediction,
    verify_model_image,
)
from provenance.manifest import manifest_of
from provenance.stack import Stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROVENANCE = Path(sys.executable).parent / "provenance"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
WEIGHTS = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
BIAS = np.array([0.5, -0.25, 0.125], dtype=np.float32)


@pytest.fixture(scope="module")
def engine(stack: Stack) -> Iterator[DockerEngine]:
    with DockerEngine(stack.docker_host()) as client:
        yield client


@pytest.fixture(scope="module")
def torch_base(engine: DockerEngine, base_image: str) -> str:
    """provenance/torch:bookworm in the engine: its root file system is built here when this
    checkout has none (as ``scripts/setup.sh --with-torch-image`` would: minutes, once)."""
    prefix = ROOT / ".venv"
    rootfs = default_rootfs(prefix, TORCH_IMAGE)
    if not engine.has(TORCH_IMAGE) and not rootfs.is_file():
        rootfs = make_rootfs(prefix, TORCH_IMAGE)
    return ensure_base_image(engine, rootfs, TORCH_IMAGE).id


# ---------------------------------------------------------------- models made here
def onnx_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["XW"]),
            helper.make_node("Add", ["XW", "B"], ["Y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 3])],
        [numpy_helper.from_array(WEIGHTS, "W"), numpy_helper.from_array(BIAS, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def onnxruntime_predictions(path: Path) -> list[Any]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return list(session.run(None, {"X": np.asarray(ROWS, dtype=np.float32)})[0].tolist())


def torchscript_model(path: Path) -> list[Any]:
    """A traced two-layer classifier saved at ``path``; its predictions on ROWS here."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3), torch.nn.Softmax(dim=-1)
    ).eval()
    rows = torch.tensor(ROWS, dtype=torch.float32)
    traced = torch.jit.trace(net, rows)
    traced.save(str(path))
    with torch.no_grad():
        return list(traced(rows).tolist())


def training_rows() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(16)
    X = rng.normal(size=(40, 4))
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.float64)


# ---------------------------------------------------------------- generated images
def test_an_onnx_image_predicts_as_onnxruntime(
    engine: DockerEngine, base_image: str, tmp_path: Path
) -> None:
    path = onnx_model(tmp_path / "linear.onnx")
    image = build_model_image(engine, path)
    assert image.labels[LABEL_MODEL_FORMAT] == "onnx"
    assert image.labels[LABEL_MODEL_DIGEST] == manifest_of(path).root
    assert image.labels[LABEL_MODEL_PATH] == "/opt/provenance/model"
    packages = image.labels[LABEL_PACKAGES].split()
    assert any(p.startswith("onnxruntime==") for p in packages)
    assert not any(p.startswith(("scikit-learn==", "torch==")) for p in packages)
    assert run_prediction(engine, image.id, ROWS) == onnxruntime_predictions(path)
    verify_model_image(engine, image.id, manifest_of(path).root)


def test_a_torchscript_image_predicts_as_torch_on_debians_torch(
    engine: DockerEngine, torch_base: str, tmp_path: Path
) -> None:
    path = tmp_path / "net.pt"
    expected = torchscript_model(path)
    image = build_model_image(engine, path)
    assert image.labels[LABEL_MODEL_FORMAT] == "torchscript"
    assert image.labels[LABEL_PACKAGES] == ""  # nothing copied: the base has torch
    history = engine.client.images.get(image.id).history()
    assert any(layer.get("Id") == torch_base for layer in history)
    got = run_prediction(engine, image.id, ROWS)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)
    assert np.argmax(got, axis=1).tolist() == np.argmax(expected, axis=1).tolist()


def test_xgboost_and_lightgbm_images_predict_as_their_libraries(
    engine: DockerEngine, base_image: str, tmp_path: Path
) -> None:
    import lightgbm
    import xgboost

    X, y = training_rows()
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 2}, xgboost.DMatrix(X, label=y), 5
    )
    booster.save_model(tmp_path / "trees.json")
    image = build_model_image(engine, tmp_path / "trees.json")
    assert image.labels[LABEL_MODEL_FORMAT] == "xgboost"
    expected = booster.predict(xgboost.DMatrix(np.asarray(ROWS))).tolist()
    assert run_prediction(engine, image.id, ROWS) == expected

    gbm = lightgbm.train(
        {"objective": "binary", "num_leaves": 4, "min_data_in_leaf": 2, "verbose": -1},
        lightgbm.Dataset(X, label=y),
        num_boost_round=5,
    )
    gbm.save_model(str(tmp_path / "gbm.txt"))
    image = build_model_image(engine, tmp_path / "gbm.txt")
    assert image.labels[LABEL_MODEL_FORMAT] == "lightgbm"
    expected = lightgbm.Booster(model_file=str(tmp_path / "gbm.txt")).predict(np.asarray(ROWS))
    assert run_prediction(engine, image.id, ROWS) == expected.tolist()


def weights_only_models(folder: Path) -> dict[str, Path]:
    from safetensors.numpy import save_file

    np.savez(folder / "model.npz", w=WEIGHTS)
    hf = folder / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 4}))
    save_file({"w": WEIGHTS}, str(hf / "model.safetensors"))
    save_file({"w": WEIGHTS}, str(folder / "w.safetensors"))
    return {"npz": folder / "model.npz", "huggingface": hf, "safetensors": folder / "w.safetensors"}


def test_weights_without_a_runtime_are_refused_naming_the_format_and_dockerfile(
    engine: DockerEngine, base_image: str, tmp_path: Path
) -> None:
    """The regression: an .npz failed with "'ascii' codec can't decode", a Hugging Face folder
    with "is not a pickled model"."""
    titles = {
        "npz": "numpy .npz archive",
        "huggingface": "Hugging Face model folder",
        "safetensors": "safetensors weights",
    }
    for name, path in weights_only_models(tmp_path).items():
        with pytest.raises(ImageError) as info:
            build_model_image(engine, path)
        assert str(info.value) == (
            f"{path.name} is in format {name} ({titles[name]}): weights without the code that "
            "runs them; build an image of your own with --dockerfile PATH"
        )


# ---------------------------------------------------------------- images of your own
SERVE_PY = """\
import argparse, json, struct, sys
parser = argparse.ArgumentParser()
parser.add_argument("--input")
parser.add_argument("--method", default="predict")
args = parser.parse_args()
with open("/srv/model/model.safetensors", "rb") as f:
    (size,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(size))
    data = f.read()
def tensor(name):
    start, end = header[name]["data_offsets"]
    rows, cols = header[name]["shape"]
    values = struct.unpack(f"<{rows * cols}f", data[start:end])
    return [values[r * cols:(r + 1) * cols] for r in range(rows)]
w = tensor("w")
rows = json.load(open(args.input))
print(json.dumps({"predictions": [[sum(x[i] * w[i][j] for i in range(len(x)))
                                   for j in range(len(w[0]))] for x in rows]}))
"""


def own_project(folder: Path, *, alter: bool = False) -> tuple[Path, Path]:
    """A folder with weights (safetensors), a stdlib server and a Dockerfile putting the
    weights at /srv/model; ``alter``: the Dockerfile changes them after the COPY."""
    from safetensors.numpy import save_file

    weights = folder / "weights"
    weights.mkdir(parents=True)
    save_file({"w": WEIGHTS}, str(weights / "model.safetensors"))
    (weights / "model.safetensors").chmod(0o644)  # COPY keeps modes; the server runs as nobody
    (folder / "serve.py").write_text(SERVE_PY)
    (folder / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\n"
        "COPY weights/ /srv/model/\n"
        "COPY serve.py /srv/serve.py\n"
        + ("RUN printf x >> /srv/model/model.safetensors\n" if alter else "")
        + 'LABEL provenance.model.path="/elsewhere"\n'
        "USER 65534:65534\n"
        'ENTRYPOINT ["python3", "-I", "/srv/serve.py"]\n'
    )
    return weights, folder / "Dockerfile"


def test_an_image_of_your_own_builds_its_model_verifies_and_it_serves(
    engine: DockerEngine, base_image: str, tmp_path: Path
) -> None:
    weights, dockerfile = own_project(tmp_path)
    digest = manifest_of(weights).root
    image = build_own_image(engine, weights, dockerfile, model_path="/srv/model")
    # the build's labels win over the Dockerfile's own LABEL of the model path
    assert image.labels[LABEL_MODEL_PATH] == "/srv/model"
    assert image.labels[LABEL_MODEL_FORMAT] == "safetensors"
    assert image.labels[LABEL_MODEL_DIGEST] == digest
    assert image.tags == (f"provenance/model:{digest.removeprefix('sha256:')[:12]}",)
    verify_model_image(engine, image.id, digest)
    got = run_prediction(engine, image.id, ROWS)
    np.testing.assert_allclose(got, np.asarray(ROWS, dtype=np.float32) @ WEIGHTS, rtol=1e-6)


def test_an_image_whose_dockerfile_alters_the_model_is_refused_and_removed(
    engine: DockerEngine, base_image: str, tmp_path: Path
) -> None:
    weights, dockerfile = own_project(tmp_path, alter=True)
    digest = manifest_of(weights).root
    altered = tmp_path / "altered"
    shutil.copytree(weights, altered)
    with open(altered / "model.safetensors", "ab") as f:
        f.write(b"x")
    tag = "provenance/own:altered"
    with pytest.raises(IntegrityError) as info:
        build_own_image(engine, weights, dockerfile, model_path="/srv/model", tag=tag)
    assert str(info.value) == (
        f"the image built from Dockerfile holds files at /srv/model with model digest "
        f"{manifest_of(altered).root}, not the model's {digest}: refused"
    )
    assert not engine.has(tag)


def test_an_image_of_your_own_without_the_model_at_its_path_is_refused(
    engine: DockerEngine, base_image: str, tmp_path: Path
) -> None:
    weights, dockerfile = own_project(tmp_path)
    tag = "provenance/own:elsewhere"
    with pytest.raises(IntegrityError) as info:
        build_own_image(engine, weights, dockerfile, model_path="/srv/weights", tag=tag)
    assert str(info.value).endswith(" has nothing at /srv/weights")
    assert not engine.has(tag)


# ---------------------------------------------------------------- the CLI
def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROVENANCE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def test_the_cli_builds_pushes_and_runs_an_onnx_image_and_one_of_your_own(
    cli_env: dict[str, str], engine: DockerEngine, base_image: str, tmp_path: Path
) -> None:
    folder = tmp_path / "fresh"
    folder.mkdir()
    path = onnx_model(folder / "linear.onnx")
    built = cli("image", "build", "linear.onnx", "--json", cwd=folder, env=cli_env)
    assert built.returncode == 0, built.stderr
    image_id = json.loads(built.stdout)["image_id"]
    pushed = cli("image", "push", image_id, cwd=folder, env=cli_env)
    assert pushed.returncode == 0, pushed.stderr
    cid = pushed.stdout.strip()
    (folder / "request.json").write_text(json.dumps(ROWS))
    ran = cli(
        "image",
        "run",
        cid,
        "--expect",
        image_id,
        "--input",
        "request.json",
        cwd=folder,
        env=cli_env,
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"predictions": onnxruntime_predictions(path)}

    weights, _ = own_project(folder / "own")
    built = cli(
        "image", "build", "own/weights", "--dockerfile", "own/Dockerfile",
        "--model-path", "/srv/model", "--json", cwd=folder, env=cli_env,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    report = json.loads(built.stdout)
    assert report["labels"][LABEL_MODEL_DIGEST] == manifest_of(weights).root
    pushed = cli("image", "push", report["image_id"], cwd=folder, env=cli_env)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.strip().startswith("bafy")


def test_the_cli_refuses_weights_without_a_dockerfile_in_one_line(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    np.savez(tmp_path / "model.npz", w=WEIGHTS)
    done = cli("image", "build", "model.npz", cwd=tmp_path, env=cli_env)
    assert done.returncode == 1
    assert done.stderr == (
        "error: model.npz is in format npz (numpy .npz archive): weights without the code that "
        "runs them; build an image of your own with --dockerfile PATH\n"
    )
    done = cli("image", "build", "model.npz", "--model-path", "/srv", cwd=tmp_path, env=cli_env)
    assert done.returncode == 1
    assert done.stderr == "error: --context and --model-path go with --dockerfile\n"


def test_an_unknown_format_names_the_supported_ones(
    engine: DockerEngine, base_image: str, tmp_path: Path
) -> None:
    from provenance.model_formats import SUPPORTED, UnsupportedModelFormat

    (tmp_path / "model.bin").write_bytes(b"\x00not a model")
    with pytest.raises(UnsupportedModelFormat) as info:
        build_model_image(engine, tmp_path / "model.bin")
    assert (
        str(info.value) == f"model.bin is not in a supported model format; supported: {SUPPORTED}"
    )
