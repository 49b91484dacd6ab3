"""PyTorch training loops into a :class:`~provenance.capture.tracker.Run` (the ``torch`` extra;
torch is imported only when a helper is called)::

    with provenance.track("Tiny MLP", session=session) as run:
        watch(run, model, optimizer=opt, scheduler=sched, loaders={"train": loader}, seed=0)
        ...  # the training loop
        run.log_metrics(loss=float(loss))
        log_module(run, model)  # model.safetensors in run.output_dir

:func:`watch` records, as training parameters, the model's class, parameter count and dtypes,
the optimizer's class and its ``param_groups`` hyper-parameters (never the tensors), the
scheduler's class and ``state_dict()`` (JSON values only); the seeds (set first when
``seed`` is given); and a commitment to each loader's dataset:

- a ``TensorDataset``: its tensors as one table, a column per tensor element, a row per sample
  (the row Merkle root of :mod:`provenance.manifest`, so one sample can be proven), refused
  with a warning above ``max_values`` cells;
- a ``Subset`` of one: the source table and the subset's indices (the subset is provable);
- any other dataset: the files under its ``root`` folder when it has one (torchvision's), with
  a warning saying the rows themselves are not committed; else a warning and no commitment.

:func:`log_module` saves the state dict as safetensors (``format="pytorch"``: ``torch.save``;
``"torchscript"``: ``torch.jit.script``, or ``torch.jit.trace`` with ``example``) into the run's
output folder and logs it as the model, with the module tree (class, parameter count, layer
arguments) as ``model.estimator``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import JsonValue

from provenance.capture.framework_models import log_framework_model
from provenance.capture.values import as_json, bounded_repr, type_name
from provenance.certificate import EstimatorNode, Framework, ModelArtifact
from provenance.errors import CertificateError

if TYPE_CHECKING:
    import torch

    from provenance.capture.tracker import Run

MAX_VALUES = 50_000_000
"""The most tensor elements a dataset commitment hashes by default (``max_values=``)."""

MAX_NODES = 2_000
"""The most modules the recorded module tree lists; deeper or wider ones are cut, with a
warning."""

FILES = {
    "safetensors": "model.safetensors",
    "pytorch": "model.pt",
    "torchscript": "model.torchscript.pt",
}

SaveFormat = Literal["safetensors", "pytorch", "torchscript"]


def _module(model: object, what: str) -> torch.nn.Module:
    import torch

    if not isinstance(model, torch.nn.Module):
        raise CertificateError(f"{what} needs a torch.nn.Module, not a {type_name(model)}")
    return model


def framework() -> Framework:
    import torch

    return Framework(name="torch", version=torch.__version__)


# -- watch ------------------------------------------------------------------------------------


def watch(
    run: Run,
    model: object,
    *,
    optimizer: object = None,
    scheduler: object = None,
    loaders: Mapping[str, object] | Sequence[object] = (),
    seed: int | None = None,
    max_values: int = MAX_VALUES,
) -> None:
    """Record a PyTorch training set-up in ``run`` (see the module docstring). ``loaders``:
    DataLoaders or datasets, by role (``{"train": ..., "validation": ...}``) or in a
    sequence (role ``train``, named ``loader-0``, ``loader-1``, …)."""
    module = _module(model, "watch()")
    if seed is not None:
        seed_everything(seed)
    run.log_seeds(_seeds(seed))
    run.log_params(model=model_summary(module))
    if optimizer is not None:
        run.log_params(optimizer=optimizer_summary(optimizer))
    if scheduler is not None:
        run.log_params(scheduler=scheduler_summary(scheduler))
    named = (
        [(role, role, loader) for role, loader in loaders.items()]
        if isinstance(loaders, Mapping)
        else [(f"loader-{i}", "train", loader) for i, loader in enumerate(loaders)]
    )
    for name, role, loader in named:
        log_torch_dataset(run, loader, name=name, role=role, max_values=max_values)


def seed_everything(seed: int) -> None:
    """Seed torch (every device), numpy and Python's ``random`` with ``seed``."""
    import numpy as np
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _seeds(seed: int | None) -> dict[str, JsonValue]:
    import torch

    if seed is not None:
        return {"torch": seed, "numpy": seed, "random": seed}
    return {"torch": int(torch.initial_seed())}


def model_summary(module: torch.nn.Module) -> dict[str, JsonValue]:
    """The model's class, its parameter counts and the dtypes of its parameters."""
    params = list(module.parameters())
    return {
        "class": type_name(module),
        "parameters": sum(p.numel() for p in params),
        "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
        "dtypes": [str(d) for d in sorted({str(p.dtype) for p in params})],
    }


def _json_or_repr(value: object) -> JsonValue:
    ok, converted = as_json(value)
    return converted if ok else bounded_repr(value)


def optimizer_summary(optimizer: Any) -> dict[str, JsonValue]:
    """The optimizer's class and each param group's hyper-parameters (not its tensors)."""
    import torch

    if not isinstance(optimizer, torch.optim.Optimizer):
        raise CertificateError(
            f"optimizer= needs a torch.optim.Optimizer, not a {type_name(optimizer)}"
        )
    groups: list[JsonValue] = []
    for group in optimizer.param_groups:
        groups.append(
            {
                key: _json_or_repr(value)
                for key, value in group.items()
                if key != "params" and not isinstance(value, torch.Tensor)
            }
        )
    return {"class": type_name(optimizer), "param_groups": groups}


