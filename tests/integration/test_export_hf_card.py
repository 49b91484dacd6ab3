"""Hugging Face cards on the real stack: a card whose base_model is a local folder becomes a
typed parent by digest (API and `provenance run --parent-from-card`), and a registered model
exports as a card huggingface_hub reads, which reads back as the same parent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from huggingface_hub import ModelCard

import provenance
from provenance.certificate import ParentLink
from provenance.export.hf_card import parents_from_card
from provenance.registration import Parent, Relation
from provenance.stack import Stack

from .conftest import config_at

PROVENANCE = Path(sys.executable).parent / "provenance"


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROVENANCE), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_a_cards_local_base_folder_becomes_a_registered_parent(
    stack: Stack, stack_config_path: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    config = config_at(stack_config_path)
    base = tmp_path / "google" / "gemma-mini"  # as a download of the repo google/gemma-mini
    base.mkdir(parents=True)
    (base / "config.json").write_text('{"layers": 2}')
    (base / "model.safetensors").write_bytes(os.urandom(4096))
    with (
        provenance.connect(config) as session,
        provenance.track(
            "HF base", session=session, output_dir=tmp_path / "base-run", environment=False
        ) as base_run,
    ):
        base_run.log_model(base)
    assert base_run.registered is not None
    base_id = "0x" + base_run.registered.id.hex()

    card = tmp_path / "README.md"
    card.write_text(
        "---\nbase_model: google/gemma-mini\nbase_model_relation: quantized\n---\n\n# mini\n",
        encoding="utf-8",
    )
    with provenance.connect(config) as session:
        parents = parents_from_card(card, session)
        assert parents == (
            ParentLink(id=base_id, relation="quantization", name="google/gemma-mini"),
        )
        weights = tmp_path / "quantized.safetensors"
        weights.write_bytes(os.urandom(1024))
        with provenance.track(
            "HF child", session=session, parents=parents, output_dir=tmp_path / "child-run",
            environment=False,
        ) as child_run:  # fmt: skip
            child_run.log_model(weights)
    assert child_run.registered is not None
    child_id = "0x" + child_run.registered.id.hex()
    with provenance.connect(config) as session:
        assert session.index.parents(child_run.registered.id) == [
            Parent(base_run.registered.id, Relation.QUANTIZATION)
        ]
        chain_id, registry = session.chain_id, session.registry.address

    # the child's card, exported by the CLI, read by huggingface_hub
    exported = tmp_path / "exported" / "README.md"
    exported.parent.mkdir()
    result = run_cli(
        "export", child_id, "--format", "hf-card", "-o", str(exported), env=cli_env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    data = ModelCard.load(exported).data.to_dict()
    assert data["base_model"] == "google/gemma-mini"  # the parent's recorded repo id
    assert data["base_model_relation"] == "quantized"
    assert data["provenance"]["model_id"] == child_id
    assert data["provenance"]["chain_id"] == chain_id
    assert data["provenance"]["registry"] == registry
    assert f"provenance verify {child_id}" in exported.read_text(encoding="utf-8")

    # a card naming the base by model id reads back too
    by_id = tmp_path / "by-id.md"
    by_id.write_text(f"---\nbase_model: '{base_id}'\n---\n", encoding="utf-8")
    with provenance.connect(config) as session:
        assert parents_from_card(by_id, session, relation="checkpoint") == (
            ParentLink(id=base_id, relation="checkpoint"),
        )

    # the CLI: provenance run --parent-from-card
    (tmp_path / "train.py").write_text(
        "import os\nopen('student.joblib', 'wb').write(os.urandom(64))\n", encoding="utf-8"
    )
    result = run_cli(
        "run", "--name", "HF student", "--parent-from-card", str(card), "--out-dir", "student",
        "--json", "--", sys.executable, "train.py",
        env=cli_env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["registered"] is True
    certificate = json.loads((tmp_path / "student" / "certificate.json").read_text())
    body = certificate.get("certificate", certificate)
    assert body["parents"] == [
        {"id": base_id, "relation": "quantization", "name": "google/gemma-mini"}
    ]


def test_a_base_folder_nobody_registered_is_refused_before_the_run(
    stack: Stack, cli_env: dict[str, str], tmp_path: Path
) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "model.safetensors").write_bytes(os.urandom(512))
    card = tmp_path / "README.md"
    card.write_text("---\nbase_model: ./base\n---\n", encoding="utf-8")
    (tmp_path / "train.py").write_text("open('ran', 'w').write('yes')\n", encoding="utf-8")
    from provenance.manifest import manifest_of

    digest = manifest_of(base).root
    result = run_cli(
        "run", "--name", "orphan", "--parent-from-card", str(card), "--",
        sys.executable, "train.py", env=cli_env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        f"error: no registered model has the model digest {digest} of base_model folder {base}\n"
    )
    assert not (tmp_path / "ran").exists()
