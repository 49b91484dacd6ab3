"""PyTorch capture (provenance.capture.pytorch) with the real torch on CPU: what watch() and
log_module() put in the certificate, exactly, and what they refuse."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from provenance.capture import Run, log_module, track, watch
from provenance.capture.pytorch import log_torch_dataset
from provenance.errors import CaptureError, CertificateError
from provenance.manifest import (
    FileManifest,
    IndexSelection,
    TableManifest,
    open_table,
    verify_subset,
)

NOON = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)


def fixed(folder: Path, **options: Any) -> Run:
    defaults: dict[str, Any] = {
        "output_dir": folder / "out",
        "environment": False,
        "source_dir": folder,
        "clock": lambda: NOON,
        "timer": lambda: 0.0,
    }
    return track("Tiny MLP", **(defaults | options))


def tiny() -> tuple[torch.nn.Module, TensorDataset]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    x = torch.arange(24, dtype=torch.float32).reshape(8, 3)
    y = torch.tensor([0, 1, 0, 1, 1, 0, 1, 0])
    return model, TensorDataset(x, y)


def test_watch_records_the_model_optimizer_scheduler_seeds_and_data(tmp_path: Path) -> None:
    model, data = tiny()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, betas=(0.8, 0.9), weight_decay=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    with fixed(tmp_path) as run:
        watch(
            run,
            model,
            optimizer=optimizer,
            scheduler=scheduler,
            loaders={"train": DataLoader(Subset(data, [0, 2, 4, 6]), batch_size=2), "test": data},
            seed=3,
        )
        log_module(run, model)
    certificate = run.certificate
    assert certificate is not None
    training = certificate.training
    assert training.seeds == {"torch": 3, "numpy": 3, "random": 3}
    assert torch.initial_seed() == 3
    assert training.parameters["model"] == {
        "class": "torch.nn.modules.container.Sequential",
        "parameters": 26,
        "trainable_parameters": 26,
        "dtypes": ["torch.float32"],
    }
    optimizer_params = training.parameters["optimizer"]
    assert isinstance(optimizer_params, dict)
    assert optimizer_params["class"] == "torch.optim.adamw.AdamW"
    groups = optimizer_params["param_groups"]
    assert isinstance(groups, list) and isinstance(group := groups[0], dict)
    assert {k: group[k] for k in ("lr", "betas", "weight_decay")} == {
        "lr": 0.01,
        "betas": [0.8, 0.9],
        "weight_decay": 0.1,
    }
    assert "params" not in group
    scheduler_params = training.parameters["scheduler"]
    assert isinstance(scheduler_params, dict)
    assert scheduler_params["class"] == "torch.optim.lr_scheduler.StepLR"
    state = scheduler_params["state"]
    assert isinstance(state, dict)
    assert {k: state[k] for k in ("step_size", "gamma", "base_lrs", "last_epoch")} == {
        "step_size": 2,
        "gamma": 0.5,
        "base_lrs": [0.01],
        "last_epoch": 0,
    }

    train, test = certificate.data.datasets
    assert (train.name, train.role, test.name, test.role) == ("train", "train", "test", "test")
    source = open_table(_frame(data))
    assert test.manifest == source.manifest()
    assert [c.name for c in source.columns] == ["t0.0", "t0.1", "t0.2", "t1"]
    assert train.subset is not None and isinstance(train.manifest, TableManifest)
    assert train.subset.selection == IndexSelection.of([0, 2, 4, 6])
    assert train.subset.source == test.manifest  # the subset's source is the whole dataset
    verify_subset(train.manifest, train.subset, source)  # provable from the source rows
    assert certificate.warnings == ()


def _frame(data: TensorDataset) -> Any:
    import pandas as pd

    x, y = (t.numpy() for t in data.tensors)
    return pd.DataFrame({"t0.0": x[:, 0], "t0.1": x[:, 1], "t0.2": x[:, 2], "t1": y})


def test_watch_without_a_seed_records_torchs_initial_seed(tmp_path: Path) -> None:
    model, _ = tiny()
    torch.manual_seed(11)
    with fixed(tmp_path) as run:
        watch(run, model)
        log_module(run, model)
    assert run.certificate is not None
    assert run.certificate.training.seeds == {"torch": 11}


@pytest.mark.parametrize(
    ("format", "file", "recorded"),
    [
        ("safetensors", "model.safetensors", "safetensors"),
        ("pytorch", "model.pt", "pytorch"),
        ("torchscript", "model.torchscript.pt", "torchscript"),
    ],
)
def test_log_module_saves_and_records_the_format(
    tmp_path: Path, format: Any, file: str, recorded: str
) -> None:
    model, _ = tiny()
    with fixed(tmp_path) as run:
        log_module(run, model, format=format)
    certificate = run.certificate
    assert certificate is not None
    artifact = certificate.model
    assert artifact.format == recorded
    assert artifact.framework is not None
    assert (artifact.framework.name, artifact.framework.version) == ("torch", torch.__version__)
    assert [f.path for f in artifact.manifest.files] == [file]
    assert artifact.estimator is not None
    assert artifact.estimator.type == "torch.nn.modules.container.Sequential"
    assert [(s.name, s.type, s.params) for s in artifact.estimator.steps] == [
        (
            "0",
            "torch.nn.modules.linear.Linear",
            {"parameters": 16, "arguments": "in_features=3, out_features=4, bias=True"},
        ),
        ("1", "torch.nn.modules.activation.ReLU", {"parameters": 0}),
        (
            "2",
            "torch.nn.modules.linear.Linear",
            {"parameters": 10, "arguments": "in_features=4, out_features=2, bias=True"},
        ),
    ]
    saved = tmp_path / "out" / file
    if format == "safetensors":
        weights = load_file(saved)
        assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    elif format == "torchscript":
        x = torch.ones(1, 3)
        loaded = torch.jit.load(str(saved))  # type: ignore[no-untyped-call]
        assert torch.equal(loaded(x), model(x))


# -- adversarial ------------------------------------------------------------------------------


def test_a_dataset_too_large_to_hash_is_refused_with_a_warning(tmp_path: Path) -> None:
    model, data = tiny()
    with fixed(tmp_path) as run:
        watch(run, model, loaders=[DataLoader(data)], max_values=10)
        log_module(run, model)
    assert run.certificate is not None
    assert run.certificate.data.datasets == ()
    assert run.certificate.warnings == (
        "dataset loader-0: a TensorDataset of 32 values is above the 10-value limit for "
        "hashing (max_values=): not committed",
    )


def test_strict_refuses_a_dataset_too_large_to_hash(tmp_path: Path) -> None:
    _, data = tiny()
    with (
        pytest.raises(CaptureError, match=r"^dataset big: a TensorDataset of 32 values"),
        fixed(tmp_path, strict=True) as run,
    ):
        log_torch_dataset(run, data, name="big", max_values=31)


class Squares(Dataset[int]):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        return i * i


def test_a_dataset_that_cannot_be_hashed_says_so(tmp_path: Path) -> None:
    model, _ = tiny()
    with fixed(tmp_path) as run:
        watch(run, model, loaders={"train": DataLoader(Squares())})
        log_module(run, model)
    assert run.certificate is not None
    assert run.certificate.warnings == (
        f"dataset train: a {__name__}.Squares cannot be hashed (only a TensorDataset, a Subset "
        "of one, or a dataset with a root folder): not committed",
    )


def test_a_dataset_with_a_root_folder_is_committed_by_its_files(tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "cat").mkdir(parents=True)
    (images / "cat" / "1.png").write_bytes(b"\x89PNG fake")

    class Folder(Squares):
        root = str(images)

    model, _ = tiny()
    with fixed(tmp_path) as run:
        watch(run, model, loaders={"train": Folder()})
        log_module(run, model)
    assert run.certificate is not None
    (record,) = run.certificate.data.datasets
    assert record.manifest is not None and record.manifest.kind == "files"
    assert isinstance(record.manifest, FileManifest)
    assert [f.path for f in record.manifest.files] == ["cat/1.png"]
    assert run.certificate.warnings == (
        f"dataset train: a {__name__}.{Folder.__qualname__} is committed by the files under its "
        f"root {images}, not by its rows",
    )


@pytest.mark.parametrize("helper", [watch, log_module])
def test_a_non_module_is_refused(tmp_path: Path, helper: Any) -> None:
    name = "watch()" if helper is watch else "log_module()"
    with (
        pytest.raises(
            CertificateError,
            match=rf"^{re.escape(name)} needs a torch.nn.Module, not a numpy.ndarray$",
        ),
        fixed(tmp_path) as run,
    ):
        helper(run, np.zeros(3))


def test_a_wrong_optimizer_is_refused(tmp_path: Path) -> None:
    model, _ = tiny()
    with (
        pytest.raises(
            CertificateError,
            match=r"^optimizer= needs a torch.optim.Optimizer, not a builtins.dict$",
        ),
        fixed(tmp_path) as run,
    ):
        watch(run, model, optimizer={"lr": 0.1})


def test_importing_provenance_capture_imports_no_framework() -> None:
    code = (
        "import sys\nimport provenance.capture\n"
        "print(sorted({'torch', 'transformers', 'xgboost', 'lightgbm', 'datasets', "
        "'safetensors'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"
