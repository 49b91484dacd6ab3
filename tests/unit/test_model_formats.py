"""model_formats: every format told from files the real libraries write, and hostile files
(huge zips, huge or deeply nested headers, links, random and truncated bytes) refused within
bounds, by reading only what detection needs."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import random
import struct
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pytest

from provenance import model_formats as mf
from provenance.model_formats import (
    FORMATS,
    SUPPORTED,
    UnsupportedModelFormat,
    detect_file,
    detect_format,
    format_named,
    framework_version,
)


def _tiny_torch(folder: Path) -> dict[str, Path]:
    import torch

    module = torch.nn.Linear(3, 2)
    out = {
        "state_dict": folder / "state.pt",
        "legacy": folder / "legacy.pt",
        "torchscript": folder / "scripted.pt",
    }
    torch.save(module.state_dict(), out["state_dict"])
    torch.save(module.state_dict(), out["legacy"], _use_new_zipfile_serialization=False)
    torch.jit.save(torch.jit.script(module), out["torchscript"])
    return out


def _tiny_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph([helper.make_node("Relu", ["X"], ["Y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph), path)
    return path


def _tiny_bert(folder: Path, **save: Any) -> Path:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=8,
        vocab_size=20,
        max_position_embeddings=16,
    )
    BertModel(config).save_pretrained(folder, **save)
    return folder


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny model per format and variant, written by its own library."""
    import joblib
    import lightgbm
    import torch
    import xgboost
    from safetensors.numpy import save_file
    from sklearn.linear_model import LogisticRegression

    d = tmp_path_factory.mktemp("written")
    files: dict[str, Path] = {}
    files.update(_tiny_torch(d))
    files["safetensors"] = d / "weights.safetensors"
    save_file({"w": np.ones((2, 3), dtype=np.float32)}, files["safetensors"])
    files["onnx"] = _tiny_onnx(d / "model.onnx")
    files["npz"] = d / "arrays.npz"
    np.savez(files["npz"], w=np.ones(3), b=np.zeros(2))
    files["npz_compressed"] = d / "compressed.npz"
    np.savez_compressed(files["npz_compressed"], w=np.ones(3))
    estimator = LogisticRegression().fit(np.array([[0.0], [1.0]]), [0, 1])
    files["pickle"] = d / "model.pkl"
    files["pickle"].write_bytes(pickle.dumps(estimator, protocol=5))
    files["joblib"] = d / "model.joblib"
    joblib.dump(estimator, files["joblib"])
    for name, compress in (("zlib", 3), ("gzip", ("gzip", 3)), ("bz2", ("bz2", 3))):
        files[f"joblib_{name}"] = d / f"model-{name}.joblib"
        joblib.dump(estimator, files[f"joblib_{name}"], compress=compress)
    for name in ("xz", "lzma"):
        files[f"joblib_{name}"] = d / f"model-{name}.joblib"
        joblib.dump(estimator, files[f"joblib_{name}"], compress=(name, 3))
    rows = np.random.default_rng(0).random((40, 3))
    labels = (rows[:, 0] > 0.5).astype(int)
    booster = xgboost.train({"max_depth": 2}, xgboost.DMatrix(rows, label=labels), 2)
    files["xgboost_json"], files["xgboost_ubj"] = d / "xgb.json", d / "xgb.ubj"
    booster.save_model(files["xgboost_json"])
    booster.save_model(files["xgboost_ubj"])
    classifier = xgboost.XGBClassifier(n_estimators=2).fit(rows, labels)
    files["xgboost_sklearn"] = d / "xgb-classifier.json"
    classifier.save_model(files["xgboost_sklearn"])
    files["lightgbm"] = d / "lgb.txt"
    lightgbm.train(
        {"verbose": -1, "min_data_in_leaf": 1}, lightgbm.Dataset(rows, label=labels), 2
    ).save_model(str(files["lightgbm"]))
    files["hf_safetensors"] = _tiny_bert(d / "hf-safetensors")
    files["hf_sharded"] = _tiny_bert(d / "hf-sharded", max_shard_size="2KB")
    # a .bin folder as transformers before 5 wrote it (5 writes safetensors only): its config
    # and the state dict torch.save'd to pytorch_model.bin
    files["hf_bin"] = d / "hf-bin"
    files["hf_bin"].mkdir()
    (files["hf_bin"] / "config.json").write_bytes(
        (files["hf_safetensors"] / "config.json").read_bytes()
    )
    from transformers import BertModel

    state = BertModel.from_pretrained(files["hf_safetensors"]).state_dict()
    torch.save(state, files["hf_bin"] / "pytorch_model.bin")
    return files


