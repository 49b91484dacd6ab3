"""The "slsa" export: an in-toto Statement v1 with a SLSA provenance v1 predicate, read back by
the in-toto attestation library (its protobuf messages, strictly, and its validate()), and its
DSSE envelope verified by securesystemslib with the signer's public key."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from eth_account import Account
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
from in_toto_attestation.v1.statement import Statement
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey

from provenance.certificate import (
    Container,
    Environment,
    ModelArtifact,
    PythonInfo,
    sign_certificate,
    to_json,
)
from provenance.certificate import Cpu as CpuInfo
from provenance.errors import CertificateError, IntegrityError
from provenance.export import FORMATS, Subject, export
from provenance.export.signing_keys import new_signing_key
from provenance.export.slsa import BUILD_TYPE, PAYLOAD_TYPE, PREDICATE_TYPE
from provenance.manifest import manifest_of

from .test_certificate import ALPHA, sample_certificate


def validated(statement: dict[str, Any]) -> provenance_pb2.Provenance:
    """The statement through the in-toto attestation library: parsed strictly (unknown fields
    and wrong types refused) into its Statement and SLSA Provenance protobufs, validated by
    its Statement.validate() and ResourceDescriptor.validate(), and the fields SLSA v1
    requires present."""
    message = json_format.ParseDict(statement, statement_pb2.Statement())
    Statement.copy_from_pb(message).validate()
    provenance = json_format.ParseDict(
        json_format.MessageToDict(message.predicate), provenance_pb2.Provenance()
    )
    build, run = provenance.build_definition, provenance.run_details
    assert build.build_type and build.external_parameters.fields and run.builder.id
    for descriptor in [*build.resolved_dependencies, *run.byproducts]:
        ResourceDescriptor.copy_from_pb(descriptor).validate()
    return provenance


def signed_subject(tmp_path: Path, **changes: Any) -> Subject:
    creator = Account.create()
    body = sample_certificate(tmp_path, creator=creator.address, **changes)
    return Subject.of(sign_certificate(body, creator), chain_id=31337, registry="0x" + "5f" * 20)


def test_the_format_is_listed() -> None:
    assert FORMATS["slsa"][0] == "slsa"


def test_the_statement_is_valid_in_toto_and_slsa_provenance(tmp_path: Path) -> None:
    environment = Environment(
        os="Linux",
        python=PythonInfo(version="3.11.7", implementation="CPython"),
        cpu=CpuInfo(architecture="x86_64", count=2),
        container=Container(id="c" * 64, image_id="sha256:" + "0e" * 32),
    )
    subject = signed_subject(tmp_path, environment=environment)
    cert = subject.certificate
    statement = json.loads(export(subject, "slsa"))
    provenance = validated(statement)

    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == PREDICATE_TYPE == "https://slsa.dev/provenance/v1"
    assert statement["subject"] == [
        {"name": f.path, "digest": {"sha256": f.digest.removeprefix("sha256:")}}
        for f in cert.model.manifest.files
    ]
    build = provenance.build_definition
    assert build.build_type == BUILD_TYPE
    external = json_format.MessageToDict(build.external_parameters)
    assert external["command"] == ["python", "train.py", "--epochs", "3"]
    assert external["parameters"] == {"C": 0.5, "layers": [64, 32]}
    assert external["seeds"] == {"numpy": 0}
    assert external["entryPoint"] == "train.py"
    deps = {d.name: json_format.MessageToDict(d) for d in build.resolved_dependencies}
    assert deps["dataset:train.csv"]["digest"] == {
        "provenanceDataCommitment": cert.data.datasets[0].commitment.removeprefix("sha256:")
    }
    assert deps["dataset:holdout"]["annotations"]["role"] == "test"
    assert deps["code:train.py"]["digest"] == {"sha256": "02" * 32}
    assert deps["source"]["digest"] == {"gitCommit": "c" * 40}
    assert deps["step:prep:drop_outliers"]["digest"] == {"sha256": "01" * 32}
    assert deps["model:Model Alpha"]["digest"] == {"provenanceModelId": ALPHA[2:]}
    assert deps["model:Model Alpha"]["annotations"] == {"relation": "fine-tune"}
    assert deps["container-image"]["digest"] == {"sha256": "0e" * 32}

    run = provenance.run_details
    assert run.builder.id == f"urn:provenance:creator:{cert.creator}"
    assert run.metadata.invocation_id == cert.digest_text
    assert run.metadata.started_on.ToDatetime(dt.UTC) == dt.datetime(2024, 5, 1, 11, tzinfo=dt.UTC)
    assert run.metadata.finished_on.ToDatetime(dt.UTC) == dt.datetime(
        2024, 5, 1, 11, 59, tzinfo=dt.UTC
    )
    certificate = run.byproducts[0]
    assert certificate.uri == f"ipfs://{cert.cid}"
    assert dict(certificate.digest) == {"sha256": cert.digest.hex()}
    notes = json_format.MessageToDict(certificate.annotations)
    assert notes["modelId"] == subject.model_id_hex and notes["chainId"] == 31337
    assert subject.envelope is not None
    assert notes["eip712Signature"] == subject.envelope.signature
    metrics = next(b for b in run.byproducts if b.name == "metrics")
    assert json.loads(metrics.content) == {"accuracy": 0.97}
    assert dict(metrics.digest) == {"sha256": hashlib.sha256(metrics.content).hexdigest()}


def test_a_bare_certificate_has_an_unsigned_builder_and_still_validates(tmp_path: Path) -> None:
    body = sample_certificate(tmp_path, environment=None, source=None, preprocessing=(), parents=())
    statement = json.loads(export(Subject.of(body), "slsa"))
    provenance = validated(statement)
    assert provenance.run_details.builder.id == "urn:provenance:creator:unsigned"
    assert not provenance.build_definition.HasField("internal_parameters")


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()])
def test_the_dsse_envelope_verifies_with_the_public_key(
    tmp_path: Path, curve: ec.EllipticCurve
) -> None:
    key = ec.generate_private_key(curve)
    subject = signed_subject(tmp_path)
    output = export(subject, "slsa", signing_key=key)
    assert output.count(b"\n") == 1  # one line: a valid .intoto.jsonl line
    document = json.loads(output)
    assert document["payloadType"] == PAYLOAD_TYPE == "application/vnd.in-toto+json"
    public = SSlibKey.from_crypto(key.public_key())
    envelope = Envelope.from_dict(json.loads(output))
    assert list(envelope.verify([public], 1)) == [public.keyid]
    statement = json.loads(envelope.payload)
    validated(statement)
    assert statement == json.loads(export(subject, "slsa"))

    # a changed payload, or another key, fails securesystemslib's verification
    forged = json.loads(output)
    statement["subject"][0]["digest"]["sha256"] = "00" * 32
    forged["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(VerificationError, match="Accepted signatures do not match threshold"):
        Envelope.from_dict(forged).verify([public], 1)
    other = SSlibKey.from_crypto(ec.generate_private_key(curve).public_key())
    other = SSlibKey(public.keyid, other.keytype, other.scheme, other.keyval)
    with pytest.raises(VerificationError, match="Accepted signatures do not match threshold"):
        Envelope.from_dict(json.loads(output)).verify([other], 1)


def test_large_files_are_named_by_shard_digest_and_plain_sha256_when_at_hand(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(os.urandom(3000))
    (folder / "config.json").write_text("{}")
    manifest = manifest_of(folder, shard_size=1024)
    model = ModelArtifact(digest=manifest.root, manifest=manifest)
    body = sample_certificate(tmp_path, model=model)
    weights = next(f for f in manifest.files if f.path == "weights.bin")
    sharded = {"provenanceShardedSha256": weights.digest.removeprefix("sha256:")}

    bare = json.loads(export(Subject.of(body), "slsa"))
    validated(bare)
    assert bare["subject"][1] == {"name": "weights.bin", "digest": sharded}

    at_hand = json.loads(export(Subject.of(body, model_files=folder), "slsa"))
    validated(at_hand)
    plain = hashlib.sha256((folder / "weights.bin").read_bytes()).hexdigest()
    assert at_hand["subject"][1]["digest"] == {**sharded, "sha256": plain}

    (folder / "weights.bin").write_bytes(os.urandom(3000))
    with pytest.raises(IntegrityError, match=r"weights\.bin"):
        export(Subject.of(body, model_files=folder), "slsa")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "provenance", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_command_writes_a_signed_envelope(tmp_path: Path) -> None:
    cert = tmp_path / "certificate.json"
    cert.write_text(to_json(signed_subject(tmp_path).envelope))  # type: ignore[arg-type]
    (tmp_path / "pw").write_text("correct horse\n")
    key = new_signing_key(tmp_path / "dsse.pem", "correct horse")
    result = run_cli(
        "export", str(cert), "--format", "slsa", "-o", "out.intoto.jsonl",
        "--signing-key", "dsse.pem", "--password-file", "pw", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    envelope = Envelope.from_dict(json.loads((tmp_path / "out.intoto.jsonl").read_text()))
    envelope.verify([SSlibKey.from_crypto(key.public_key())], 1)
    validated(json.loads(envelope.payload))

    help_text = run_cli("export", "--help", cwd=tmp_path).stdout
    assert "slsa" in help_text and "in-toto Statement v1, SLSA provenance v1" in help_text

    wrong = run_cli(
        "export", str(cert), "--format", "slsa", "--signing-key", "pw",
        "--password-file", "pw", cwd=tmp_path,
    )  # fmt: skip
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert wrong.stderr.startswith("error: signing key pw cannot be opened")
    assert wrong.stderr.count("\n") == 1


def test_the_validation_is_not_vacuous(tmp_path: Path) -> None:
    statement = json.loads(export(Subject.of(sample_certificate(tmp_path)), "slsa"))
    statement["predicate"]["runDetails"]["metadata"]["startedOn"] = "yesterday"
    with pytest.raises(json_format.ParseError, match="startedOn"):
        validated(statement)
    statement = json.loads(export(Subject.of(sample_certificate(tmp_path)), "slsa"))
    statement["predicate"]["buildDefinition"]["buildtype"] = BUILD_TYPE
    with pytest.raises(json_format.ParseError, match="buildtype"):
        validated(statement)
    statement = json.loads(export(Subject.of(sample_certificate(tmp_path)), "slsa"))
    statement["subject"] = []
    with pytest.raises(ValueError, match="At least one subject required"):
        validated(statement)


def test_a_captured_certificate_round_trips_with_its_model_files(tmp_path: Path) -> None:
    """A real certificate from provenance.track (the README's capture block), exported signed
    with its model files at hand, verified and read back by the ecosystem's libraries."""
    pd = pytest.importorskip("pandas")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import provenance

    load_iris(as_frame=True).frame.to_csv(tmp_path / "iris.csv", index=False)
    with provenance.track("Model Alpha", output_dir=tmp_path / "alpha") as run:
        frame = run.step(lambda f, n=100: f.head(n))(pd.read_csv(tmp_path / "iris.csv"))
        run.log_dataset(tmp_path / "iris.csv", role="train", subset=frame.index)
        run.log_params(C=0.5)
        model = LogisticRegression(C=0.5).fit(frame.drop(columns="target"), frame["target"])
        run.log_metrics(accuracy=float(model.score(frame.drop(columns="target"), frame["target"])))
        run.log_model(model)
    cert = run.certificate
    key = ec.generate_private_key(ec.SECP256R1())
    model_file = tmp_path / "alpha" / "model.pkl"
    output = export(Subject.of(cert, model_files=model_file), "slsa", signing_key=key)
    envelope = Envelope.from_dict(json.loads(output))
    envelope.verify([SSlibKey.from_crypto(key.public_key())], 1)
    statement = json.loads(envelope.payload)
    provenance_ = validated(statement)
    assert statement["subject"] == [
        {
            "name": "model.pkl",
            "digest": {"sha256": hashlib.sha256(model_file.read_bytes()).hexdigest()},
        }
    ]
    deps = {d.name for d in provenance_.build_definition.resolved_dependencies}
    assert "dataset:iris.csv" in deps
    environment = json_format.MessageToDict(provenance_.build_definition.internal_parameters)
    assert environment["environment"]["packages"]["scikit-learn"]
    assert provenance_.run_details.metadata.invocation_id == cert.digest_text


def test_a_model_without_files_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    manifest = manifest_of(folder)
    body = sample_certificate(
        tmp_path, model=ModelArtifact(digest=manifest.root, manifest=manifest)
    )
    with pytest.raises(CertificateError) as info:
        export(Subject.of(body), "slsa")
    assert str(info.value) == (
        "the certificate's model manifest lists no files; an in-toto Statement needs a subject"
    )
