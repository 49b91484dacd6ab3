"""The birth certificate of a model: schema (version 1), canonical bytes, digest, CID, on-chain
id, and the creator's EIP-712 signature.

Pure: no web3, no network. Relations, parents and model ids are :mod:`provenance.registration`'s.

How the values relate::

    body      = Certificate (frozen pydantic model; ``creator`` is inside it)
    bytes     = RFC 8785 (JCS) canonical JSON of the body, None fields omitted  (<= 256 KiB)
    digest    = SHA-256(bytes)                       "sha256:<hex>", the certificate digest
    cid       = CIDv1(raw, sha2-256, digest)         the body is one raw IPFS block
    signature = EIP-712 by ``creator`` over Certificate(bytes32 certificateDigest),
                domain {name: "provenance", version: "1"}  (chain-independent; outside the
                digested bytes, in the SignedCertificate envelope)
    model id  = Registration(digest, model.digest, data.commitment, parents).model_id_for(creator)
              = keccak256(abi.encode(digest, modelDigest, dataCommitment, keccak(parents), creator))

So equal content always gives an equal digest, and the model id is derived from the digest and
from who registers it (a certificate cannot contain its own id; its parents' ids are inside it).
:attr:`Certificate.model_id` is the id under the certificate's creator, the one registration a
verifier accepts; anyone else registering the same certificate gets a different id.

The paper's listing maps onto the schema as: record type -> ``record_type``; model name ->
``model_name``; model id -> :attr:`Certificate.model_id`; parent name and id ->
``parents[].name`` / ``parents[].id`` (plus ``relation``); training-data hash ->
``data.commitment``; training-data URL -> ``data.url``; payload -> ``payload``.

>>> signed = sign_certificate(body, account)                         # doctest: +SKIP
>>> verify_certificate_signature(signed)                             # doctest: +SKIP
>>> signed.certificate.cid, signed.certificate.model_id.hex()        # doctest: +SKIP
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic import (
    AfterValidator,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import WithJsonSchema, models_json_schema

from provenance.errors import CertificateError, ProvenanceError, SignatureError
from provenance.hashing import format_digest, parse_digest
from provenance.manifest import DatasetRecord, FileManifest, check_extractable, data_commitment
from provenance.registration import Parent, Registration, Relation
from provenance.schema import Digest, Frozen, HexBytes, canonical_json
from provenance.untrusted import keep_recursion_limit, loads_json

if TYPE_CHECKING:
    from eth_account.datastructures import SignedMessage
    from eth_account.messages import SignableMessage


SCHEMA_VERSION = 1
SCHEMA_ID = "urn:provenance:schema:certificate:v1"
MAX_BODY_SIZE = 256 * 1024
"""The canonical body must fit one IPFS raw block (so its CID follows from its digest)."""
MAX_FILE_SIZE = 8 * MAX_BODY_SIZE
"""A certificate file (indented JSON, maybe a signed envelope) is refused above this size."""

EIP712_DOMAIN: dict[str, Any] = {"name": "provenance", "version": "1"}
EIP712_TYPES: dict[str, list[dict[str, str]]] = {
    "Certificate": [{"name": "certificateDigest", "type": "bytes32"}]
}

RELATIONS: tuple[str, ...] = Relation.labels()
"""The relation labels a certificate may name: :class:`Relation`'s, in the contract's order."""


def _relation_label(value: str) -> str:
    """A certificate names a relation by its exact label (aliases are for input, not bodies)."""
    if value not in RELATIONS:
        raise ValueError(f"unknown relation {value!r}; use one of: {', '.join(RELATIONS)}")
    return value


RelationLabel = Annotated[
    str,
    AfterValidator(_relation_label),
    WithJsonSchema({"enum": list(RELATIONS), "type": "string"}),
]


def parse_relation(text: str | int) -> str:
    """A relation label from its spelling (``fine-tune``, ``fine_tune``, ``Fine Tune``,
    ``finetune``...) or the contract's enum value (:meth:`Relation.parse`)."""
    try:
        return Relation.parse(text).label
    except ProvenanceError as exc:
        raise CertificateError(str(exc)) from None


Bytes32 = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-f]{64}$")]


def _real_time(value: str) -> str:
    """The pattern admits ``2024-13-45T99:99:99Z``; the calendar does not."""
    try:
        dt.datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise ValueError(f"{value!r} is not a real date and time") from None
    return value


Timestamp = Annotated[
    str,
    StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$"),
    AfterValidator(_real_time),
]


def _checksum(value: str) -> str:
    from eth_utils.address import is_address, to_checksum_address

    if not is_address(value):
        raise ValueError(f"{value!r} is not an Ethereum address")
    return str(to_checksum_address(value))


