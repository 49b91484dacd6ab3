"""Hugging Face model cards, both ways.

Out: :func:`export` writes a ``README.md`` whose YAML front matter (``huggingface_hub``'s
``ModelCardData``) carries ``base_model``, ``base_model_relation``, ``datasets``, ``license``
and ``tags``, plus a ``provenance`` key with the certificate's identifiers, and whose markdown
has a "Provenance" section naming the model id, the certificate CID, the chain and registry,
and the ``provenance verify`` command. It loads back through ``huggingface_hub.ModelCard``
with equal data.

In: :func:`parents_from_card` reads a card whose ``base_model`` names a local folder (relative
to the card), hashes the folder as a model (:func:`provenance.manifest.manifest_of`), finds the
one registered model with that digest in the family-tree index, and returns it as a typed
parent for ``track(parents=...)`` or ``provenance run --parent-from-card README.md``::

    with provenance.connect() as session:
        parents = parents_from_card(Path("README.md"), session)
        with provenance.track("Model Beta", session=session, parents=parents) as run:
            ...

Relations (ours -> the card's ``base_model_relation``): fine-tune and transfer -> ``finetune``,
quantization -> ``quantized``, merge -> ``merge``; online-update, distillation, checkpoint and
other have no equivalent, so the card names the parent in ``base_model`` without a relation
(the exact relation stays in the ``provenance`` key). Back: ``finetune`` and ``adapter`` ->
fine-tune, ``quantized`` -> quantization, ``merge`` -> merge; no relation: fine-tune for one
base model, merge for several (the Hub's own reading).

A parent's ``base_model`` entry is its name when the name is a namespaced Hugging Face repo id
(``org/name``: the form :func:`parents_from_card` records for a folder named like one), else its
model id (``0x`` + 64 hex digits), which :func:`parents_from_card` also reads back.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id  # type: ignore[attr-defined]

from provenance.certificate import Certificate, ParentLink
from provenance.errors import CertificateError, ConfigError
from provenance.hashing import parse_digest
from provenance.manifest import manifest_of
from provenance.registration import Relation

if TYPE_CHECKING:
    from provenance.chain.index import LineageIndex
    from provenance.chain.registry import Registry
    from provenance.export.subject import Subject
    from provenance.verify.policy import Policy

TO_HF: dict[Relation, str | None] = {
    Relation.FINE_TUNE: "finetune",
    Relation.TRANSFER: "finetune",
    Relation.QUANTIZATION: "quantized",
    Relation.MERGE: "merge",
    Relation.ONLINE_UPDATE: None,
    Relation.DISTILLATION: None,
    Relation.CHECKPOINT: None,
    Relation.OTHER: None,
}
"""Our relation -> the card's ``base_model_relation`` (None: the Hub has no equivalent)."""

FROM_HF: dict[str, Relation] = {
    "finetune": Relation.FINE_TUNE,
    "adapter": Relation.FINE_TUNE,
    "quantized": Relation.QUANTIZATION,
    "merge": Relation.MERGE,
}
"""The card's ``base_model_relation`` -> our relation (an adapter is a fine-tune of its base)."""

TAGS = ("provenance", "birth-certificate")
MAX_CARD_BYTES = 1024 * 1024
"""A card file is refused above this size before it is parsed."""

_MODEL_ID = re.compile(r"0x[0-9a-f]{64}")
_HF_DATASET = "hf://datasets/"
_LIBRARIES = {"scikit-learn": "sklearn"}


# -- out ----------------------------------------------------------------------------------------


def hf_relation(relations: Iterable[Relation]) -> str | None:
    """The card's one ``base_model_relation`` for parents with these relations: their common
    Hub relation, or None when one has no equivalent or they differ."""
    mapped = {TO_HF[r] for r in relations}
    if len(mapped) != 1:
        return None
    return mapped.pop()


def is_hf_repo_id(text: str) -> bool:
    """True for a namespaced Hugging Face repo id (``org/name``)."""
    if text.count("/") != 1:
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def base_model_of(parent: ParentLink) -> str:
    """A parent as a ``base_model`` entry: its name when that is a repo id, else its id."""
    if parent.name is not None and is_hf_repo_id(parent.name):
        return parent.name
    return parent.id


