"""A certificate as an in-toto Statement v1 with a SLSA provenance v1 predicate, DSSE-signed
when a key is given.

What maps to what:

- ``subject``: the model's files (path and ``sha256`` of each, from the certificate's model
  manifest). A file above the manifest's shard size has a shard-list digest, not a plain
  SHA-256: it is given as ``provenanceShardedSha256`` (see :mod:`provenance.hashing`), and,
  when the subject's model files are at hand, also as its plain ``sha256`` (the files are then
  checked against the manifest first).
- ``buildDefinition.buildType``: :data:`BUILD_TYPE`, an ML training run captured by provenance.
  ``externalParameters``: the model name, command, entry point, hyper-parameters (plain and
  opaque), seeds and the preprocessing steps' arguments. ``internalParameters``: the
  environment (OS, Python, CPU, GPUs, packages, recorded variables).
  ``resolvedDependencies``, all by digest: each dataset (its commitment as
  ``provenanceDataCommitment``, its url, role, and the digest of the table a subset was
  selected from), the entry point (``sha256``), the source tree
  (``gitCommit``, dirty flag and diff digest), each preprocessing step's code (``sha256``),
  each parent model (its on-chain id as ``provenanceModelId``, the relation), and the container
  image training ran in (``sha256`` image id).
- ``runDetails.builder.id``: ``urn:provenance:creator:<address>`` (the creator who signs the
  certificate vouches for the run), or :data:`UNSIGNED_BUILDER` when it names none.
  ``metadata``: ``invocationId`` = the certificate digest, ``startedOn`` / ``finishedOn`` = the
  training times. ``byproducts``: the certificate itself (``ipfs://<cid>``, ``sha256`` digest;
  model id, chain, registry, model digest, data commitment and the creator's EIP-712 signature
  as annotations), the metrics (inline JSON) and each attachment (logs, the image record).

Output: without ``signing_key``, the Statement as indented JSON. With a P-256/P-384
``signing_key``, a DSSE envelope (``payloadType`` ``application/vnd.in-toto+json``, the
Statement's compact JSON as payload, one ECDSA signature with securesystemslib's key id) as one
line of JSON, so it is also a valid line of an ``.intoto.jsonl`` bundle.

Custom digest names (``provenance...``) follow the in-toto DigestSet rule that consumers
ignore algorithms they do not know; every file, code and image digest is a plain ``sha256``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import TYPE_CHECKING, Any

import rfc8785

from provenance.certificate import Certificate
from provenance.errors import CertificateError, ConfigError
from provenance.hashing import hash_stream

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

    from provenance.export.subject import Subject

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUILD_TYPE = "urn:provenance:build-type:ml-training:v1"
"""Our build type: a training run whose certificate (schema ``urn:provenance:schema:
certificate:v1``) is ``runDetails.byproducts[0]``; its parameters are described above."""
UNSIGNED_BUILDER = "urn:provenance:creator:unsigned"
CERTIFICATE_MEDIA_TYPE = "application/vnd.provenance.certificate+json"

SHARDED = "provenanceShardedSha256"
DATA_COMMITMENT = "provenanceDataCommitment"
MODEL_ID = "provenanceModelId"


def export(
    subject: Subject, signing_key: ec.EllipticCurvePrivateKey | None = None, **_: Any
) -> bytes:
    """The Statement (JSON), or its DSSE envelope when ``signing_key`` is given."""
    statement = build_statement(subject)
    if signing_key is None:
        return (json.dumps(statement, indent=2, ensure_ascii=False) + "\n").encode()
    envelope = sign_statement(statement, signing_key)
    return (json.dumps(envelope, separators=(",", ":")) + "\n").encode()


def build_statement(subject: Subject) -> dict[str, Any]:
    """The in-toto Statement v1 of ``subject`` with its SLSA provenance v1 predicate."""
    cert = subject.certificate
    return {
        "_type": STATEMENT_TYPE,
        "subject": _model_files(subject),
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": _external_parameters(cert),
                **_present("internalParameters", _internal_parameters(cert)),
                **_present("resolvedDependencies", _dependencies(cert)),
            },
            "runDetails": {
                "builder": {
                    "id": (
                        UNSIGNED_BUILDER
                        if cert.creator is None
                        else f"urn:provenance:creator:{cert.creator}"
                    ),
                    "version": {"certificateSchema": str(cert.version)},
                },
                "metadata": {
                    "invocationId": cert.digest_text,
                    **_present("startedOn", cert.training.started_at),
                    **_present("finishedOn", cert.training.ended_at),
                },
                "byproducts": _byproducts(subject),
            },
        },
    }


def sign_statement(
    statement: dict[str, Any], signing_key: ec.EllipticCurvePrivateKey
) -> dict[str, Any]:
    """A DSSE envelope of ``statement`` signed with ``signing_key`` (securesystemslib's
    :class:`~securesystemslib.dsse.Envelope` and ``CryptoSigner``)."""
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]  # not in its __all__

    try:
        signer = CryptoSigner(signing_key)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"a DSSE envelope cannot be signed with this key: {exc}") from exc
    payload = json.dumps(statement, separators=(",", ":"), ensure_ascii=False).encode()
    envelope = Envelope(payload, PAYLOAD_TYPE, {})
    envelope.sign(signer)
    document: dict[str, Any] = envelope.to_dict()
    return document


# -- parts --------------------------------------------------------------------------------------


def _hex(digest: str) -> str:
    """The hex of a ``sha256:<hex>`` digest."""
    return digest.split(":", 1)[1]


def _present(key: str, value: Any) -> dict[str, Any]:
    """``{key: value}``, or nothing when the value is empty (SLSA omits unset fields)."""
    return {key: value} if value not in (None, "", {}, [], ()) else {}


def _model_files(subject: Subject) -> list[dict[str, Any]]:
    manifest = subject.certificate.model.manifest
    plain: dict[str, str] = {}
    if subject.model_files is not None and any(f.shard_size for f in manifest.files):
        from provenance.manifest import files_at, verify_manifest

        verify_manifest(manifest, subject.model_files)
        paths = files_at(subject.model_files)
        for entry in manifest.files:
            if entry.shard_size is not None:
                with open(paths[entry.path], "rb") as stream:
                    plain[entry.path] = hash_stream(stream).hex()
    if not manifest.files:
        raise CertificateError(
            "the certificate's model manifest lists no files; an in-toto Statement needs a subject"
        )
    files = []
    for entry in manifest.files:
        digest: dict[str, str]
        if entry.shard_size is None:
            digest = {str(entry.algorithm): _hex(entry.digest)}  # sha256, or blake3
        else:
            digest = {SHARDED: _hex(entry.digest), **_present("sha256", plain.get(entry.path))}
        files.append({"name": entry.path, "digest": digest})
    return files


def _external_parameters(cert: Certificate) -> dict[str, Any]:
    training = cert.training
    steps = [
        {
            "name": step.name,
            **_present("arguments", step.arguments),
            **_present(
                "opaqueArguments",
                {
                    k: v.model_dump(mode="json", exclude_none=True)
                    for k, v in step.opaque_arguments.items()
                },
            ),
        }
        for step in cert.preprocessing
    ]
    return {
        "modelName": cert.model_name,
        **_present("command", list(training.command)),
        **_present("entryPoint", training.entry_point and training.entry_point.path),
        **_present("parameters", training.parameters),
        **_present(
            "opaqueParameters",
            {
                k: v.model_dump(mode="json", exclude_none=True)
                for k, v in training.opaque_parameters.items()
            },
        ),
        **_present("seeds", training.seeds),
        **_present("preprocessing", steps),
    }


def _internal_parameters(cert: Certificate) -> dict[str, Any]:
    env = cert.environment
    if env is None:
        return {}
    return {
        "environment": {
            "os": env.os,
            "python": f"{env.python.implementation} {env.python.version}",
            "cpu": env.cpu.model_dump(mode="json", exclude_none=True),
            **_present("gpus", list(env.gpus)),
            **_present("packages", {p.name: p.version for p in env.packages}),
            **_present("variables", env.variables),
        }
    }


def _dependencies(cert: Certificate) -> list[dict[str, Any]]:
    deps: list[dict[str, Any]] = []
    for dataset in cert.data.datasets:
        deps.append(
            {
                "name": f"dataset:{dataset.name}",
                **_present("uri", dataset.url),
                "digest": {DATA_COMMITMENT: _hex(dataset.commitment)},
                "annotations": {
                    "role": dataset.role,
                    "confidential": dataset.confidential,
                    **_present("subsetOf", dataset.subset and dataset.subset.source.digest),
                },
            }
        )
    training = cert.training
    if training.entry_point is not None and training.entry_point.digest is not None:
        deps.append(
            {
                "name": f"code:{training.entry_point.path}",
                "digest": {"sha256": _hex(training.entry_point.digest)},
            }
        )
    source = cert.source
    if source is not None and source.commit is not None:
        deps.append(
            {
                "name": "source",
                **_present("uri", source.remote and f"git+{source.remote}"),
                "digest": {"gitCommit": source.commit},
                "annotations": {
                    "dirty": source.dirty,
                    **_present("branch", source.branch),
                    **_present("diffDigest", source.diff_digest),
                    **_present("untracked", source.untracked),
                },
            }
        )
    for step in cert.preprocessing:
        if step.source_digest is not None:
            deps.append(
                {"name": f"step:{step.name}", "digest": {"sha256": _hex(step.source_digest)}}
            )
    for parent in cert.parents:
        deps.append(
            {
                "name": f"model:{parent.name or parent.id}",
                "uri": f"urn:provenance:model:{parent.id}",
                "digest": {MODEL_ID: parent.id[2:]},
                "annotations": {"relation": parent.relation},
            }
        )
    container = cert.environment.container if cert.environment is not None else None
    if container is not None and container.image_id is not None:
        image = container.image_id
        notes = {"containerId": container.id, "imageId": image}
        deps.append(
            {
                "name": "container-image",
                **_present(
                    "digest", {"sha256": _hex(image)} if image.startswith("sha256:") else None
                ),
                "annotations": {k: v for k, v in notes.items() if v is not None},
            }
        )
    return deps


def _byproducts(subject: Subject) -> list[dict[str, Any]]:
    cert = subject.certificate
    annotations: dict[str, Any] = {
        "modelDigest": cert.model.digest,
        "dataCommitment": cert.data.commitment,
        **_present("dataUrl", cert.data.url),
        **_present("creator", cert.creator),
        **_present("eip712Signature", subject.envelope and subject.envelope.signature),
        **_present("modelId", subject.model_id_hex),
        **_present("chainId", subject.chain_id),
        **_present("registry", subject.registry),
    }
    products: list[dict[str, Any]] = [
        {
            "name": "certificate",
            "uri": f"ipfs://{subject.cid}",
            "digest": {"sha256": cert.digest.hex()},
            "mediaType": CERTIFICATE_MEDIA_TYPE,
            "annotations": annotations,
        }
    ]
    if cert.training.metrics:
        content = rfc8785.dumps(cert.training.metrics)
        products.append(
            {
                "name": "metrics",
                "digest": {"sha256": hashlib.sha256(content).hexdigest()},
                "content": base64.b64encode(content).decode(),
                "mediaType": "application/json",
            }
        )
    for attachment in cert.attachments:
        products.append(
            {
                "name": f"attachment:{attachment.name}",
                **_present("uri", attachment.url),
                "digest": {"sha256": _hex(attachment.digest)},
                "mediaType": attachment.media_type,
                "annotations": {"size": attachment.size},
            }
        )
    return products


__all__ = ["BUILD_TYPE", "PAYLOAD_TYPE", "PREDICATE_TYPE", "build_statement", "export"]