EXPECTED = {
    "state_dict": "pytorch",
    "legacy": "pytorch",
    "torchscript": "torchscript",
    "safetensors": "safetensors",
    "onnx": "onnx",
    "npz": "npz",
    "npz_compressed": "npz",
    "pickle": "pickle",
    "joblib": "joblib",
    "joblib_zlib": "joblib",
    "joblib_gzip": "joblib",
    "joblib_bz2": "joblib",
    "joblib_xz": "joblib",
    "joblib_lzma": "joblib",
    "xgboost_json": "xgboost",
    "xgboost_ubj": "xgboost",
    "xgboost_sklearn": "xgboost",
    "lightgbm": "lightgbm",
    "hf_safetensors": "huggingface",
    "hf_sharded": "huggingface",
    "hf_bin": "huggingface",
}


@pytest.mark.parametrize("variant", sorted(EXPECTED))
def test_each_format_is_told_from_what_its_library_writes(
    written: dict[str, Path], variant: str
) -> None:
    path = written[variant]
    found = detect_format(path)
    assert found.format.name == EXPECTED[variant]
    assert found.entry == ("." if path.is_dir() else path.name)


def test_sharded_folders_really_are_sharded(written: dict[str, Path]) -> None:
    names = sorted(p.name for p in written["hf_sharded"].iterdir())
    assert "model.safetensors.index.json" in names and len(names) >= 4


def test_a_folder_with_one_model_file_and_other_files_has_it_as_entry(
    written: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "model.onnx").write_bytes(written["onnx"].read_bytes())
    (tmp_path / "README.md").write_text("a model\n")
    (tmp_path / "labels.json").write_text('{"0": "cat"}')
    found = detect_format(tmp_path)
    assert (found.format.name, found.entry) == ("onnx", "sub/model.onnx")
    listed = detect_format(tmp_path, files=["README.md", "labels.json", "sub/model.onnx"])
    assert listed == found


def test_runtimes_are_the_ones_other_parts_code_against() -> None:
    runtimes = {f.runtime for f in FORMATS.values()}
    assert runtimes == {"sklearn", "onnxruntime", "torch", "xgboost", "lightgbm", None}
    assert FORMATS["torchscript"].runtime == "torch" and FORMATS["pytorch"].runtime is None


def test_earlier_names_map_and_undetected_ones_do_not() -> None:
    assert format_named("pickle-5") is FORMATS["pickle"]
    assert format_named("onnx") is FORMATS["onnx"]
    assert format_named("files") is None and format_named(None) is None
    assert format_named("mlflow-model") is None


def test_framework_versions_come_from_package_metadata() -> None:
    import importlib.metadata

    assert framework_version(FORMATS["pytorch"]) == importlib.metadata.version("torch")
    assert framework_version(FORMATS["xgboost"]) is not None  # installed as xgboost-cpu
    missing = mf.ModelFormat("x", "x", "x", None, ("no-such-distribution-here",))
    assert framework_version(missing) is None


# -- refusals --------------------------------------------------------------------------------


def test_an_unknown_file_is_refused_naming_the_supported_formats(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(UnsupportedModelFormat) as caught:
        detect_format(path)
    assert str(caught.value) == (
        f"notes.txt is not in a supported model format; supported: {SUPPORTED}"
    )
    with pytest.raises(UnsupportedModelFormat) as caught:
        detect_format(tmp_path)
    assert str(caught.value) == (
        f"no file in {tmp_path} is in a supported model format; supported: {SUPPORTED}"
    )


def test_several_model_files_are_refused(written: dict[str, Path], tmp_path: Path) -> None:
    for name in ("a.onnx", "b.onnx"):
        (tmp_path / name).write_bytes(written["onnx"].read_bytes())
    with pytest.raises(UnsupportedModelFormat) as caught:
        detect_format(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path} holds several model files (a.onnx, b.onnx): give the one to serve, or a "
        "Hugging Face folder (config.json with its weights)"
    )


def test_listed_files_that_leave_the_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelFormat) as caught:
        detect_format(tmp_path, files=["../../etc/passwd"])
    assert (
        str(caught.value) == "model file name '../../etc/passwd' is unsafe: it has a '..' segment"
    )