def card_data(subject: Subject, *, license: str | None = None) -> ModelCardData:
    """The card's front matter for ``subject``."""
    body = subject.certificate
    fields: dict[str, Any] = {}
    if body.parents:
        bases = [base_model_of(p) for p in body.parents]
        fields["base_model"] = bases[0] if len(bases) == 1 else bases
        relation = hf_relation(Relation.parse(p.relation) for p in body.parents)
        if relation is not None:
            fields["base_model_relation"] = relation
    datasets = _dataset_ids(body)
    if datasets:
        fields["datasets"] = datasets
    known_license = license or _payload_license(body)
    if known_license:
        fields["license"] = known_license
    if body.model.framework is not None:
        name = body.model.framework.name
        fields["library_name"] = _LIBRARIES.get(name, name)
    fields["tags"] = list(TAGS)
    fields["provenance"] = _provenance_metadata(subject)
    return ModelCardData(**fields)


def card(subject: Subject, *, license: str | None = None) -> ModelCard:
    """The model card of ``subject``: front matter and markdown."""
    data = card_data(subject, license=license)
    text = f"---\n{data.to_yaml()}\n---\n\n{_markdown(subject)}"
    return ModelCard(text)


def export(subject: Subject, *, license: str | None = None, **options: object) -> bytes:
    """The card as ``README.md`` bytes (UTF-8). ``license``: an SPDX id or the Hub's license
    name, when the certificate's payload names none."""
    return str(card(subject, license=license)).encode()


def _dataset_ids(body: Certificate) -> list[str]:
    ids: list[str] = []
    for dataset in body.data.datasets:
        if dataset.role != "train":
            continue
        url = dataset.url or ""
        name = url[len(_HF_DATASET) :] if url.startswith(_HF_DATASET) else dataset.name
        if name not in ids:
            ids.append(name)
    return ids


def _payload_license(body: Certificate) -> str | None:
    payload = body.payload
    if isinstance(payload, dict) and isinstance(payload.get("license"), str):
        return str(payload["license"])
    return None


def _provenance_metadata(subject: Subject) -> dict[str, Any]:
    body = subject.certificate
    meta: dict[str, Any] = {}
    if subject.model_id_hex is not None:
        meta["model_id"] = subject.model_id_hex
    meta["certificate_cid"] = subject.cid
    meta["certificate_digest"] = body.digest_text
    meta["model_digest"] = body.model.digest
    meta["data_commitment"] = body.data.commitment
    if subject.chain_id is not None:
        meta["chain_id"] = subject.chain_id
    if subject.registry is not None:
        meta["registry"] = subject.registry
    if body.creator is not None:
        meta["creator"] = body.creator
    if body.parents:
        meta["parents"] = [
            {"id": p.id, "relation": p.relation, **({"name": p.name} if p.name else {})}
            for p in body.parents
        ]
    return meta


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


def _text(value: str) -> str:
    """Text from a certificate, safe inside a markdown line: one line, no markup, no HTML."""
    line = " ".join(value.split())
    line = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in line)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", line)


