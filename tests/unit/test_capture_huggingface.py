"""The Hugging Face Trainer callback (provenance.capture.huggingface) with the real
transformers, datasets and torch on CPU: a tiny BERT trained 2 steps on 16 rows, and what the
certificate holds, exactly; hub tokens never reach it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import datasets  # type: ignore[import-untyped]
import pytest
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from provenance.capture import ProvenanceCallback, Run, track
from provenance.capture.huggingface import training_arguments
from provenance.certificate import ParentLink
from provenance.errors import CertificateError, ConfigError
from provenance.hashing import hash_file
from provenance.manifest import FileManifest, open_table

NOON = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
TOKEN = "hf_NeverInACertificate0123456789"


def fixed(folder: Path, **options: Any) -> Run:
    defaults: dict[str, Any] = {
        "output_dir": folder / "out",
        "environment": False,
        "source_dir": folder,
        "clock": lambda: NOON,
        "timer": lambda: 0.0,
    }
    return track("Tiny BERT", **(defaults | options))


def tiny_bert() -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=32,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    return BertForSequenceClassification(config)


def rows(n: int = 16) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "input_ids": [[1 + (i + j) % 30 for j in range(6)] for i in range(n)],
            "attention_mask": [[1] * 6] * n,
            "labels": [i % 2 for i in range(n)],
        }
    )


def arguments(folder: Path, **more: Any) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(folder / "trainer"),
        max_steps=2,
        per_device_train_batch_size=8,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        seed=7,
        **more,
    )


def test_the_callback_records_the_run(tmp_path: Path) -> None:
    model = tiny_bert()
    scored = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, 0]})
    with fixed(tmp_path) as run:
        callback = ProvenanceCallback(run, eval_dataset=scored)
        Trainer(
            model=model, args=arguments(tmp_path), train_dataset=rows(), callbacks=[callback]
        ).train()
    certificate = run.certificate
    assert certificate is not None
    training = certificate.training
    assert training.seeds == {"seed": 7, "torch": 7}
    args = training.parameters["training_args"]
    assert isinstance(args, dict)
    assert (args["max_steps"], args["seed"], args["use_cpu"]) == (2, 7, True)
    recorded_model = training.parameters["model"]
    assert isinstance(recorded_model, dict)
    assert recorded_model["class"] == (
        "transformers.models.bert.modeling_bert.BertForSequenceClassification"
    )
    config = recorded_model["config"]
    assert isinstance(config, dict)
    assert (config["model_type"], config["hidden_size"], config["vocab_size"]) == ("bert", 8, 32)
    assert set(training.metrics) >= {"loss", "train_loss", "learning_rate"}

    train, evaluation = certificate.data.datasets
    assert (train.name, train.role, evaluation.name, evaluation.role) == (
        "train", "train", "eval", "eval",
    )  # fmt: skip
    # token ids are lists: the rows go into an Arrow file, committed by digest
    assert isinstance(train.manifest, FileManifest)
    arrow = tmp_path / "out" / "datasets" / "train.arrow"
    assert [(f.path, f.digest) for f in train.manifest.files] == [
        ("train.arrow", str(hash_file(arrow)))
    ]
    assert datasets.Dataset.from_file(str(arrow)).to_dict() == rows().to_dict()
    # scalar columns: the row Merkle root
    assert evaluation.manifest == open_table(scored.to_pandas()).manifest()
    assert training.parameters["datasets"] == {
        "train": {"fingerprint": callback_fingerprint(run, "train"), "rows": 16},
        "eval": {"fingerprint": scored._fingerprint, "rows": 3},
    }
    assert certificate.warnings == (
        "dataset train: columns input_ids, attention_mask hold lists, which row commitments do "
        "not encode: committed as the Arrow stream file datasets/train.arrow",
    )

    artifact = certificate.model
    assert artifact.format == "huggingface"
    assert artifact.framework is not None and artifact.framework.name == "transformers"
    assert sorted(f.path for f in artifact.manifest.files) == ["config.json", "model.safetensors"]
    assert artifact.estimator is not None
    assert artifact.estimator.params == {"parameters": sum(p.numel() for p in model.parameters())}
    again = BertForSequenceClassification.from_pretrained(tmp_path / "out" / "model")
    assert again.config.hidden_size == 8


def callback_fingerprint(run: Run, role: str) -> str:
    """The fingerprint recorded for a role (the Trainer's own column-pruned copy of the
    dataset, so it is not the one built in the test: checked for shape only)."""
    recorded = run.parameters["datasets"]
    assert isinstance(recorded, dict)
    value = recorded[role]["fingerprint"]
    assert isinstance(value, str) and len(value) == 16
    return value


# -- adversarial ------------------------------------------------------------------------------


def test_a_hub_token_never_reaches_the_certificate(tmp_path: Path) -> None:
    args = arguments(tmp_path, hub_token=TOKEN, hub_model_id="me/tiny")
    assert args.hub_token == TOKEN
    with fixed(tmp_path) as run:
        Trainer(
            model=tiny_bert(), args=args, train_dataset=rows(), callbacks=[ProvenanceCallback(run)]
        ).train()
    assert run.certificate is not None and run.path is not None
    assert TOKEN.encode() not in run.certificate.canonical_bytes()
    assert TOKEN not in run.path.read_text(encoding="utf-8")
    recorded = run.certificate.training.parameters["training_args"]
    assert isinstance(recorded, dict)
    assert [k for k in recorded if "token" in k.lower()] == []
    assert recorded["hub_model_id"] == "me/tiny"


def test_training_arguments_drop_every_secret_key(tmp_path: Path) -> None:
    args = arguments(tmp_path, hub_token=TOKEN)
    recorded = training_arguments(args)
    assert "hub_token" not in recorded and "hub_model_id" in recorded
    assert TOKEN not in json.dumps(recorded)


def test_a_base_model_id_becomes_the_parent(tmp_path: Path) -> None:
    parent = "0x" + "ab" * 32
    run = fixed(tmp_path)
    ProvenanceCallback(run, base_model=parent, relation="distillation")
    assert run.parents == (ParentLink(id=parent, relation="distillation"),)
    with pytest.raises(CertificateError, match=rf"^parent {parent} is already a parent"):
        ProvenanceCallback(run, base_model=parent)


def test_a_base_folder_needs_the_lineage_index(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"^finding the base model by its folder needs the lineage index: pass session= "
        r"to track\(\)$",
    ):
        ProvenanceCallback(fixed(tmp_path), base_model=tmp_path)


def test_a_base_model_that_is_neither_id_nor_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        CertificateError,
        match=r"^base model bert-base-uncased is neither a registered model id nor a folder$",
    ):
        ProvenanceCallback(fixed(tmp_path), base_model="bert-base-uncased")


def test_a_dataset_above_the_row_limit_is_refused_with_a_warning(tmp_path: Path) -> None:
    with fixed(tmp_path) as run:
        Trainer(
            model=tiny_bert(),
            args=arguments(tmp_path),
            train_dataset=rows(),
            callbacks=[ProvenanceCallback(run, max_rows=15)],
        ).train()
    assert run.certificate is not None
    assert run.certificate.data.datasets == ()
    assert run.certificate.warnings == (
        "dataset train: 16 rows is above the 15-row limit for hashing (max_rows=): not committed",
    )
