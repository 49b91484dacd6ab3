"""The hf-card format: a Hugging Face model card that round-trips through huggingface_hub's
own ModelCard, the relation mapping, and reading a card's base models back (errors here; the
registered-base path runs on the real stack in tests/integration/test_export_hf_card.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from huggingface_hub import ModelCard

from provenance.certificate import ParentLink
from provenance.errors import CertificateError
from provenance.export import Subject, export
from provenance.export.hf_card import (
    FROM_HF,
    TO_HF,
    card_data,
    hf_relation,
    parents_from_card,
)
from provenance.registration import Relation

from .test_certificate import ALPHA, sample_certificate

REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
PROVENANCE = Path(sys.executable).parent / "provenance"


def subject(tmp: Path, **changes: Any) -> Subject:
    creator = Account.create()
    body = sample_certificate(tmp, creator=creator.address, **changes)
    return Subject.of(body, chain_id=31337, registry=REGISTRY)


def test_the_card_round_trips_through_huggingface_hub(tmp_path: Path) -> None:
    s = subject(tmp_path)
    text = export(s, "hf-card", signing_key=None, license="apache-2.0").decode()
    path = tmp_path / "README.md"
    path.write_text(text, encoding="utf-8")

    loaded = ModelCard.load(path)  # a local file: huggingface_hub reads it, no network
    expected = card_data(s, license="apache-2.0").to_dict()
    assert loaded.data.to_dict() == expected
    assert ModelCard(str(loaded)).data.to_dict() == expected  # and again from its own text
    assert expected["base_model"] == ALPHA  # the parent's name "Model Alpha" is no repo id
    assert expected["base_model_relation"] == "finetune"
    assert expected["datasets"] == ["train.csv"]  # training data only; holdout is a test set
    assert expected["license"] == "apache-2.0"
    assert expected["tags"] == ["provenance", "birth-certificate"]
    assert expected["provenance"] == {
        "model_id": s.model_id_hex,
        "certificate_cid": s.cid,
        "certificate_digest": s.certificate.digest_text,
        "model_digest": s.certificate.model.digest,
        "data_commitment": s.certificate.data.commitment,
        "chain_id": 31337,
        "registry": REGISTRY,
        "creator": s.certificate.creator,
        "parents": [{"id": ALPHA, "relation": "fine-tune", "name": "Model Alpha"}],
    }
    body = loaded.text
    assert "## Provenance" in body
    assert f"| model id | `{s.model_id_hex}` |" in body
    assert f"| certificate | `ipfs://{s.cid}` (`{s.certificate.digest_text}`) |" in body
    assert f"| registered in | ModelRegistry `{REGISTRY}` on chain 31337 |" in body
    assert (
        f"$ PROVENANCE_CHAIN_ID=31337 PROVENANCE_REGISTRY={REGISTRY} provenance verify "
        f"{s.model_id_hex} --trust {s.certificate.creator}\n"
    ) in body


def test_relations_map_to_the_hubs_and_back() -> None:
    assert {r.label: TO_HF[r] for r in Relation} == {
        "fine-tune": "finetune",
        "transfer": "finetune",
        "online-update": None,
        "distillation": None,
        "merge": "merge",
        "quantization": "quantized",
        "checkpoint": None,
        "other": None,
    }
    assert {k: v.label for k, v in FROM_HF.items()} == {
        "finetune": "fine-tune",
        "adapter": "fine-tune",
        "quantized": "quantization",
        "merge": "merge",
    }
    assert hf_relation([Relation.MERGE, Relation.MERGE]) == "merge"
    assert hf_relation([Relation.FINE_TUNE, Relation.QUANTIZATION]) is None  # they differ
    assert hf_relation([Relation.DISTILLATION]) is None


def test_several_parents_a_repo_id_and_a_relation_without_equivalent(tmp_path: Path) -> None:
    other = "0x" + "cd" * 32
    merged = subject(
        tmp_path,
        parents=(
            ParentLink(id=ALPHA, relation="merge", name="google/gemma-2b"),
            ParentLink(id=other, relation="merge", name="Model Gamma"),
        ),
    )
    data = ModelCard(export(merged, "hf-card").decode()).data.to_dict()
    assert data["base_model"] == ["google/gemma-2b", other]
    assert data["base_model_relation"] == "merge"
    assert "license" not in data  # not known: not guessed

    distilled = subject(tmp_path, parents=(ParentLink(id=ALPHA, relation="distillation"),))
    data = ModelCard(export(distilled, "hf-card").decode()).data.to_dict()
    assert data["base_model"] == ALPHA and "base_model_relation" not in data
    assert data["provenance"]["parents"] == [{"id": ALPHA, "relation": "distillation"}]


def test_hostile_names_stay_text_in_the_markdown(tmp_path: Path) -> None:
    s = subject(tmp_path, model_name="Evil\n---\nlicense: mit\n<script>x</script> [a](b)")
    text = export(s, "hf-card").decode()
    card = ModelCard(text)
    assert "license" not in card.data.to_dict()
    assert card.data.to_dict()["provenance"]["certificate_cid"] == s.cid
    assert card.text.splitlines()[1] == (
        r"# Evil --- license: mit \<script\>x\</script\> \[a\]\(b\)"
    )


def test_export_help_lists_the_format(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(PROVENANCE), "export", "--help"],
        cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **pythonpath()},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "hf-card" in result.stdout and "Hugging Face model card" in result.stdout


def pythonpath() -> dict[str, str]:
    """The worktree's sources first, as the test run has them."""
    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}


