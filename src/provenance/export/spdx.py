"""A certificate as an SPDX 3.0.1 document (JSON-LD) with the AI and Dataset profiles.

Built with ``spdx-python-model``, the SPDX project's generated bindings of the 3.0.1 model,
which check every value's type and enumeration as it is set and every required property as
the document is written. What maps to what:

- the model -> an ``ai_AIPackage`` (primary purpose ``model``): name, ``builtTime`` (training
  end, else the certificate's time), ``originatedBy`` the creator's address, ``verifiedUsing``
  the manifest root (algorithm ``other``: a Merkle root, not a file's sha-256), the model id
  and certificate CID as external identifiers, ``ai_typeOfModel`` (estimator or framework),
  ``ai_hyperparameter`` = training parameters and seeds, ``ai_metric`` = metrics,
  ``ai_modelDataPreprocessing`` = the preprocessing steps, ``ai_informationAboutTraining`` =
  command, entry point, start, end, environment, container image and source commit, the git
  remote and commit as a ``vcs`` external reference; each model file -> a ``software_File`` with its
  sha-256, which the package ``contains``;
- each dataset -> a ``dataset_DatasetPackage`` with its commitment as a hash (algorithm
  ``other``), its rows or size, and for a confidential one ``dataset_confidentialityLevel``
  ``red`` and a comment (only a salted commitment is published);
- dataset roles -> ``trainedOn`` (train) and ``testedOn`` (test, validation, evaluation),
  ``other`` with the role in the comment otherwise;
- each parent -> an ``ai_AIPackage`` named by its id, and a ``descendantOf`` relationship
  from the model to it, our relation (fine-tune, merge...) in the relationship's comment.

Values are JSON text where SPDX wants strings (``ai_hyperparameter`` values). The document is
deterministic: its times come from the certificate, its ids from the certificate's CID.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from provenance.errors import ConfigError

if TYPE_CHECKING:
    from spdx_python_model.bindings.v3_0_1 import model as spdx

    from provenance.certificate import Certificate, ParentLink
    from provenance.export.subject import Subject
    from provenance.manifest import DatasetRecord

SPEC_VERSION = "3.0.1"
TRAINED_ON_ROLES = frozenset({"train", "training", "fine-tune", "finetune", "pretrain"})
TESTED_ON_ROLES = frozenset(
    {"test", "testing", "validation", "valid", "val", "eval", "evaluation", "holdout"}
)


def _model() -> Any:
    try:
        from spdx_python_model.bindings.v3_0_1 import model
    except ImportError as exc:
        raise ConfigError(
            "the spdx format needs spdx-python-model: pip install 'provenance[export]'"
        ) from exc
    return model


def _time(text: str) -> datetime:
    """A certificate timestamp (``...Z``, up to nanoseconds) as an aware datetime (seconds:
    SPDX 3 times are ``YYYY-MM-DDThh:mm:ssZ``)."""
    return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1]


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


class _Builder:
    """Collects the elements of one document, all sharing one CreationInfo."""

    def __init__(self, m: Any, subject: Subject) -> None:
        from provenance import __version__

        self.m = m
        self.base = f"urn:provenance:spdx:{subject.cid}"
        self.elements: list[spdx.Element] = []
        tool = f"provenance {__version__}"
        self.creation = m.CreationInfo(
            specVersion=SPEC_VERSION,
            created=_time(subject.certificate.created_at),
            comment=(
                f"Rendered from the provenance birth certificate {subject.cid}; the time is "
                "the certificate's, so equal certificates give equal documents."
            ),
        )
        agent = m.SoftwareAgent(
            spdxId=f"{self.base}/agent/provenance", name=tool, creationInfo=self.creation
        )
        self.creation.createdBy = [agent]
        self.elements.append(agent)

    def add(self, element: Any) -> Any:
        element.creationInfo = self.creation
        self.elements.append(element)
        return element

    def relate(self, kind: str, source: Any, targets: list[Any], comment: str | None) -> None:
        number = sum(isinstance(e, self.m.Relationship) for e in self.elements) + 1
        relationship = self.m.Relationship(
            spdxId=f"{self.base}/relationship/{number}",
            from_=source,
            to=targets,
            relationshipType=self.m.RelationshipType.NAMED_INDIVIDUALS[kind],
        )
        if comment is not None:
            relationship.comment = comment
        if kind in ("trainedOn", "testedOn", "contains"):
            relationship.completeness = self.m.RelationshipCompleteness.complete
        self.add(relationship)


def _entries(m: Any, values: dict[str, Any], prefix: str = "") -> list[Any]:
    return [m.DictionaryEntry(key=prefix + k, value=_json(v)) for k, v in sorted(values.items())]


def _model_package(b: _Builder, subject: Subject) -> Any:
    m, cert = b.m, subject.certificate
    training, artifact = cert.training, cert.model
    package = m.ai_AIPackage(
        spdxId=f"{b.base}/model",
        name=cert.model_name,
        software_primaryPurpose=m.software_SoftwarePurpose.model,
        builtTime=_time(training.ended_at or cert.created_at),
        verifiedUsing=[
            m.Hash(
                algorithm=m.HashAlgorithm.other,
                hashValue=_hex(artifact.digest),
                comment=(
                    "provenance manifest root: the sha-256 Merkle root over the model files' "
                    "paths, sizes and sha-256 digests"
                ),
            )
        ],
        externalIdentifier=_identifiers(m, subject),
    )
    if artifact.url:
        package.software_downloadLocation = artifact.url
    source = cert.source
    if source is not None and source.remote and source.commit:
        package.externalRef = [
            m.ExternalRef(
                externalRefType=m.ExternalRefType.vcs,
                locator=[f"git+{source.remote}@{source.commit}"],
            )
        ]
    if cert.creator is not None:
        creator = b.add(
            m.Agent(spdxId=f"{b.base}/agent/{cert.creator}", name=f"Ethereum {cert.creator}")
        )
        package.originatedBy = [creator]
    kind = artifact.estimator.type if artifact.estimator else None
    if kind is None and artifact.framework is not None:
        kind = f"{artifact.framework.name} {artifact.framework.version}"
    if kind is not None:
        package.ai_typeOfModel = [kind]
    package.ai_hyperparameter = _entries(m, training.parameters) + _entries(
        m, training.seeds, "seed:"
    )
    package.ai_metric = _entries(m, training.metrics)
    package.ai_modelDataPreprocessing = [
        _json({"name": s.name, "source": s.source_digest, "arguments": s.arguments})
        for s in cert.preprocessing
    ]
    package.ai_informationAboutTraining = _training_text(cert)
    return b.add(package)


def _identifiers(m: Any, subject: Subject) -> list[Any]:
    where = "provenance ModelRegistry"
    if subject.registry is not None:
        where += f" {subject.registry}"
    if subject.chain_id is not None:
        where += f" on chain {subject.chain_id}"
    identifiers = [
        m.ExternalIdentifier(
            externalIdentifierType=m.ExternalIdentifierType.other,
            identifier=f"ipfs://{subject.cid}",
            comment="the provenance birth certificate (one raw IPFS block)",
        )
    ]
    if subject.model_id_hex is not None:
        identifiers.append(
            m.ExternalIdentifier(
                externalIdentifierType=m.ExternalIdentifierType.other,
                identifier=subject.model_id_hex,
                issuingAuthority=where,
                comment=f"verify: provenance verify {subject.model_id_hex}",
            )
        )
    return identifiers


def _training_text(cert: Certificate) -> str:
    training = cert.training
    lines = []
    if training.command:
        lines.append("command: " + " ".join(training.command))
    if training.entry_point is not None:
        lines.append(f"entry point: {training.entry_point.path} {training.entry_point.digest}")
    if training.started_at:
        lines.append(f"started: {training.started_at}")
    if training.ended_at:
        lines.append(f"ended: {training.ended_at}")
    if training.exit_code is not None:
        lines.append(f"exit code: {training.exit_code}")
    lines.append(f"training data commitment: {cert.data.commitment}")
    env = cert.environment
    if env is not None:
        lines.append(f"environment: {env.os}, {env.python.implementation} {env.python.version}")
        if env.container is not None and env.container.image_id:
            lines.append(f"container image: {env.container.image_id}")
    source = cert.source
    if source is not None and source.commit:
        lines.append(f"source: {source.commit}{' (dirty)' if source.dirty else ''}")
    return "\n".join(lines)


def _files(b: _Builder, package: Any, subject: Subject) -> None:
    m = b.m
    files = []
    for entry in subject.certificate.model.manifest.files:
        if entry.shard_size is None:
            algorithm = getattr(m.HashAlgorithm, entry.algorithm)  # sha256, or blake3
            digest = m.Hash(algorithm=algorithm, hashValue=_hex(entry.digest))
        else:
            digest = m.Hash(
                algorithm=m.HashAlgorithm.other,
                hashValue=_hex(entry.digest),
                comment=f"sha-256 of the sha-256 digests of its {entry.shard_size}-byte shards",
            )
        files.append(
            b.add(
                m.software_File(
                    spdxId=f"{b.base}/model/file/{_slug(entry.path)}",
                    name=entry.path,
                    software_primaryPurpose=m.software_SoftwarePurpose.model,
                    verifiedUsing=[digest],
                    comment=f"{entry.size} bytes",
                )
            )
        )
    if files:
        b.relate("contains", package, files, None)


def _dataset(b: _Builder, number: int, record: DatasetRecord) -> Any:
    m = b.m
    from provenance.manifest import FileManifest, TableManifest

    dataset = m.dataset_DatasetPackage(
        spdxId=f"{b.base}/dataset/{number}",
        name=record.name,
        software_primaryPurpose=m.software_SoftwarePurpose.data,
        dataset_datasetType=[m.dataset_DatasetType.noAssertion],
        verifiedUsing=[
            m.Hash(
                algorithm=m.HashAlgorithm.other,
                hashValue=_hex(record.commitment),
                comment=(
                    "provenance dataset commitment: HMAC-SHA-256(salt, manifest digest); the "
                    "salt stays with the owner"
                    if record.confidential
                    else "provenance dataset commitment: the digest of its manifest (a "
                    "Merkle root over typed rows, or over files)"
                ),
            )
        ],
    )
    if record.confidential:
        dataset.dataset_confidentialityLevel = m.dataset_ConfidentialityLevelType.red
        dataset.comment = "confidential: only a salted commitment is published"
    manifest = record.manifest
    if isinstance(manifest, TableManifest):
        dataset.dataset_datasetType = [m.dataset_DatasetType.structured]
        dataset.comment = f"{manifest.rows} rows, {len(manifest.columns)} columns"
    elif isinstance(manifest, FileManifest):
        dataset.dataset_datasetSize = sum(f.size for f in manifest.files)
    if record.subset is not None:
        dataset.dataset_dataPreprocessing = [
            "subset of a larger source: " + _json(record.subset.model_dump(mode="json"))
        ]
    if record.url:
        dataset.software_downloadLocation = record.url
        dataset.dataset_datasetAvailability = m.dataset_DatasetAvailabilityType.directDownload
    return b.add(dataset)


def _parent(b: _Builder, parent: ParentLink) -> Any:
    return b.add(
        b.m.ai_AIPackage(
            spdxId=f"urn:provenance:model:{parent.id}",
            name=parent.name or parent.id,
            software_primaryPurpose=b.m.software_SoftwarePurpose.model,
            externalIdentifier=[
                b.m.ExternalIdentifier(
                    externalIdentifierType=b.m.ExternalIdentifierType.other,
                    identifier=parent.id,
                    issuingAuthority="provenance ModelRegistry",
                )
            ],
        )
    )


def document(subject: Subject) -> Any:
    """The SPDX objects (a ``SHACLObjectSet`` of ``spdx-python-model``) for ``subject``."""
    m = _model()
    b = _Builder(m, subject)
    cert = subject.certificate
    package = _model_package(b, subject)
    _files(b, package, subject)
    roles: dict[str, list[Any]] = {}
    for number, record in enumerate(cert.data.datasets, 1):
        roles.setdefault(record.role, []).append(_dataset(b, number, record))
    for role, datasets in sorted(roles.items()):
        if role in TRAINED_ON_ROLES:
            b.relate("trainedOn", package, datasets, f"role: {role}")
        elif role in TESTED_ON_ROLES:
            b.relate("testedOn", package, datasets, f"role: {role}")
        else:
            b.relate("other", package, datasets, f"role: {role} (neither training nor test)")
    for parent in cert.parents:
        b.relate("descendantOf", package, [_parent(b, parent)], f"relation: {parent.relation}")
    doc = m.SpdxDocument(
        spdxId=b.base,
        name=f"{cert.model_name}: provenance birth certificate",
        creationInfo=b.creation,
        rootElement=[package],
        element=list(b.elements),
        profileConformance=[
            m.ProfileIdentifierType.core,
            m.ProfileIdentifierType.software,
            m.ProfileIdentifierType.ai,
            m.ProfileIdentifierType.dataset,
        ],
    )
    return m.SHACLObjectSet([doc, *b.elements])


def export(subject: Subject, **_options: object) -> bytes:
    """``subject`` as SPDX 3.0.1 JSON-LD bytes (indented, ends with a newline)."""
    m = _model()
    objects = document(subject)
    buffer = io.BytesIO()
    try:
        m.JSONLDSerializer().write(objects, buffer, indent=2)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot write the SPDX document: {exc}") from exc
    return buffer.getvalue() + b"\n"


__all__ = ["SPEC_VERSION", "document", "export"]
