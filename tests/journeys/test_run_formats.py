"""Journey: `provenance run python train.py` where the script saves PyTorch weights (torch.save,
safetensors, save_pretrained: written by native code the audit hook does not see). The model
files are found, the certificate records their format and torch's version, `show` and
`verify` print it, and a changed byte is caught."""

from __future__ import annotations

import importlib.metadata
import json
import sys
import textwrap

import pytest

from provenance.certificate import body_of, load_certificate

from .conftest import Journey

TRAIN = {
    "state-dict": """
        import torch
        model = torch.nn.Linear(3, 2)
        torch.save(model.state_dict(), "model.pt")
        open("metrics.json", "w").write('{"loss": 0.1}')
    """,
    "safetensors": """
        import torch
        from safetensors.torch import save_file
        save_file(dict(torch.nn.Linear(3, 2).state_dict()), "model.safetensors")
        open("metrics.json", "w").write('{"loss": 0.1}')
    """,
    "save-pretrained": """
        from transformers import BertConfig, BertModel
        config = BertConfig(
            hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
            vocab_size=20, max_position_embeddings=16,
        )
        BertModel(config).save_pretrained("out")
        open("metrics.json", "w").write('{"loss": 0.1}')
    """,
}
EXPECTED = {
    "state-dict": (["model.pt"], "pytorch", "PyTorch torch.save file", "torch"),
    "safetensors": (["model.safetensors"], "safetensors", "safetensors weights", "safetensors"),
    "save-pretrained": (
        ["config.json", "model.safetensors"],
        "huggingface",
        "Hugging Face model folder",
        "transformers",
    ),
}


@pytest.mark.parametrize("script", sorted(TRAIN))
def test_run_certifies_weights_saved_by_pytorch_with_their_format(
    journey: Journey, script: str
) -> None:
    work = journey.folder(f"project-{script}")
    (work / "train.py").write_text(textwrap.dedent(TRAIN[script]))
    done = journey.ok(
        "run", "--name", f"Torch {script}", "--json", "--", sys.executable, "train.py", cwd=work
    )
    summary = json.loads(done.stdout)
    files, recorded, title, distribution = EXPECTED[script]
    assert sorted(summary["model_files"]) == files and summary["registered"] is True
    body = body_of(load_certificate(work / summary["certificate"]))
    assert body.model.format == recorded and body.warnings == ()
    assert body.model.framework is not None
    assert body.model.framework.version == importlib.metadata.version(distribution)

    elsewhere = journey.folder(f"elsewhere-{script}")
    model = work / (files[0] if len(files) == 1 else "out")  # save_pretrained's folder, whole
    verified = journey.ok("verify", str(model), "--fetch-timeout", "5", cwd=elsewhere)
    assert summary["model_id"] in verified.stdout
    assert f"model: {title} ({recorded}), written with " in verified.stdout
    shown = journey.ok("show", summary["model_id"], cwd=elsewhere)
    assert f"{title} ({recorded}), written with " in shown.stdout

    weights = model / files[-1] if model.is_dir() else model
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    refused = journey.run("verify", str(model), "--fetch-timeout", "5", cwd=elsewhere)
    assert refused.returncode == 1
    count = len(files)
    assert refused.stdout.splitlines()[-1].startswith(
        f"NOT verified: 1 required check(s) failed; first: {model} model-files: no registered "
        f"model has the digest sha256:"
    )
    assert refused.stdout.splitlines()[-1].endswith(
        f"of these {count} file(s) (and there is no certificate.json beside them to compare with)"
    )