class _Index:
    """Stands in for the family-tree index in the error paths that never reach a registered
    model (the registered path runs against the real stack)."""

    def __init__(self, by_digest: dict[bytes, list[bytes]] | None = None) -> None:
        self.by_digest = by_digest or {}

    def sync(self, registry: object) -> None:
        pass

    def get(self, model_id: bytes) -> None:
        return None

    def by_model_digest(self, digest: bytes) -> list[bytes]:
        return self.by_digest.get(digest, [])


class _Session:
    def __init__(self, index: _Index) -> None:
        self.index = index
        self.registry = object()
        self.policy = _NoTrustRoots()


class _NoTrustRoots:
    registrants: frozenset[str] | None = None


def card_file(tmp: Path, front_matter: str) -> Path:
    path = tmp / "README.md"
    path.write_text(f"---\n{front_matter}---\n\n# child\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("front_matter", "message"),
    [
        ("license: mit\n", "model card {card} names no base_model"),
        ("base_model: ./missing\n", None),
        (
            "base_model: ./base\nbase_model_relation: distilled\n",
            "model card {card}: base_model_relation 'distilled' is not one of finetune, "
            "adapter, quantized, merge",
        ),
        ("base_model: [1, 2]\n", "model card {card}: base_model must be a name or a list of names"),
        (f"base_model: '0x{'ab' * 32}'\n", f"base_model 0x{'ab' * 32} is not a registered model"),
        (
            "base_model: ./base\n",
            "no registered model has the model digest {digest} of base_model folder {base}",
        ),
    ],
)
def test_card_errors_are_one_line(tmp_path: Path, front_matter: str, message: str | None) -> None:
    from provenance.manifest import manifest_of

    base = tmp_path / "base"
    base.mkdir()
    (base / "model.safetensors").write_bytes(b"weights")
    digest = manifest_of(base).root
    card = card_file(tmp_path, front_matter)
    if message is None:
        message = (
            f"base_model './missing' is not a folder beside {card} (nor a model id): download "
            "the base model there and point base_model at it"
        )
    with pytest.raises(CertificateError) as info:
        parents_from_card(card, _Session(_Index()))  # type: ignore[arg-type]
    assert str(info.value) == message.format(card=card, digest=digest, base=base)


def test_a_digest_registered_twice_is_ambiguous(tmp_path: Path) -> None:
    from provenance.hashing import parse_digest
    from provenance.manifest import manifest_of

    base = tmp_path / "base"
    base.mkdir()
    (base / "model.safetensors").write_bytes(b"weights")
    digest = manifest_of(base).root
    ids = [b"\x01" * 32, b"\x02" * 32]
    index = _Index({parse_digest(digest): ids})
    with pytest.raises(CertificateError) as info:
        parents_from_card(card_file(tmp_path, "base_model: base\n"), _Session(index))  # type: ignore[arg-type]
    assert str(info.value) == (
        f"2 registered models have the model digest {digest} of {base} (0x{'01' * 32}, "
        f"0x{'02' * 32}): name the parent with --parent ID:RELATION"
    )


def test_a_card_that_is_not_yaml_or_too_large_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.md"
    bad.write_text("---\nbase_model: [unclosed\n---\n", encoding="utf-8")
    with pytest.raises(CertificateError, match=rf"^model card {bad} cannot be read: "):
        parents_from_card(bad, _Session(_Index()))  # type: ignore[arg-type]
    big = tmp_path / "big.md"
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    with pytest.raises(CertificateError) as info:
        parents_from_card(big, _Session(_Index()))  # type: ignore[arg-type]
    assert str(info.value) == f"model card {big} is over 1048576 bytes"


class _Entry:
    def __init__(self, registrant: str) -> None:
        self.registrant = registrant


class _DigestIndex:
    """Registrations of one model digest: id -> registrant (what registered_id reads)."""

    def __init__(self, registrants: dict[bytes, str]) -> None:
        self.registrants = registrants

    def by_model_digest(self, digest: bytes) -> list[bytes]:
        return list(self.registrants)

    def get(self, model_id: bytes) -> _Entry | None:
        found = self.registrants.get(model_id)
        return None if found is None else _Entry(found)


def test_a_base_folder_squatted_by_an_untrusted_registrant_is_not_taken_as_the_parent(
    tmp_path: Path,
) -> None:
    from provenance.export.hf_card import registered_id
    from provenance.manifest import manifest_of

    base = tmp_path / "base"
    base.mkdir()
    (base / "model.safetensors").write_bytes(b"weights")
    digest = manifest_of(base).root
    creator, squatter = "0x" + "c1" * 20, "0x" + "5a" * 20
    squat_id, real_id = b"\x01" * 32, b"\x02" * 32
    card = tmp_path / "README.md"
    squatted: Any = _DigestIndex({squat_id: squatter})
    # without trust roots, the one registration is taken (verify then checks its registrant)
    assert registered_id("base", card, squatted) == "0x" + squat_id.hex()
    with pytest.raises(CertificateError) as info:
        registered_id("base", card, squatted, frozenset({creator}))
    assert str(info.value) == (
        f"the model digest {digest} of {base} is registered only by {squatter}, not by a "
        "trusted registrant: name the parent with --parent ID:RELATION, or trust its registrant"
    )
    both: Any = _DigestIndex({squat_id: squatter, real_id: creator})
    assert registered_id("base", card, both, frozenset({creator.upper().replace("0X", "0x")})) == (
        "0x" + real_id.hex()
    )
    with pytest.raises(CertificateError, match="2 registered models have the model digest"):
        registered_id("base", card, both)