def test_a_folder_with_too_many_files_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mf, "MAX_FOLDER_FILES", 3)
    for i in range(5):
        (tmp_path / f"{i}.txt").write_text("x")
    with pytest.raises(UnsupportedModelFormat) as caught:
        detect_format(tmp_path)
    assert str(caught.value) == f"{tmp_path} holds more than 3 files"


def test_a_zip_claiming_a_million_members_is_refused_before_zipfile_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a local header, then a real zip64 central directory of 10^6 entries, its end records
    entry = struct.pack(
        "<4s4B4HL2L5HLL", b"PK\x01\x02", 20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0
    )
    assert len(entry) == 46
    start = b"PK\x03\x04" + b"\0" * 26
    directory = (entry + b"a.npy") * 1_000_000
    record = struct.pack(
        "<4sQ2H2L4Q",
        b"PK\x06\x06",
        44,
        45,
        45,
        0,
        0,
        1_000_000,
        1_000_000,
        len(directory),
        len(start),
    )
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(start) + len(directory), 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    path = tmp_path / "huge.npz"
    path.write_bytes(start + directory + record + locator + end)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("zipfile read a central directory past the limits")

    monkeypatch.setattr(zipfile, "ZipFile", refuse)
    assert detect_file(path) is None
    # the same end records with a count within the limit do get to zipfile
    monkeypatch.setattr(mf, "MAX_ZIP_MEMBERS", 2_000_000)
    monkeypatch.setattr(mf, "MAX_ZIP_DIRECTORY", 1 << 30)
    with pytest.raises(AssertionError):
        detect_file(path)


def test_a_zip_whose_end_record_lies_about_its_directory_size_is_refused(
    written: dict[str, Path], tmp_path: Path
) -> None:
    data = bytearray(written["npz"].read_bytes())
    at = data.rfind(b"PK\x05\x06")
    data[at + 12 : at + 16] = struct.pack("<L", 64 << 20)
    path = tmp_path / "lying.npz"
    path.write_bytes(bytes(data))
    assert detect_file(path) is None


def test_a_zip_of_a_version_zipfile_cannot_read_is_no_model(
    written: dict[str, Path], tmp_path: Path
) -> None:
    data = bytearray(written["npz"].read_bytes())
    at = data.find(b"PK\x01\x02")
    data[at + 6 : at + 8] = struct.pack("<H", 148)  # needs version 14.8 to extract
    path = tmp_path / "future.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(NotImplementedError):
        zipfile.ZipFile(path).infolist()
    assert detect_file(path) is None


def _safetensors_bytes(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def test_a_safetensors_header_length_of_2_to_the_63_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 63) + b'{"w": {}}')
    assert detect_file(path) is None


def test_a_deeply_nested_safetensors_header_is_refused_without_recursing(
    tmp_path: Path,
) -> None:
    depth = 200_000
    header = b'{"w": ' + b"[" * depth + b"]" * depth + b"}"
    path = tmp_path / "w.safetensors"
    path.write_bytes(_safetensors_bytes(header))
    assert detect_file(path) is None


def test_a_truncated_safetensors_file_is_refused(written: dict[str, Path], tmp_path: Path) -> None:
    data = written["safetensors"].read_bytes()
    path = tmp_path / "w.safetensors"
    path.write_bytes(data[:-1])
    assert detect_file(path) is None
    path.write_bytes(data + b"\0")
    assert detect_file(path) is None
    path.write_bytes(data)
    assert detect_file(path) is FORMATS["safetensors"]


def test_a_deeply_nested_config_json_is_not_a_hugging_face_folder(
    written: dict[str, Path], tmp_path: Path
) -> None:
    depth = 200_000
    (tmp_path / "config.json").write_bytes(
        b'{"model_type": "bert", "x": ' + b"[" * depth + b"]" * depth + b"}"
    )
    (tmp_path / "model.safetensors").write_bytes(written["safetensors"].read_bytes())
    found = detect_format(tmp_path)
    assert (found.format.name, found.entry) == ("safetensors", "model.safetensors")


