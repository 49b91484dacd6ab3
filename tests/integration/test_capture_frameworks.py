"""Framework capture on the real stack (anvil, kubo): a Hugging Face Trainer run registers a
child of a registered base folder (the parent found by the folder's model digest), and the
README's PyTorch example runs as a user runs it; `provenance verify` passes for both."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import datasets  # type: ignore[import-untyped]
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

import provenance
from provenance.capture import ProvenanceCallback
from provenance.registration import Parent, Relation
from provenance.stack import Stack

from .conftest import config_at

PROVENANCE = Path(sys.executable).parent / "provenance"

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_pytorch_example() -> str:
    """The README's PyTorch example (the block marked ``readme-test: pytorch-python``)."""
    match = re.search(
        r"<!-- readme-test: pytorch-python -->\n```python\n(.*?)```", README.read_text(), re.S
    )
    assert match, "README has no python block marked readme-test: pytorch-python"
    return match.group(1)


"""The "PyTorch example" of the README's "your model, your server" section, run verbatim."""


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROVENANCE), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def tiny_gpt2() -> GPT2LMHeadModel:
    return GPT2LMHeadModel(GPT2Config(vocab_size=32, n_positions=16, n_embd=8, n_layer=1, n_head=2))


def test_a_trainer_run_registers_a_child_of_a_registered_base_folder(
    stack: Stack, stack_config_path: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    config = config_at(stack_config_path)
    base = tmp_path / "bases" / "tiny-gpt2"
    tiny_gpt2().save_pretrained(base)
    with (
        provenance.connect(config) as session,
        provenance.track(
            "tiny-gpt2", session=session, output_dir=tmp_path / "base-run", environment=False
        ) as base_run,
    ):
        base_run.log_model(base)
    assert base_run.registered is not None

    tokens = [[1 + (i + j) % 30 for j in range(8)] for i in range(16)]
    train = datasets.Dataset.from_dict({"input_ids": tokens, "labels": tokens})
    args = TrainingArguments(
        output_dir=str(tmp_path / "trainer"),
        max_steps=2,
        per_device_train_batch_size=8,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        hub_token="hf_NotForTheChain",
    )
    with (
        provenance.connect(config) as session,
        provenance.track(
            "tiny-gpt2-ft", session=session, output_dir=tmp_path / "child-run", environment=False
        ) as run,
    ):
        callback = ProvenanceCallback(run, base_model=base, train_dataset=train)
        model = GPT2LMHeadModel.from_pretrained(base)
        Trainer(model=model, args=args, train_dataset=train, callbacks=[callback]).train()
    assert run.registered is not None and run.certificate is not None
    assert run.certificate.model.format == "huggingface"
    assert b"hf_NotForTheChain" not in run.certificate.canonical_bytes()
    with provenance.connect(config) as session:
        assert session.index.parents(run.registered.id) == [
            Parent(base_run.registered.id, Relation.FINE_TUNE)
        ]

    fresh = tmp_path / "auditor"
    fresh.mkdir()
    child_id = "0x" + run.registered.id.hex()
    verified = run_cli("verify", child_id, "--fetch-timeout", "5", env=cli_env, cwd=fresh)
    assert verified.returncode == 0, (verified.stdout, verified.stderr)


def test_the_readme_pytorch_example_registers_a_model_that_verifies(
    stack: Stack, cli_env: dict[str, str], tmp_path: Path
) -> None:
    trainer = tmp_path / "trainer"
    trainer.mkdir()
    (trainer / "train.py").write_text(readme_pytorch_example(), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "train.py"],
        env=cli_env,
        cwd=trainer,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    model_id = done.stdout.strip().splitlines()[-1]
    certificate = (trainer / "provenance-runs" / "tiny-mlp" / "certificate.json").read_text()
    assert '"format":"safetensors"' in certificate.replace(" ", "")

    fresh = tmp_path / "auditor"
    fresh.mkdir()
    verified = run_cli("verify", model_id, "--fetch-timeout", "5", env=cli_env, cwd=fresh)
    assert verified.returncode == 0, (verified.stdout, verified.stderr)
    shown = run_cli("show", model_id, env=cli_env, cwd=fresh)
    assert shown.returncode == 0, shown.stderr
    assert "tiny-mlp" in shown.stdout