Address = Annotated[
    str, StringConstraints(pattern=r"^0x[0-9a-fA-F]{40}$"), AfterValidator(_checksum)
]


def timestamp(moment: dt.datetime) -> str:
    """RFC 3339 UTC with microseconds and ``Z``, the one spelling of times in certificates."""
    if moment.tzinfo is None:
        raise CertificateError("a certificate time must be timezone-aware")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- parts ------------------------------------------------------------------------------------


class ParentLink(Frozen):
    """A parent model: its on-chain id, how this model derives from it, its name (as known)."""

    id: Bytes32
    relation: RelationLabel = "fine-tune"
    name: str | None = None


class OpaqueValue(Frozen):
    """A value that is not plain JSON: its type, a bounded ``repr``, and a digest of its
    canonical form (data) or pickle (other objects) when it has one."""

    type: str
    repr: str
    digest: Digest | None = None


class ValueRef(Frozen):
    """A digested input or output of a step: bytes, a file or directory, an array, a table."""

    name: str
    kind: Literal["bytes", "file", "directory", "ndarray", "table", "json", "object"]
    type: str
    digest: Digest | None = None
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    rows: int | None = None


class Step(Frozen):
    """One call of a preprocessing step."""

    name: str
    source_digest: Digest | None = None
    arguments: dict[str, JsonValue] = Field(default_factory=dict)
    opaque_arguments: dict[str, OpaqueValue] = Field(default_factory=dict)
    inputs: tuple[ValueRef, ...] = ()
    outputs: tuple[ValueRef, ...] = ()
    libraries: dict[str, str] = Field(default_factory=dict)
    started_at: Timestamp
    duration_s: Annotated[float, Field(ge=0)]


class Framework(Frozen):
    name: str
    version: str


class EstimatorNode(Frozen):
    """A (scikit-learn) estimator: its class, ``get_params(deep=False)``, and its sub-estimators
    (pipeline steps, column-transformer branches, wrapped estimators) by name."""

    name: str | None = None
    type: str
    params: dict[str, JsonValue] = Field(default_factory=dict)
    opaque_params: dict[str, OpaqueValue] = Field(default_factory=dict)
    steps: tuple[EstimatorNode, ...] = ()


class ModelArtifact(Frozen):
    """The model's files: manifest (per-file digests) and its root, the on-chain model digest;
    how it was serialised, by which framework, what it is, and where it is stored."""

    digest: Digest
    manifest: FileManifest
    format: str | None = None
    framework: Framework | None = None
    estimator: EstimatorNode | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _root(self) -> ModelArtifact:
        if self.digest != self.manifest.root:
            raise ValueError(f"model digest {self.digest} is not its manifest root")
        check_extractable(self.manifest, "the model")
        return self


class TrainingData(Frozen):
    """The datasets, and ``commitment``: the Merkle root over their commitments, the value
    anchored on chain (the paper's training-data hash); ``url`` is where the training data is
    published, if it is (the paper's training-data URL)."""

    commitment: Digest
    url: str | None = None
    datasets: tuple[DatasetRecord, ...] = ()

    @model_validator(mode="after")
    def _commitment(self) -> TrainingData:
        expected = data_commitment(self.datasets)
        if self.commitment != expected:
            raise ValueError(
                f"data commitment {self.commitment} is not the root of the datasets' "
                f"commitments {expected}"
            )
        return self

    @classmethod
    def of(cls, datasets: tuple[DatasetRecord, ...], url: str | None = None) -> TrainingData:
        return cls(commitment=data_commitment(datasets), url=url, datasets=datasets)


class EntryPoint(Frozen):
    path: str
    digest: Digest | None = None


class Training(Frozen):
    """How training ran: command line, entry point, hyper-parameters, seeds, metrics, times;
    for zero-code capture also the exit code and the files read (inputs) and written (outputs)."""

    command: tuple[str, ...] = ()
    entry_point: EntryPoint | None = None
    parameters: dict[str, JsonValue] = Field(default_factory=dict)
    opaque_parameters: dict[str, OpaqueValue] = Field(default_factory=dict)
    seeds: dict[str, JsonValue] = Field(default_factory=dict)
    metrics: dict[str, JsonValue] = Field(default_factory=dict)
    started_at: Timestamp | None = None
    ended_at: Timestamp | None = None
    exit_code: int | None = None
    inputs: FileManifest | None = None
    outputs: FileManifest | None = None


class PythonInfo(Frozen):
    version: str
    implementation: str


class Cpu(Frozen):
    model: str | None = None
    architecture: str
    count: int


class Package(Frozen):
    name: str
    version: str


