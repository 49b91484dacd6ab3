"""provenance.certificate: schema, canonical bytes, digest, CID, on-chain id, EIP-712 signature,
the published JSON Schema, and golden digests (tests/golden/digests.json) that must never move."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import rfc8785
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak

from provenance.certificate import (
    MAX_BODY_SIZE,
    RELATIONS,
    Attachment,
    Certificate,
    EntryPoint,
    Environment,
    ModelArtifact,
    ParentLink,
    PythonInfo,
    SignedCertificate,
    Source,
    Step,
    Training,
    TrainingData,
    body_of,
    certificate_json_schema,
    load_certificate,
    parse_certificate,
    parse_relation,
    sign_certificate,
    to_json,
    typed_data,
    verify_certificate_signature,
)
from provenance.certificate import Cpu as CpuInfo
from provenance.chain.keys import anvil_dev_key
from provenance.errors import CertificateError, ProvenanceError, SignatureError
from provenance.hashing import format_digest, merkle_root
from provenance.manifest import (
    FileEntry,
    FileManifest,
    SampleSelection,
    dataset_record,
    manifest_of,
    open_table,
    subset_of,
)
from provenance.registration import Parent, Registration, Relation
from provenance.storage.cid import cid_for_digest

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "digests.json"
SCHEMA = ROOT / "src" / "provenance" / "schemas" / "certificate-v1.schema.json"
DEV = Account.from_key(anvil_dev_key(0))
OTHER = Account.from_key(anvil_dev_key(1))
ALPHA = "0x" + "ab" * 32

CSV = "x,label\n1.5,a\n2.5,b\n3.5,a\n4.5,b\n"


def model_manifest() -> FileManifest:
    return FileManifest.of(
        [
            FileEntry(
                path="model.pkl", size=3, digest=format_digest(hashlib.sha256(b"abc").digest())
            ),
            FileEntry(path="README", size=0, digest=format_digest(hashlib.sha256(b"").digest())),
        ]
    )


def sample_certificate(tmp: Path, **changes: Any) -> Certificate:
    """A certificate with every part filled in, from fixed values only."""
    csv = tmp / "train.csv"
    csv.write_text(CSV)
    subset = subset_of(open_table(csv), SampleSelection(seed=3, fraction=0.5))
    train, _ = dataset_record("train.csv", subset.manifest, subset=subset.subset)
    frame = pd.DataFrame({"a": [1, 2], "b": ["u", None]})
    holdout, _ = dataset_record("holdout", open_table(frame).manifest(), role="test")
    manifest = model_manifest()
    fields: dict[str, Any] = {
        "model_name": "Model Beta",
        "created_at": "2024-05-01T12:00:00.000000Z",
        "parents": (ParentLink(id=ALPHA, relation="fine-tune", name="Model Alpha"),),
        "model": ModelArtifact(digest=manifest.root, manifest=manifest, format="pickle-5"),
        "data": TrainingData.of((train, holdout), url="ipfs://bafkreiexample"),
        "preprocessing": (
            Step(
                name="prep:drop_outliers",
                source_digest="sha256:" + "01" * 32,
                arguments={"z": 3.0},
                started_at="2024-05-01T11:00:00.000000Z",
                duration_s=0.25,
            ),
        ),
        "training": Training(
            command=("python", "train.py", "--epochs", "3"),
            entry_point=EntryPoint(path="train.py", digest="sha256:" + "02" * 32),
            parameters={"C": 0.5, "layers": [64, 32]},
            seeds={"numpy": 0},
            metrics={"accuracy": 0.97},
            started_at="2024-05-01T11:00:00.000000Z",
            ended_at="2024-05-01T11:59:00.000000Z",
        ),
        "environment": Environment(
            os="Linux-6.1-x86_64",
            python=PythonInfo(version="3.11.7", implementation="CPython"),
            cpu=CpuInfo(model="EPYC", architecture="x86_64", count=2),
        ),
        "source": Source(commit="c" * 40, dirty=True, diff_digest="sha256:" + "03" * 32),
        "attachments": (
            Attachment(name="log", digest="sha256:" + "04" * 32, size=10, media_type="text/plain"),
        ),
        "payload": {"note": "exde4UOIQvV/f4bwZ59bhg=="},
    }
    fields.update(changes)
    return Certificate(**fields)


# -- canonical bytes, digest, CID, id -----------------------------------------------------------


def test_the_digest_is_sha256_of_the_jcs_of_the_file(tmp_path: Path) -> None:
    body = sample_certificate(tmp_path)
    file = tmp_path / "cert.json"
    file.write_text(to_json(body))
    document = json.loads(file.read_text())
    assert body.canonical_bytes() == rfc8785.dumps(document)
    assert body.digest == hashlib.sha256(rfc8785.dumps(document)).digest()
    assert body.digest_text == "sha256:" + body.digest.hex()
    assert "null" not in body.canonical_bytes().decode()  # None members are omitted
    again = load_certificate(file)
    assert again == body and body_of(again).digest == body.digest
    # the same content given with explicit nulls is the same certificate
    document["source"]["remote"] = None
    assert parse_certificate(document).digest == body.digest  # type: ignore[union-attr]


def test_the_cid_is_the_raw_block_cid_of_the_digest(tmp_path: Path) -> None:
    body = sample_certificate(tmp_path)
    assert body.cid == cid_for_digest(body.digest)
    assert body.cid.startswith("bafkrei")


def test_the_model_id_is_the_registrations(tmp_path: Path) -> None:
    body = sample_certificate(tmp_path)
    registration = body.registration()
    assert registration == Registration(
        certificate_digest=body.digest,
        model_digest=bytes.fromhex(body.model.digest[7:]),
        data_commitment=bytes.fromhex(body.data.commitment[7:]),
        parents=(Parent(bytes.fromhex(ALPHA[2:]), Relation.FINE_TUNE),),
    )
    assert body.registration(acknowledge_revoked_parents=True).acknowledge_revoked_parents
    # the id binds its registrant; Certificate.model_id is the id under the creator
    assert body.model_id_for(DEV.address) == registration.model_id_for(DEV.address.lower())
    # abi.encode((bytes32,uint8)[]) of one fine-tune parent: offset, length, id, relation
    one_parent = (32).to_bytes(32, "big") + (1).to_bytes(32, "big") + bytes.fromhex(ALPHA[2:])
    assert registration.parents_hash == keccak(one_parent + bytes(32))
    expected = keccak(
        registration.certificate_digest
        + registration.model_digest
        + registration.data_commitment
        + registration.parents_hash
        + bytes(12)
        + bytes.fromhex(DEV.address[2:])
    )
    assert body.model_id_for(DEV.address) == expected  # abi.encode of five static words
    signed = sign_certificate(body, DEV).certificate
    assert signed.model_id == signed.registration().model_id_for(DEV.address)
    assert signed.model_id != signed.model_id_for(OTHER.address)
    with pytest.raises(CertificateError) as info:
        body.model_id  # noqa: B018
    assert str(info.value) == (
        "the certificate names no creator, so it has no model id yet: a model id binds its "
        "registrant; use model_id_for(registrant)"
    )
    with pytest.raises(ProvenanceError, match=r"^registrant 'nobody' is not an address$"):
        registration.model_id_for("nobody")


def test_relations_are_the_contracts() -> None:
    assert tuple(r.label for r in Relation) == RELATIONS
    for r in Relation:
        assert parse_relation(r.label) == r.label == parse_relation(int(r))
    assert (
        parse_relation("Fine_Tune") == "fine-tune" and parse_relation("distill") == "distillation"
    )
    with pytest.raises(CertificateError) as exc:
        parse_relation("adoption")
    assert str(exc.value) == (
        "unknown relation 'adoption'; use one of: fine-tune, transfer, online-update, "
        "distillation, merge, quantization, checkpoint, other"
    )


def test_every_change_of_content_changes_the_digest(tmp_path: Path) -> None:
    base = sample_certificate(tmp_path)
    training = base.training
    digests = {
        sample_certificate(tmp_path, model_name="Model Gamma").digest,
        sample_certificate(tmp_path, payload=None).digest,
        sample_certificate(
            tmp_path,
            training=training.model_copy(update={"parameters": {"C": 0.6, "layers": [64, 32]}}),
        ).digest,
        sample_certificate(
            tmp_path, parents=(ParentLink(id=ALPHA, relation="distillation", name="Model Alpha"),)
        ).digest,
        sample_certificate(tmp_path, warnings=("x",)).digest,
    }
    assert base.digest not in digests and len(digests) == 5


def test_consistency_rules(tmp_path: Path) -> None:
    base = sample_certificate(tmp_path)
    data = base.model_dump(mode="json", exclude_none=True)
    cases = [
        (
            ("model", "digest"),
            "sha256:" + "00" * 32,
            "model: Value error, model digest sha256:" + "00" * 32 + " is not its manifest root",
        ),
        (
            ("data", "commitment"),
            "sha256:" + "00" * 32,
            "data: Value error, data commitment sha256:" + "00" * 32 + " is not the root",
        ),
        (("record_type",), "dataset", "record_type: Input should be 'model'"),
        (("creator",), "0x1234", "creator: String should match pattern"),
        (
            ("parents",),
            [{"id": ALPHA}, {"id": ALPHA}],
            "(top level): Value error, a parent appears twice",
        ),
        (("surprise",), 1, "surprise: Extra inputs are not permitted"),
    ]
    for path, value, message in cases:
        doc = json.loads(json.dumps(data))
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(CertificateError) as exc:
            parse_certificate(doc, "certificate x.json")
        assert str(exc.value).startswith(f"certificate x.json does not fit schema v1: {message}"), (
            exc.value
        )
    with pytest.raises(CertificateError, match=r"^certificate y is not JSON: "):
        parse_certificate(b"{", "certificate y")


def test_a_body_over_256_kib_is_refused(tmp_path: Path) -> None:
    big = sample_certificate(tmp_path, payload="x" * MAX_BODY_SIZE)
    with pytest.raises(CertificateError) as exc:
        big.canonical_bytes()
    size = len(rfc8785.dumps(big.model_dump(mode="json", exclude_none=True)))
    assert str(exc.value) == (
        f"the certificate body is {size} bytes; at most 262144 fit one IPFS block: keep large "
        "parts (package lists, logs, long index lists) as attachments"
    )


# -- signatures -------------------------------------------------------------------------------


def test_eip712_message_is_chain_independent_and_standard(tmp_path: Path) -> None:
    digest = sample_certificate(tmp_path).digest
    signable = typed_data(digest)
    domain_type = keccak(text="EIP712Domain(string name,string version)")
    domain = keccak(domain_type + keccak(text="provenance") + keccak(text="1"))
    message = keccak(keccak(text="Certificate(bytes32 certificateDigest)") + digest)
    assert signable.header == domain and signable.body == message
    assert keccak(b"\x19\x01" + domain + message) == keccak(
        b"\x19" + signable.version + signable.header + signable.body
    )
    full = encode_typed_data(
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                ],
                "Certificate": [{"name": "certificateDigest", "type": "bytes32"}],
            },
            "primaryType": "Certificate",
            "domain": {"name": "provenance", "version": "1"},
            "message": {"certificateDigest": digest},
        }
    )
    assert full == signable


def test_sign_and_verify(tmp_path: Path) -> None:
    body = sample_certificate(tmp_path)
    signed = sign_certificate(body, DEV)
    assert signed.certificate.creator == DEV.address
    assert signed.certificate.digest != body.digest  # the creator is inside the digest
    verify_certificate_signature(signed)
    again = parse_certificate(to_json(signed))
    assert isinstance(again, SignedCertificate) and again == signed
    verify_certificate_signature(again)


def test_a_tampered_or_misattributed_certificate_fails(tmp_path: Path) -> None:
    signed = sign_certificate(sample_certificate(tmp_path), DEV)
    other = Account.from_key(anvil_dev_key(1))
    tampered = signed.model_copy(
        update={"certificate": signed.certificate.model_copy(update={"model_name": "Model Evil"})}
    )
    with pytest.raises(SignatureError) as exc:
        verify_certificate_signature(tampered)
    recovered = Account.recover_message(
        typed_data(tampered.certificate.digest), signature=bytes.fromhex(signed.signature[2:])
    )
    assert str(exc.value) == (
        f"the certificate signature recovers to {recovered}, not to its creator {DEV.address}"
    )
    with pytest.raises(SignatureError) as exc:
        sign_certificate(signed.certificate, other)
    assert str(exc.value) == (
        f"the certificate names creator {DEV.address}, the signer is {other.address}"
    )
    claimed = signed.model_copy(
        update={"certificate": signed.certificate.model_copy(update={"creator": other.address})}
    )
    with pytest.raises(SignatureError, match=r"^the certificate signature recovers to "):
        verify_certificate_signature(claimed)


# -- the published schema, purity, golden digests -----------------------------------------------


def test_the_published_schema_is_generated_from_the_models() -> None:
    published = json.loads(SCHEMA.read_text())
    assert published == certificate_json_schema(), (
        "regenerate: provenance certificate schema > src/provenance/schemas/certificate-v1.schema.json"
    )
    assert published["oneOf"] == [
        {"$ref": "#/$defs/SignedCertificate"},
        {"$ref": "#/$defs/Certificate"},
    ]
    top = published["$defs"]["Certificate"]["properties"]
    for field in ("record_type", "model_name", "parents", "model", "data", "preprocessing",
                  "training", "environment", "source", "creator", "payload"):  # fmt: skip
        assert field in top


def test_the_pure_modules_import_no_web3_httpx_or_docker() -> None:
    code = (
        "import sys, provenance.hashing, provenance.manifest, provenance.certificate; "
        "print(sorted(m for m in ('web3', 'httpx', 'docker') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def golden_values(tmp: Path) -> dict[str, str]:
    folder = tmp / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 20)
    files = manifest_of(folder, shard_size=1024)
    csv = tmp / "t.csv"
    csv.write_text(CSV)
    frame = pd.DataFrame({"i": [1, 2], "f": [0.5, float("nan")], "s": ["x", None]})
    body = sample_certificate(tmp)
    signed = sign_certificate(body, DEV)
    return {
        "merkle_root_abc": format_digest(merkle_root([b"a", b"b", b"c"])),
        "file_manifest_root": files.root,
        "csv_table_root": open_table(csv).manifest().root,
        "csv_table_digest": open_table(csv).manifest().digest,
        "frame_table_digest": open_table(frame).manifest().digest,
        "sample_positions": json.dumps(SampleSelection(seed=42, fraction=0.3).positions(20)),
        "certificate_digest": body.digest_text,
        "certificate_cid": body.cid,
        "model_id": "0x" + signed.certificate.model_id.hex(),
        "signed_certificate_digest": signed.certificate.digest_text,
        "signature": signed.signature,
    }


def test_golden_digests_are_stable(tmp_path: Path) -> None:
    recorded = json.loads(GOLDEN.read_text())
    computed = golden_values(tmp_path)
    assert computed == recorded