def test_a_config_json_without_real_weights_is_not_a_hugging_face_folder(
    tmp_path: Path,
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not weights at all")
    with pytest.raises(UnsupportedModelFormat):
        detect_format(tmp_path)


def test_links_in_a_model_folder_are_not_followed_into_folders_fifos_or_devices(
    written: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(written["onnx"].read_bytes())
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # a cycle
    (folder / "outside").symlink_to(written["hf_safetensors"], target_is_directory=True)
    os.mkfifo(tmp_path / "fifo")
    (folder / "blocking.onnx").symlink_to(tmp_path / "fifo")  # opening it would block
    (folder / "zeros.safetensors").symlink_to("/dev/zero")
    (folder / "dangling.pt").symlink_to(tmp_path / "missing")
    found = detect_format(folder)
    assert (found.format.name, found.entry) == ("onnx", "model.onnx")
    assert mf.folder_files(folder) == [PurePosixPath("model.onnx")]
    assert detect_file(folder / "blocking.onnx") is None
    assert detect_file(folder / "zeros.safetensors") is None


def test_a_link_to_a_model_file_is_its_file(written: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "model.onnx").symlink_to(written["onnx"])
    assert detect_format(tmp_path).format is FORMATS["onnx"]


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_named_onnx_are_not_onnx(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "model.onnx"
    for _ in range(200):
        data = rng.randbytes(rng.randrange(1, 4096))
        path.write_bytes(data)
        assert detect_file(path) is None, data[:16].hex()


def test_an_onnx_graph_with_a_wrong_suffix_or_truncated_is_not_onnx(
    written: dict[str, Path], tmp_path: Path
) -> None:
    data = written["onnx"].read_bytes()
    (tmp_path / "model.bin").write_bytes(data)
    assert detect_file(tmp_path / "model.bin") is None
    for cut in range(1, len(data)):
        (tmp_path / "cut.onnx").write_bytes(data[:cut])
        assert detect_file(tmp_path / "cut.onnx") is None, cut


@pytest.mark.parametrize("variant", ["state_dict", "torchscript", "npz", "npz_compressed"])
def test_truncated_zips_are_not_models(
    written: dict[str, Path], tmp_path: Path, variant: str
) -> None:
    source = written[variant]
    data = source.read_bytes()
    path = tmp_path / source.name
    for cut in (len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        assert detect_file(path) is None


def test_compressed_files_that_are_not_joblib_are_not_models(tmp_path: Path) -> None:
    path = tmp_path / "data.joblib"
    path.write_bytes(gzip.compress(b"a,b\n1,2\n"))
    assert detect_file(path) is None
    path.write_bytes(b"\x1f\x8b" + os.urandom(64))
    assert detect_file(path) is None


def test_json_and_text_that_are_not_boosters_are_not_models(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text('{"accuracy": 0.9}')
    (tmp_path / "log.txt").write_text("epoch 1\n")
    (tmp_path / "x.ubj").write_bytes(b"{" + os.urandom(32))
    for name in ("metrics.json", "log.txt", "x.ubj"):
        assert detect_file(tmp_path / name) is None
    assert detect_file(tmp_path / "missing.pt") is None


def test_provenance_run_takes_json_and_text_as_models_by_content_only(
    written: dict[str, Path], tmp_path: Path
) -> None:
    from provenance.capture.runner import is_model_file

    (tmp_path / "metrics.json").write_text('{"accuracy": 0.9}')
    (tmp_path / "train.txt").write_text("epoch 1\n")
    assert not is_model_file(tmp_path / "metrics.json")
    assert not is_model_file(tmp_path / "train.txt")
    assert is_model_file(written["xgboost_json"]) and is_model_file(written["lightgbm"])
    renamed = tmp_path / "weights.out"  # no model suffix: its content says torch.save
    renamed.write_bytes(written["state_dict"].read_bytes())
    assert is_model_file(renamed)


def test_the_recorded_format_reads_as_people_name_it() -> None:
    from provenance.certificate import Framework, ModelArtifact
    from provenance.manifest import FileEntry, FileManifest
    from provenance.verify.report import model_format_text

    digest = "sha256:" + "ab" * 32
    manifest = FileManifest.of([FileEntry(path="m", size=1, digest=digest)])

    def text(fmt: str | None, framework: Framework | None = None) -> str:
        model = ModelArtifact(
            digest=manifest.root, manifest=manifest, format=fmt, framework=framework
        )
        return model_format_text(model)

    torch = Framework(name="torch", version="2.5.0")
    assert text("pytorch", torch) == "PyTorch torch.save file (pytorch), written with torch 2.5.0"
    assert text("pickle-5") == "scikit-learn pickle (pickle-5)"
    assert text("files") == "files in none of the supported formats (not servable)"
    assert text(None) == "format not recorded"
    assert text("mlflow-model\x1b[2J") == "mlflow-model\\x1b[2J"