def scheduler_summary(scheduler: Any) -> dict[str, JsonValue]:
    """The scheduler's class and the JSON values of its ``state_dict()`` (tensors, functions
    and other objects left out)."""
    state_dict = getattr(scheduler, "state_dict", None)
    if not callable(state_dict):
        raise CertificateError(
            f"scheduler= needs a learning-rate scheduler (with state_dict()), not a "
            f"{type_name(scheduler)}"
        )
    state: dict[str, JsonValue] = {}
    for key, value in dict(state_dict()).items():
        ok, converted = as_json(value)
        if ok:
            state[str(key)] = converted
    return {"class": type_name(scheduler), "state": state}


# -- datasets ---------------------------------------------------------------------------------


def log_torch_dataset(
    run: Run,
    data: object,
    *,
    name: str,
    role: str = "train",
    max_values: int = MAX_VALUES,
) -> None:
    """Commit to a DataLoader's dataset (or a dataset); see the module docstring. What cannot
    be committed becomes a warning in the certificate (an error with ``strict=True``)."""
    from torch.utils.data import DataLoader, Subset, TensorDataset

    dataset = data.dataset if isinstance(data, DataLoader) else data
    indices: list[int] | None = None
    source = dataset
    if isinstance(dataset, Subset):
        indices = [int(i) for i in dataset.indices]
        source = dataset.dataset
    label = f"dataset {name}"
    if isinstance(source, TensorDataset):
        cells = _cells(source)
        if cells > max_values:
            run.warn(
                f"{label}: a TensorDataset of {cells:,} values is above the {max_values:,}-value "
                "limit for hashing (max_values=): not committed"
            )
            return
        run.log_dataset(_tensor_table(source), name=name, role=role, subset=indices)
        return
    root = getattr(source, "root", None)
    if isinstance(root, str | Path) and Path(root).is_dir():
        run.warn(
            f"{label}: a {type_name(source)} is committed by the files under its root {root}, "
            "not by its rows" + (" (its subset indices are not recorded)" if indices else "")
        )
        run.log_dataset(Path(root), name=name, role=role)
        return
    run.warn(
        f"{label}: a {type_name(source)} cannot be hashed (only a TensorDataset, a Subset of "
        "one, or a dataset with a root folder): not committed"
    )


def _cells(dataset: Any) -> int:
    return sum(int(t.numel()) for t in dataset.tensors)


def _tensor_table(dataset: Any) -> Any:
    """A TensorDataset as a pandas DataFrame: a row per sample, a column per element of each
    tensor's sample (``t0``, or ``t0.0``, ``t0.1``, … for a sample of several values)."""
    import pandas as pd

    columns: dict[str, Any] = {}
    for t, tensor in enumerate(dataset.tensors):
        array = tensor.detach().cpu().numpy()
        flat = array.reshape(len(array), -1)
        if array.ndim == 1:
            columns[f"t{t}"] = flat[:, 0]
        else:
            for j in range(flat.shape[1]):
                columns[f"t{t}.{j}"] = flat[:, j]
    return pd.DataFrame(columns)


# -- the model --------------------------------------------------------------------------------


def module_tree(module: torch.nn.Module, name: str | None = None) -> tuple[EstimatorNode, bool]:
    """The module tree: each module's class, its own arguments (``extra_repr``) and parameter
    count, its children by name; True when it was cut at :data:`MAX_NODES` modules."""
    budget = [MAX_NODES]

    def node(current: torch.nn.Module, label: str | None) -> EstimatorNode:
        budget[0] -= 1
        params: dict[str, JsonValue] = {"parameters": sum(p.numel() for p in current.parameters())}
        extra = current.extra_repr()
        if extra:
            params["arguments"] = extra if len(extra) <= 200 else extra[:197] + "..."
        children: list[EstimatorNode] = []
        for child_name, child in current.named_children():
            if budget[0] <= 0:
                break
            children.append(node(child, child_name))
        return EstimatorNode(
            name=label, type=type_name(current), params=params, steps=tuple(children)
        )

    tree = node(module, name)
    return tree, budget[0] <= 0


def save_module(
    module: torch.nn.Module,
    path: Path,
    *,
    format: SaveFormat = "safetensors",
    example: object = None,
) -> None:
    """Write the module: its state dict as safetensors or with ``torch.save``, or the module
    as TorchScript (scripted, or traced with ``example`` inputs)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "safetensors":
        from safetensors.torch import save_model

        save_model(module, str(path))
    elif format == "pytorch":
        torch.save(module.state_dict(), path)
    elif format == "torchscript":
        scripted = (
            torch.jit.trace(module, example)  # type: ignore[no-untyped-call]
            if example is not None
            else torch.jit.script(module)
        )
        torch.jit.save(scripted, str(path))
    else:
        raise CertificateError(
            f"unknown PyTorch save format {format!r}: safetensors, pytorch or torchscript"
        )


def log_module(
    run: Run,
    model: object,
    *,
    format: SaveFormat = "safetensors",
    path: Path | None = None,
    example: object = None,
) -> ModelArtifact:
    """Save ``model`` (an ``nn.Module``) into ``run.output_dir`` (or ``path``) in ``format``
    and log it as the run's model: the detected format, the torch version, the module tree."""
    module = _module(model, "log_module()")
    if format not in FILES:
        raise CertificateError(
            f"unknown PyTorch save format {format!r}: safetensors, pytorch or torchscript"
        )
    location = path or run.output_dir / FILES[format]
    save_module(module, location, format=format, example=example)
    tree, cut = module_tree(module)
    if cut:
        run.warn(f"the module tree has more than {MAX_NODES} modules: the rest are not listed")
    return log_framework_model(run, location, framework(), tree)


__all__ = [
    "MAX_VALUES",
    "log_module",
    "log_torch_dataset",
    "model_summary",
    "module_tree",
    "optimizer_summary",
    "save_module",
    "scheduler_summary",
    "seed_everything",
    "watch",
]