def _markdown(subject: Subject) -> str:
    body = subject.certificate
    lines = [f"# {_text(body.model_name)}", "", "## Provenance", ""]
    lines += [
        "This model has a birth certificate: how it was trained (data commitments, steps, "
        "parameters, environment, parent models) recorded, signed and anchored on chain by "
        "provenance.",
        "",
        "| | |",
        "| --- | --- |",
    ]
    if subject.model_id_hex is not None:
        lines.append(f"| model id | `{subject.model_id_hex}` |")
    lines.append(f"| certificate | `ipfs://{subject.cid}` (`{body.digest_text}`) |")
    if subject.registry is not None or subject.chain_id is not None:
        lines.append(
            f"| registered in | ModelRegistry `{subject.registry or 'unknown'}` on chain "
            f"{subject.chain_id if subject.chain_id is not None else 'unknown'} |"
        )
    if body.creator is not None:
        lines.append(f"| creator | `{body.creator}` |")
    files = len(body.model.manifest.files)
    lines.append(f"| model digest | `{body.model.digest}` ({files} file{'s' * (files != 1)}) |")
    lines.append(f"| training data | `{body.data.commitment}` |")
    if body.parents:
        lines += ["", "### Parents", ""]
        for p in body.parents:
            name = f" ({_text(p.name)})" if p.name else ""
            lines.append(f"- {p.relation} of `{p.id}`{name}")
    if body.data.datasets:
        lines += ["", "### Data", ""]
        for d in body.data.datasets:
            lines.append(f"- {_text(d.name)} ({_text(d.role)}): `{d.commitment}`")
    lines += ["", "### How to verify", "", *_verify_instructions(subject), ""]
    return "\n".join(lines)


def _verify_instructions(subject: Subject) -> list[str]:
    if subject.model_id_hex is None:
        return [
            "The certificate is not registered yet; check its content against the model files:",
            "",
            "```console",
            "$ provenance certificate verify certificate.json",
            "```",
        ]
    env = []
    if subject.chain_id is not None:
        env.append(f"PROVENANCE_CHAIN_ID={subject.chain_id}")
    if subject.registry is not None:
        env.append(f"PROVENANCE_REGISTRY={subject.registry}")
    prefix = " ".join(env) + " " if env else ""
    trust = f" --trust {subject.certificate.creator}" if subject.certificate.creator else ""
    files = subject.certificate.model.manifest.files
    lines = [
        "With an RPC endpoint of that chain (`PROVENANCE_RPC_URL`) and an IPFS gateway "
        "(`PROVENANCE_IPFS_GATEWAY`): the registration, certificate, signature, data and "
        "ancestors, then the model files at hand against the registered model digest:",
        "",
        "```console",
        f"$ {prefix}provenance verify {subject.model_id_hex}{trust}",
    ]
    if len(files) == 1:
        lines.append(f"$ {prefix}provenance verify {shlex.quote(files[0].path)}")
    else:
        lines.append(f"$ {prefix}provenance verify FOLDER   # holding exactly the model's files")
    return [*lines, "```"]


# -- in -----------------------------------------------------------------------------------------


class _Clients(Protocol):
    """What :func:`parents_from_card` needs of a :class:`~provenance.session.Session`."""

    @property
    def index(self) -> LineageIndex: ...

    @property
    def registry(self) -> Registry: ...

    @property
    def policy(self) -> Policy: ...


def load_card(path: Path) -> ModelCard:
    """A model card file, bounded and parsed by ``huggingface_hub`` (CertificateError when it
    is not one)."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CARD_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read model card {path}: {exc.strerror}") from exc
    if len(raw) > MAX_CARD_BYTES:
        raise CertificateError(f"model card {path} is over {MAX_CARD_BYTES} bytes")
    try:
        return ModelCard(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())
        raise CertificateError(f"model card {path} cannot be read: {reason}") from exc


def _metadata(card: ModelCard) -> dict[str, Any]:
    data: dict[str, Any] = card.data.to_dict()  # type: ignore[no-untyped-call]
    return data


def card_bases(card: ModelCard, path: Path) -> tuple[list[str], Relation | None]:
    """The card's ``base_model`` entries and its relation (None: not given)."""
    value = _metadata(card).get("base_model")
    if value is None:
        raise CertificateError(f"model card {path} names no base_model")
    bases = [value] if isinstance(value, str) else value
    if not isinstance(bases, list) or not bases or not all(isinstance(b, str) for b in bases):
        raise CertificateError(f"model card {path}: base_model must be a name or a list of names")
    relation = _metadata(card).get("base_model_relation")
    if relation is None:
        return bases, None
    if not isinstance(relation, str) or relation not in FROM_HF:
        raise CertificateError(
            f"model card {path}: base_model_relation {relation!r} is not one of "
            f"{', '.join(FROM_HF)}"
        )
    return bases, FROM_HF[relation]