class Container(Frozen):
    id: str | None = None
    image_id: str | None = None


class Environment(Frozen):
    """Where training ran: OS, Python, CPU/GPUs, every installed distribution (sorted by name),
    the container (when in one), and reproducibility-relevant environment variables."""

    os: str
    python: PythonInfo
    cpu: Cpu
    gpus: tuple[str, ...] = ()
    packages: tuple[Package, ...] = ()
    container: Container | None = None
    variables: dict[str, str] = Field(default_factory=dict)


class Source(Frozen):
    """The source tree's git state: commit, dirty flag and the digest of ``git diff HEAD``."""

    commit: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{40,64}$")] | None = None
    dirty: bool = False
    diff_digest: Digest | None = None
    untracked: int = 0
    remote: str | None = None
    branch: str | None = None


class Attachment(Frozen):
    """A large part kept outside the body (a step log, a file access log): its digest, size and
    where it is stored (``ipfs://<cid>``) when it is."""

    name: str
    digest: Digest
    size: Annotated[int, Field(ge=0)]
    media_type: str = "application/octet-stream"
    url: str | None = None


# -- the certificate --------------------------------------------------------------------------


class Certificate(Frozen):
    """The certificate body: everything the digest covers."""

    version: Literal[1] = 1
    record_type: Literal["model"] = "model"
    model_name: Annotated[str, Field(min_length=1)]
    created_at: Timestamp
    creator: Address | None = None
    parents: tuple[ParentLink, ...] = ()
    model: ModelArtifact
    data: TrainingData
    preprocessing: tuple[Step, ...] = ()
    training: Training = Field(default_factory=Training)
    environment: Environment | None = None
    source: Source | None = None
    attachments: tuple[Attachment, ...] = ()
    warnings: tuple[str, ...] = ()
    payload: JsonValue = None

    @model_validator(mode="after")
    def _parents_once(self) -> Certificate:
        ids = [p.id for p in self.parents]
        if len(set(ids)) != len(ids):
            raise ValueError("a parent appears twice")
        return self

    def canonical_bytes(self) -> bytes:
        """The RFC 8785 bytes the digest is taken over; at most 256 KiB."""
        data = canonical_json(self)
        if len(data) > MAX_BODY_SIZE:
            raise CertificateError(
                f"the certificate body is {len(data)} bytes; at most {MAX_BODY_SIZE} fit one IPFS "
                "block: keep large parts (package lists, logs, long index lists) as attachments"
            )
        return data

    @property
    def digest(self) -> bytes:
        """SHA-256 of the canonical bytes."""
        return hashlib.sha256(self.canonical_bytes()).digest()

    @property
    def digest_text(self) -> str:
        return format_digest(self.digest)

    @property
    def cid(self) -> str:
        """The CIDv1 of the body as one raw IPFS block (what ``Storage.put_bytes`` returns)."""
        return raw_block_cid(self.digest)

    def registration(self, acknowledge_revoked_parents: bool = False) -> Registration:
        """What registering this certificate on chain commits to."""
        return Registration(
            certificate_digest=self.digest,
            model_digest=parse_digest(self.model.digest, "model digest"),
            data_commitment=parse_digest(self.data.commitment, "data commitment"),
            parents=tuple(
                Parent(bytes.fromhex(p.id[2:]), Relation.parse(p.relation)) for p in self.parents
            ),
            acknowledge_revoked_parents=acknowledge_revoked_parents,
        )

    @property
    def model_id(self) -> bytes:
        """The on-chain id when the certificate's creator registers it (the paper's model id)."""
        if self.creator is None:
            raise CertificateError(
                "the certificate names no creator, so it has no model id yet: a model id binds "
                "its registrant; use model_id_for(registrant)"
            )
        return self.model_id_for(self.creator)

    def model_id_for(self, registrant: str) -> bytes:
        """The on-chain id this certificate gets when ``registrant`` registers it."""
        return self.registration().model_id_for(registrant)


def raw_block_cid(digest: bytes) -> str:
    """CIDv1, base32: raw codec (0x55), sha2-256 multihash of ``digest``."""
    binary = bytes([0x01, 0x55, 0x12, 0x20]) + digest
    return "b" + base64.b32encode(binary).decode().lower().rstrip("=")


class SignedCertificate(Frozen):
    """The file format of a signed certificate: the body and the creator's EIP-712 signature
    (65 bytes r || s || v) over its digest. The creator's address is inside the body."""

    certificate: Certificate
    signature: HexBytes

    @model_validator(mode="after")
    def _creator(self) -> SignedCertificate:
        if self.certificate.creator is None:
            raise ValueError("a signed certificate names its creator")
        if len(self.signature) != 2 + 2 * 65:
            raise ValueError("a signature has 65 bytes")
        return self


