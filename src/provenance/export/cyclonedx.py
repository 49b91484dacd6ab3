"""A certificate as a CycloneDX 1.7 ML-BOM (JSON).

What maps to what:

- the model -> ``metadata.component`` of type ``machine-learning-model``: its files as nested
  ``file`` components with their SHA-256 (the model's own hash when it is one file), the
  ``modelCard`` (architecture from the captured estimator, the datasets by reference, metrics
  as ``quantitativeAnalysis``), ``provenance:`` properties (model id, certificate CID and
  digest, model digest = the Merkle root of the files, data commitment, chain id, registry,
  creator) and the certificate as an ``attestation`` external reference (``ipfs://CID``);
- parents -> ``pedigree.ancestors``: ``machine-learning-model`` components named by their
  on-chain id, the relation in ``provenance:relation`` and in the pedigree's notes;
- datasets -> top-level ``data`` components with their inline ``data`` (type ``dataset``,
  ``classification`` ``confidential`` or ``public``) and the commitment, role, rows, columns
  and subset in ``provenance:`` properties; a file dataset's files as nested ``file``
  components with their SHA-256; the model ``dependsOn`` its datasets;
- preprocessing steps and the training run -> ``formulation``: one workflow whose tasks are
  the steps (source digest, arguments as parameters, inputs and outputs as transient ``data``
  components named by digest) and the training (command, hyper-parameters and seeds, the
  datasets, the entry point and base image by digest, the model as its artifact, metrics),
  the environment's distributions as transient ``library`` components (``pkg:pypi`` purls).

cyclonedx-python-lib (11.x) models components, hashes, pedigree, properties, external
references and dependencies, and those are built with its classes; it does not model
``modelCard``, component ``data`` or ``formulation`` yet, so those three are added to its
JSON output as plain values of the 1.7 schema (the tests validate the whole document with the
library's strict JSON validator).

Lost: the creator's EIP-712 signature is a property, not a CycloneDX (JSF) signature; the
estimator's parameters beyond its class; opaque values' reprs (their digests stay); the
certificate's own structure (environment, git state, attachments become properties); and
commitments as verifiable hashes: CycloneDX hashes are of bytes, while a model digest, a table's
row root or a confidential dataset's salted commitment are not, so they are ``provenance:``
properties and only real file SHA-256s are ``hashes``.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType, Pedigree
from cyclonedx.output.json import JsonV1Dot7
from packageurl import PackageURL

from provenance.certificate import Certificate, Step, ValueRef
from provenance.manifest import DatasetRecord, FileEntry, FileManifest
from provenance.manifest.tables import TableManifest

if TYPE_CHECKING:
    from provenance.export.subject import Subject

SPEC_VERSION = "1.7"
NAMESPACE = "provenance:"
BUILD_TYPE = "urn:provenance:training:v1"


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1]


def _prop(name: str, value: object) -> Property:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return Property(name=NAMESPACE + name, value=text)


def _props(pairs: Iterable[tuple[str, object]]) -> list[Property]:
    return [_prop(name, value) for name, value in pairs if value is not None]


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _sha256(digest: str) -> HashType:
    return HashType(alg=HashAlgorithm.SHA_256, content=_hex(digest))


def _file_hash(entry: FileEntry) -> HashType:
    """A plain file digest, under the algorithm its manifest names (SHA-256 or BLAKE3)."""
    alg = HashAlgorithm.BLAKE3 if entry.algorithm == "blake3" else HashAlgorithm.SHA_256
    return HashType(alg=alg, content=_hex(entry.digest))


def _file_components(manifest: FileManifest, prefix: str) -> list[Component]:
    """Each file with its SHA-256 (a sharded file's digest is not one, so it is a property)."""
    return [
        Component(
            type=ComponentType.FILE,
            name=entry.path,
            bom_ref=f"{prefix}/{entry.path}",
            hashes=[_file_hash(entry)] if entry.shard_size is None else [],
            properties=_props(
                [("size", str(entry.size))]
                + (
                    [("shard-list-digest", entry.digest), ("shard-size", str(entry.shard_size))]
                    if entry.shard_size is not None
                    else []
                )
            ),
        )
        for entry in manifest.files
    ]


class _Builder:
    """One export: the BOM's parts, and the JSON parts the library does not model."""

    def __init__(self, subject: Subject) -> None:
        self.subject = subject
        self.cert: Certificate = subject.certificate
        self.model_ref = (
            f"model:{subject.model_id_hex}"
            if subject.model_id_hex
            else f"model:{self.cert.model.digest}"
        )
        self.dataset_refs: list[str] = [
            f"dataset:{i}:{d.commitment}" for i, d in enumerate(self.cert.data.datasets)
        ]
        self.transient: dict[str, Component] = {}  # formulation's components by bom-ref

    # -- the library's part ---------------------------------------------------------------

    def bom(self) -> Bom:
        cert = self.cert
        created = dt.datetime.fromisoformat(cert.created_at.replace("Z", "+00:00"))
        model = self.model_component()
        datasets = [
            self.dataset_component(d, r)
            for d, r in zip(cert.data.datasets, self.dataset_refs, strict=True)
        ]
        bom = Bom(
            serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"ipfs://{self.subject.cid}"),
            metadata=BomMetaData(component=model, timestamp=created),
            components=datasets,
        )
        bom.metadata.tools.components.add(
            Component(type=ComponentType.APPLICATION, name="provenance", version=_version())
        )
        if datasets:
            bom.register_dependency(model, datasets)
        return bom

    def model_component(self) -> Component:
        cert, subject = self.cert, self.subject
        manifest = cert.model.manifest
        single = manifest.files[0] if len(manifest.files) == 1 else None
        refs = [
            ExternalReference(
                type=ExternalReferenceType.ATTESTATION,
                url=XsUri(f"ipfs://{subject.cid}"),
                comment="the model's birth certificate (provenance, schema v1)",
                hashes=[_sha256(cert.digest_text)],
            )
        ]
        if cert.model.url:
            refs.append(
                ExternalReference(
                    type=ExternalReferenceType.DISTRIBUTION, url=XsUri(cert.model.url)
                )
            )
        if cert.source is not None and cert.source.remote:
            refs.append(
                ExternalReference(
                    type=ExternalReferenceType.VCS,
                    url=XsUri(cert.source.remote),
                    comment=f"commit {cert.source.commit}" if cert.source.commit else None,
                )
            )
        framework = cert.model.framework
        signature = subject.envelope.signature if subject.envelope is not None else None
        properties = _props(
            [
                ("model-id", subject.model_id_hex),
                ("certificate-cid", subject.cid),
                ("certificate-digest", cert.digest_text),
                ("model-digest", cert.model.digest),
                ("data-commitment", cert.data.commitment),
                ("training-data-url", cert.data.url),
                ("chain-id", None if subject.chain_id is None else str(subject.chain_id)),
                ("registry", subject.registry),
                ("creator", cert.creator),
                ("creator-signature", signature),
                ("created-at", cert.created_at),
                ("model-format", cert.model.format),
                ("framework", f"{framework.name} {framework.version}" if framework else None),
                ("source-commit", cert.source.commit if cert.source else None),
                ("source-dirty", _text(cert.source.dirty) if cert.source else None),
                ("source-diff-digest", cert.source.diff_digest if cert.source else None),
            ]
        )
        properties += [_prop("warning", w) for w in cert.warnings]
        properties += [_prop(f"attachment:{a.name}", a.digest) for a in cert.attachments]
        return Component(
            type=ComponentType.MACHINE_LEARNING_MODEL,
            name=cert.model_name,
            bom_ref=self.model_ref,
            hashes=[_file_hash(single)] if single and single.shard_size is None else [],
            components=_file_components(manifest, self.model_ref),
            pedigree=self.pedigree(),
            external_references=refs,
            properties=properties,
        )

    def pedigree(self) -> Pedigree | None:
        if not self.cert.parents:
            return None
        ancestors = [
            Component(
                type=ComponentType.MACHINE_LEARNING_MODEL,
                name=parent.name or parent.id,
                bom_ref=f"model:{parent.id}",
                properties=_props([("model-id", parent.id), ("relation", parent.relation)]),
            )
            for parent in self.cert.parents
        ]
        notes = "; ".join(
            f"{p.relation} of {p.name} (model id {p.id})"
            if p.name
            else f"{p.relation} of model id {p.id}"
            for p in self.cert.parents
        )
        return Pedigree(ancestors=ancestors, notes=f"{self.cert.model_name}: {notes}")

    def dataset_component(self, record: DatasetRecord, ref: str) -> Component:
        manifest = record.manifest
        pairs: list[tuple[str, object]] = [
            ("commitment", record.commitment),
            ("role", record.role),
            ("confidential", _text(record.confidential)),
        ]
        nested: list[Component] = []
        if isinstance(manifest, TableManifest):
            pairs += [
                ("table-format", manifest.format),
                ("rows", str(manifest.rows)),
                ("columns", [c.name for c in manifest.columns]),
                ("rows-root", manifest.root),
            ]
        elif isinstance(manifest, FileManifest):
            pairs += [("files-root", manifest.root)]
            nested = _file_components(manifest, ref)
        if record.subset is not None:
            pairs += [
                ("subset-of", record.subset.source.digest),
                ("subset-of-rows", str(record.subset.source.rows)),
                ("selection", record.subset.selection.model_dump(mode="json")),
            ]
        refs = (
            [ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(record.url))]
            if record.url
            else []
        )
        return Component(
            type=ComponentType.DATA,
            name=record.name,
            bom_ref=ref,
            components=nested,
            external_references=refs,
            properties=_props(pairs),
        )

    # -- what the library does not model: modelCard, component data, formulation ----------

    def model_card(self) -> dict[str, Any]:
        cert = self.cert
        parameters: dict[str, Any] = {}
        if cert.model.estimator is not None:
            parameters["modelArchitecture"] = cert.model.estimator.type
        if self.dataset_refs:
            parameters["datasets"] = [{"ref": r} for r in self.dataset_refs]
        card: dict[str, Any] = {"bom-ref": f"{self.model_ref}/model-card"}
        if parameters:
            card["modelParameters"] = parameters
        metrics = [
            {"type": name, "value": _text(value)}
            for name, value in sorted(cert.training.metrics.items())
        ]
        if metrics:
            card["quantitativeAnalysis"] = {"performanceMetrics": metrics}
        return card

    @staticmethod
    def component_data(record: DatasetRecord) -> list[dict[str, Any]]:
        data: dict[str, Any] = {
            "type": "dataset",
            "name": record.name,
            "classification": "confidential" if record.confidential else "public",
            "contents": {
                "properties": [
                    {"name": NAMESPACE + "commitment", "value": record.commitment},
                ]
            },
        }
        if record.url:
            data["contents"]["url"] = record.url
        return [data]

    def value(self, ref: ValueRef) -> dict[str, Any]:
        """A step's digested input or output as a resource reference to a transient component
        named by its digest (one component per digest: an output feeding the next step is one
        resource)."""
        assert ref.digest is not None
        bom_ref = f"value:{ref.digest}"
        if bom_ref not in self.transient:
            self.transient[bom_ref] = Component(
                type=ComponentType.DATA,
                name=ref.name,
                bom_ref=bom_ref,
                properties=_props(
                    [
                        ("digest", ref.digest),
                        ("kind", ref.kind),
                        ("type", ref.type),
                        ("shape", list(ref.shape) if ref.shape is not None else None),
                        ("dtype", ref.dtype),
                        ("rows", None if ref.rows is None else str(ref.rows)),
                    ]
                ),
            )
        return {"resource": {"ref": bom_ref}, "properties": [_raw("name", ref.name)]}

    def transient_component(self, bom_ref: str, component: Component) -> str:
        self.transient.setdefault(bom_ref, component)
        return bom_ref

    def step_task(self, index: int, step: Step) -> dict[str, Any]:
        started = dt.datetime.fromisoformat(step.started_at.replace("Z", "+00:00"))
        ended = started + dt.timedelta(seconds=step.duration_s)
        task: dict[str, Any] = {
            "bom-ref": f"task:step:{index}",
            "uid": f"step-{index}",
            "name": step.name,
            "description": "a captured preprocessing step",
            "taskTypes": ["other"],
            "timeStart": step.started_at,
            "timeEnd": ended.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        inputs = [self.value(v) for v in step.inputs if v.digest is not None]
        parameters = [
            {"name": name, "value": _text(value)} for name, value in sorted(step.arguments.items())
        ] + [
            {"name": name, "value": opaque.digest or opaque.repr, "dataType": opaque.type}
            for name, opaque in sorted(step.opaque_arguments.items())
        ]
        if parameters:
            inputs.append({"parameters": parameters})
        outputs = [
            {"type": "artifact", **self.value(v)} for v in step.outputs if v.digest is not None
        ]
        if inputs:
            task["inputs"] = inputs
        if outputs:
            task["outputs"] = outputs
        properties = [_raw("source-digest", step.source_digest)] if step.source_digest else []
        properties += [
            _raw("value-without-digest", v.name)
            for v in (*step.inputs, *step.outputs)
            if v.digest is None
        ]
        properties += [
            _raw(f"library:{name}", version) for name, version in sorted(step.libraries.items())
        ]
        if properties:
            task["properties"] = properties
        return task

    def training_task(self) -> dict[str, Any]:
        cert = self.cert
        training = cert.training
        task: dict[str, Any] = {
            "bom-ref": "task:training",
            "uid": "training",
            "name": "training",
            "description": f"the training run that produced {cert.model_name} ({BUILD_TYPE})",
            "taskTypes": ["build"],
        }
        if training.started_at:
            task["timeStart"] = training.started_at
        if training.ended_at:
            task["timeEnd"] = training.ended_at
        inputs: list[dict[str, Any]] = [{"resource": {"ref": r}} for r in self.dataset_refs]
        entry = training.entry_point
        if entry is not None and entry.digest is not None:
            ref = self.transient_component(
                f"code:{entry.digest}",
                Component(
                    type=ComponentType.FILE,
                    name=entry.path,
                    bom_ref=f"code:{entry.digest}",
                    hashes=[_sha256(entry.digest)],
                ),
            )
            inputs.append({"resource": {"ref": ref}})
        container = cert.environment.container if cert.environment else None
        if container is not None and container.image_id:
            image = container.image_id
            ref = self.transient_component(
                f"image:{image}",
                Component(
                    type=ComponentType.CONTAINER,
                    name="training image",
                    bom_ref=f"image:{image}",
                    hashes=[_sha256(image)] if image.startswith("sha256:") else [],
                    properties=_props([("image-id", image)]),
                ),
            )
            inputs.append({"resource": {"ref": ref}})
        parameters = [
            {"name": name, "value": _text(value)}
            for name, value in sorted(training.parameters.items())
        ]
        parameters += [
            {"name": name, "value": opaque.digest or opaque.repr, "dataType": opaque.type}
            for name, opaque in sorted(training.opaque_parameters.items())
        ]
        parameters += [
            {"name": f"seed:{name}", "value": _text(value)}
            for name, value in sorted(training.seeds.items())
        ]
        if parameters:
            inputs.append({"parameters": parameters})
        if inputs:
            task["inputs"] = inputs
        outputs: list[dict[str, Any]] = [{"type": "artifact", "resource": {"ref": self.model_ref}}]
        if training.metrics:
            outputs.append(
                {
                    "type": "metrics",
                    "data": {
                        "contentType": "application/json",
                        "content": json.dumps(training.metrics, sort_keys=True),
                    },
                }
            )
        task["outputs"] = outputs
        if training.command:
            task["steps"] = [
                {"name": "command", "commands": [{"executed": " ".join(training.command)}]}
            ]
        properties: list[dict[str, str]] = []
        if entry is not None:
            properties.append(_raw("entry-point", entry.path))
        if training.exit_code is not None:
            properties.append(_raw("exit-code", str(training.exit_code)))
        for name, manifest in (("inputs", training.inputs), ("outputs", training.outputs)):
            if manifest is not None:
                properties.append(_raw(f"files-{name}", manifest.root))
        env = cert.environment
        if env is not None:
            properties += [
                _raw("os", env.os),
                _raw("python", f"{env.python.implementation} {env.python.version}"),
                _raw("cpu", f"{env.cpu.model or ''} {env.cpu.architecture} x{env.cpu.count}"),
            ]
            properties += [_raw("gpu", gpu) for gpu in env.gpus]
            for package in env.packages:
                self.transient_component(
                    f"package:{package.name}@{package.version}",
                    Component(
                        type=ComponentType.LIBRARY,
                        name=package.name,
                        version=package.version,
                        bom_ref=f"package:{package.name}@{package.version}",
                        purl=PackageURL(type="pypi", name=package.name, version=package.version),
                    ),
                )
        if properties:
            task["properties"] = properties
        return task

    def formulation(self) -> list[dict[str, Any]]:
        steps = [self.step_task(i, s) for i, s in enumerate(self.cert.preprocessing)]
        training = self.training_task()
        workflow: dict[str, Any] = {
            "bom-ref": "workflow:birth",
            "uid": self.subject.cid,
            "name": f"how {self.cert.model_name} was made",
            "taskTypes": ["other", "build"] if steps else ["build"],
            "tasks": [*steps, training],
        }
        if steps:
            workflow["taskDependencies"] = [
                {"ref": "task:training", "dependsOn": [t["bom-ref"] for t in steps]}
            ]
        formula: dict[str, Any] = {"bom-ref": "formula:birth", "workflows": [workflow]}
        if self.transient:
            holder = Bom(components=self.transient.values())
            formula["components"] = json.loads(JsonV1Dot7(holder).output_as_string())["components"]
        return [formula]


def _raw(name: str, value: str) -> dict[str, str]:
    return {"name": NAMESPACE + name, "value": value}


def _version() -> str:
    from provenance import __version__

    return __version__


def _with_data(component: dict[str, Any], records: dict[str, DatasetRecord]) -> None:
    record = records.get(component.get("bom-ref", ""))
    if record is not None:
        component["data"] = _Builder.component_data(record)


def export(subject: Subject, **options: object) -> bytes:
    """``subject`` as a CycloneDX 1.7 ML-BOM in JSON (other options are ignored)."""
    builder = _Builder(subject)
    document: dict[str, Any] = json.loads(JsonV1Dot7(builder.bom()).output_as_string())
    document["metadata"]["component"]["modelCard"] = builder.model_card()
    records = dict(zip(builder.dataset_refs, subject.certificate.data.datasets, strict=True))
    for component in document.get("components", []):
        _with_data(component, records)
    document["formulation"] = builder.formulation()
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


__all__ = ["SPEC_VERSION", "export"]