def parents_from_card(
    path: Path, session: _Clients, *, relation: str | Relation | None = None
) -> tuple[ParentLink, ...]:
    """The typed parents a model card names: each ``base_model`` is a local folder (relative
    to the card; a namespaced repo id once downloaded beside the card as ``org/name``) whose
    model digest exactly one registered model has, or a registered model id. ``relation``
    overrides the card's (mapped as in the module docstring)."""
    card = load_card(path)
    bases, card_relation = card_bases(card, path)
    if relation is not None:
        chosen = Relation.parse(relation)
    elif card_relation is not None:
        chosen = card_relation
    else:
        chosen = Relation.FINE_TUNE if len(bases) == 1 else Relation.MERGE
    index = session.index
    index.sync(session.registry)
    recorded = _recorded_relations(card)
    parents: list[ParentLink] = []
    for base in bases:
        parent_id = registered_id(base, path, index, session.policy.registrants)
        kind = recorded.get(parent_id, chosen) if relation is None else chosen
        name = base if is_hf_repo_id(base) else None
        if any(p.id == parent_id for p in parents):
            raise CertificateError(f"model card {path} names model {parent_id} twice")
        parents.append(ParentLink(id=parent_id, relation=kind.label, name=name))
    return tuple(parents)


def _recorded_relations(card: ModelCard) -> dict[str, Relation]:
    """The exact relations of a card this module wrote (its ``provenance.parents``)."""
    meta = _metadata(card).get("provenance")
    found: dict[str, Relation] = {}
    if not isinstance(meta, dict) or not isinstance(meta.get("parents"), list):
        return found
    for entry in meta["parents"]:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            label = entry.get("relation")
            if isinstance(label, str) and label in Relation.labels():
                found[entry["id"]] = Relation.parse(label)
    return found


def registered_id(
    base: str, card_path: Path, index: LineageIndex, trusted: Collection[str] | None = None
) -> str:
    """The registered model a base names: a model id, or a folder (relative to ``card_path``)
    whose model digest a registered model has. With ``trusted`` registrants (the verifier's
    ``[trust] registrants``), only their registrations count: anyone can register a base's
    digest first (a squat), so a digest registered only by others is refused, not taken."""
    if _MODEL_ID.fullmatch(base):
        if index.get(bytes.fromhex(base[2:])) is None:
            raise CertificateError(f"base_model {base} is not a registered model")
        return base
    folder = Path(base) if Path(base).is_absolute() else card_path.parent / base
    if not folder.is_dir():
        raise CertificateError(
            f"base_model {base!r} is not a folder beside {card_path} (nor a model id): download "
            "the base model there and point base_model at it"
        )
    digest = manifest_of(folder).root
    ids = index.by_model_digest(parse_digest(digest, "model digest"))
    if not ids:
        raise CertificateError(
            f"no registered model has the model digest {digest} of base_model folder {folder}"
        )
    if trusted:
        allowed = {a.lower() for a in trusted}
        by_trusted = [
            i
            for i in ids
            if (e := index.get(i)) is not None and (e.registrant or "").lower() in allowed
        ]
        if not by_trusted:
            others = sorted({str(e.registrant) for i in ids if (e := index.get(i)) is not None})
            raise CertificateError(
                f"the model digest {digest} of {folder} is registered only by "
                f"{', '.join(others)}, not by a trusted registrant: name the parent with "
                "--parent ID:RELATION, or trust its registrant"
            )
        ids = by_trusted
    if len(ids) > 1:
        listed = ", ".join("0x" + i.hex() for i in ids)
        raise CertificateError(
            f"{len(ids)} registered models have the model digest {digest} of {folder} "
            f"({listed}): name the parent with --parent ID:RELATION"
        )
    return "0x" + ids[0].hex()


__all__ = [
    "FROM_HF",
    "TAGS",
    "TO_HF",
    "base_model_of",
    "card",
    "card_bases",
    "card_data",
    "export",
    "hf_relation",
    "is_hf_repo_id",
    "load_card",
    "parents_from_card",
    "registered_id",
]
