"""Hugging Face ``Trainer`` runs into a :class:`~provenance.capture.tracker.Run` (the
``huggingface`` extra; importing this module imports transformers, ``provenance.capture``
does not)::

    with provenance.track("tiny-bert-ft", session=session) as run:
        callback = ProvenanceCallback(run, base_model=Path("bases/tiny-bert"))
        trainer = Trainer(model, args, train_dataset=train, callbacks=[callback])
        trainer.train()

What :class:`ProvenanceCallback` records:

- at the start of training: the ``TrainingArguments`` (``to_dict()``, without any key naming a
  token, so hub tokens never reach the certificate) as the ``training_args`` parameter, the
  model's class and ``config.to_dict()`` as ``model``, and the seeds (``seed``, ``data_seed``,
  torch's initial seed);
- at the end: each dataset's fingerprint (``datasets.Dataset._fingerprint``) and row count as
  the ``datasets`` parameter, and a commitment per dataset: the row Merkle root of
  :mod:`provenance.manifest` when every column holds scalars (text, numbers), else (token ids
  are lists) its rows as an Arrow stream file ``output_dir/datasets/NAME.arrow`` by digest,
  with a warning saying so. The datasets are those given to the callback, else the ones the
  Trainer's data loaders read (after it dropped the columns the model does not take);
- the last value of each number the Trainer logged (``loss``, ``train_loss``, ``eval_*``) as a
  metric, and the model saved with ``save_pretrained`` (with its tokenizer or processor) to
  ``model_dir`` (default ``output_dir/model``), logged as the model, format ``huggingface``.

The base model becomes a parent: a registered model id, or a local folder whose model digest
exactly one registered model has (looked up in the session's lineage index, as
``provenance export hf-card``'s ``base_model`` is).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import JsonValue
from transformers import TrainerCallback

from provenance.capture.framework_models import log_framework_model
from provenance.capture.tracker import parse_parent
from provenance.capture.values import as_json, bounded_repr, type_name
from provenance.certificate import EstimatorNode, Framework, ParentLink
from provenance.errors import CertificateError, ConfigError
from provenance.registration import Relation

if TYPE_CHECKING:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from provenance.capture.tracker import Run

MAX_ROWS = 10_000_000
"""The most rows of a dataset committed by default (``max_rows=``); larger ones are refused
with a warning."""

SECRET_WORDS = ("token", "secret", "password")
"""A ``TrainingArguments`` key containing one of these (any case) is never recorded."""


def _plain(values: Mapping[str, object]) -> dict[str, JsonValue]:
    out: dict[str, JsonValue] = {}
    for key, value in values.items():
        ok, converted = as_json(value)
        out[str(key)] = converted if ok else bounded_repr(value)
    return out


def training_arguments(args: TrainingArguments) -> dict[str, JsonValue]:
    """``args.to_dict()`` without secrets (any key naming a token, secret or password)."""
    return _plain(
        {
            key: value
            for key, value in args.to_dict().items()  # type: ignore[no-untyped-call]
            if not any(word in key.lower() for word in SECRET_WORDS)
        }
    )


def base_parent(
    run: Run, base_model: str | Path, relation: str | Relation = Relation.FINE_TUNE
) -> ParentLink:
    """The parent link of a base model: a registered model id (0x and 64 hex digits), or a
    local folder whose model digest exactly one registered model has (the run's session's
    lineage index, synced first)."""
    label = relation.label if isinstance(relation, Relation) else relation
    if isinstance(base_model, str) and base_model.startswith("0x"):
        return parse_parent((base_model, label))
    folder = Path(base_model).resolve()
    if not folder.is_dir():
        raise CertificateError(
            f"base model {base_model} is neither a registered model id nor a folder"
        )
    if run.session is None:
        raise ConfigError(
            "finding the base model by its folder needs the lineage index: pass session= to track()"
        )
    from provenance.export.hf_card import registered_id  # the card's base_model lookup

    index = run.session.index
    index.sync(run.session.registry)
    trusted = run.session.policy.registrants
    return parse_parent((registered_id(str(folder), folder, index, trusted), label))


class ProvenanceCallback(TrainerCallback):
    """A ``TrainerCallback`` that records the training run in ``run`` (see the module
    docstring). ``base_model`` (with ``relation``) adds the parent; ``train_dataset`` /
    ``eval_dataset`` name the datasets to commit to (default: the Trainer's loaders')."""

    def __init__(
        self,
        run: Run,
        *,
        base_model: str | Path | None = None,
        relation: str | Relation = Relation.FINE_TUNE,
        train_dataset: object = None,
        eval_dataset: object = None,
        model_dir: Path | None = None,
        max_rows: int = MAX_ROWS,
    ) -> None:
        self.run = run
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.model_dir = model_dir
        self.max_rows = max_rows
        if base_model is not None:
            parent = base_parent(run, base_model, relation)
            if any(p.id == parent.id for p in run.parents):
                raise CertificateError(f"parent {parent.id} is already a parent of this run")
            run.parents = (*run.parents, parent)

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero:
            return
        run = self.run
        run.log_params(training_args=training_arguments(args))
        model = kwargs.get("model")
        if model is not None:
            config = getattr(model, "config", None)
            summary: dict[str, JsonValue] = {"class": type_name(model)}
            if config is not None:
                summary["config"] = _plain(config.to_dict())
            run.log_params(model=summary)
        seeds: dict[str, object] = {"seed": args.seed}
        if args.data_seed is not None:
            seeds["data_seed"] = args.data_seed
        import torch

        seeds["torch"] = int(torch.initial_seed())
        run.log_seeds(seeds)

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero:
            return
        run = self.run
        found: dict[str, object] = {}
        for role, given, loader in (
            ("train", self.train_dataset, kwargs.get("train_dataloader")),
            ("eval", self.eval_dataset, kwargs.get("eval_dataloader")),
        ):
            dataset = given if given is not None else getattr(loader, "dataset", None)
            if dataset is not None:
                found[role] = dataset
        notes: dict[str, JsonValue] = {}
        for role, dataset in found.items():
            notes[role] = log_hf_dataset(run, dataset, name=role, role=role, max_rows=self.max_rows)
        if notes:
            run.log_params(datasets=notes)
        run.log_metrics(last_logged(state.log_history))
        model = kwargs.get("model")
        if model is None:
            run.warn("the Trainer handed no model to the callback: no model logged")
            return
        folder = self.model_dir or run.output_dir / "model"
        model.save_pretrained(folder)
        processor = kwargs.get("processing_class")
        if processor is not None and callable(getattr(processor, "save_pretrained", None)):
            processor.save_pretrained(folder)
        import transformers

        log_framework_model(
            run,
            folder,
            Framework(name="transformers", version=transformers.__version__),
            EstimatorNode(
                type=type_name(model),
                params={"parameters": int(sum(p.numel() for p in model.parameters()))},
            ),
        )


def last_logged(history: list[dict[str, Any]]) -> dict[str, object]:
    """The last value of each number in the Trainer's log history (``step`` and ``epoch``
    excluded: they say when, not how well)."""
    metrics: dict[str, object] = {}
    for entry in history:
        for key, value in entry.items():
            if key not in ("step", "epoch") and isinstance(value, int | float):
                metrics[key] = value
    return metrics


def log_hf_dataset(
    run: Run, dataset: object, *, name: str, role: str, max_rows: int = MAX_ROWS
) -> JsonValue:
    """Commit to a ``datasets.Dataset`` (see the module docstring); returns its note (the
    fingerprint and row count) for the ``datasets`` parameter."""
    import datasets  # type: ignore[import-untyped]
    import pyarrow as pa

    if not isinstance(dataset, datasets.Dataset):
        run.warn(f"dataset {name}: a {type_name(dataset)} is not a datasets.Dataset: not committed")
        return {"type": type_name(dataset)}
    note: dict[str, JsonValue] = {
        "fingerprint": str(dataset._fingerprint),
        "rows": dataset.num_rows,
    }
    if dataset.num_rows > max_rows:
        run.warn(
            f"dataset {name}: {dataset.num_rows:,} rows is above the {max_rows:,}-row limit "
            "for hashing (max_rows=): not committed"
        )
        return note
    rows = dataset.flatten_indices() if dataset._indices is not None else dataset
    table = rows.data.table.combine_chunks()
    nested = [f.name for f in table.schema if pa.types.is_nested(f.type)]
    if not nested:
        run.log_dataset(table.to_pandas(), name=name, role=role)
        return note
    path = run.output_dir / "datasets" / f"{name}.arrow"
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    run.warn(
        f"dataset {name}: columns {', '.join(nested)} hold lists, which row commitments do not "
        f"encode: committed as the Arrow stream file datasets/{name}.arrow"
    )
    run.log_dataset(path, name=name, role=role)
    return note


__all__ = ["MAX_ROWS", "ProvenanceCallback", "base_parent", "log_hf_dataset", "training_arguments"]