class Signer(Protocol):
    """An eth-account ``LocalAccount`` (or anything that signs EIP-712 the same way)."""

    @property
    def address(self) -> Any: ...

    def sign_message(self, signable_message: SignableMessage) -> SignedMessage: ...


def typed_data(digest: bytes) -> SignableMessage:
    """The EIP-712 message a creator signs for a certificate digest."""
    keep_recursion_limit()
    from eth_account.messages import encode_typed_data

    return encode_typed_data(
        domain_data=EIP712_DOMAIN,
        message_types=EIP712_TYPES,
        message_data={"certificateDigest": digest},
    )


def sign_certificate(certificate: Certificate, account: Signer) -> SignedCertificate:
    """Set the creator to ``account`` (if unset) and sign the resulting digest."""
    creator = _checksum(str(account.address))
    if certificate.creator is None:
        certificate = certificate.model_copy(update={"creator": creator})
        certificate = Certificate.model_validate(certificate.model_dump())
    elif certificate.creator != creator:
        raise SignatureError(
            f"the certificate names creator {certificate.creator}, the signer is {creator}"
        )
    signed = account.sign_message(typed_data(certificate.digest))
    return SignedCertificate(
        certificate=certificate, signature="0x" + bytes(signed.signature).hex()
    )


def verify_certificate_signature(signed: SignedCertificate) -> None:
    """Check that the signature recovers to the certificate's creator; raises SignatureError."""
    keep_recursion_limit()
    from eth_account import Account
    from eth_keys.exceptions import BadSignature

    signature = bytes.fromhex(signed.signature[2:])
    if len(signature) != 65:
        raise SignatureError(
            f"the certificate signature is malformed: {len(signature)} bytes, not 65"
        )
    try:
        recovered = Account.recover_message(
            typed_data(signed.certificate.digest), signature=signature
        )
    except (ValueError, TypeError, IndexError, BadSignature) as exc:
        raise SignatureError(f"the certificate signature is malformed: {exc}") from exc
    if recovered != signed.certificate.creator:
        raise SignatureError(
            f"the certificate signature recovers to {recovered}, not to its creator "
            f"{signed.certificate.creator}"
        )


# -- files ------------------------------------------------------------------------------------


def parse_certificate(
    data: bytes | str | dict[str, Any], where: str = "certificate"
) -> Certificate | SignedCertificate:
    """A certificate body or a signed envelope (``{"certificate": ..., "signature": ...}``)."""
    if isinstance(data, bytes | str):
        data = loads_json(data, what=where, max_bytes=MAX_FILE_SIZE, error=CertificateError)
    if not isinstance(data, dict):
        raise CertificateError(f"{where} must be a JSON object")
    model: type[Certificate] | type[SignedCertificate] = (
        SignedCertificate if "signature" in data else Certificate
    )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        at = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise CertificateError(
            f"{where} does not fit schema v1: {at}: {first['msg']}{more}"
        ) from None


def load_certificate(path: Path) -> Certificate | SignedCertificate:
    """Read a certificate file (body or signed envelope)."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise CertificateError(f"certificate {path} does not exist") from None
    except OSError as exc:
        raise CertificateError(f"cannot read certificate {path}: {exc.strerror}") from exc
    return parse_certificate(text, f"certificate {path}")


def body_of(document: Certificate | SignedCertificate) -> Certificate:
    return document.certificate if isinstance(document, SignedCertificate) else document


def to_json(document: Certificate | SignedCertificate) -> str:
    """Readable JSON for files (indented; the digest is over the canonical form, not this)."""
    return (
        json.dumps(
            document.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False
        )
        + "\n"
    )


def certificate_json_schema() -> dict[str, Any]:
    """The published JSON Schema (draft 2020-12) of certificate files: a signed envelope or a
    bare body. ``src/provenance/schemas/certificate-v1.schema.json`` is this, and a test checks
    it stays so (``provenance certificate schema`` prints it)."""
    _, top = models_json_schema(
        [(SignedCertificate, "validation"), (Certificate, "validation")],
        ref_template="#/$defs/{model}",
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "provenance model birth certificate, version 1",
        "description": (
            "A signed envelope {certificate, signature} or a bare certificate body. The "
            "certificate digest is SHA-256 over the RFC 8785 canonical JSON of the body with "
            "null members omitted; the signature is EIP-712 over it (domain name 'provenance', "
            "version '1'; type Certificate(bytes32 certificateDigest))."
        ),
        "oneOf": [{"$ref": "#/$defs/SignedCertificate"}, {"$ref": "#/$defs/Certificate"}],
        "$defs": top["$defs"],
    }
