"""Capture against the real stack: a scikit-learn training run, through the API and through
`provenance run`, yields a signed certificate that is stored in kubo and registered on anvil."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from eth_account import Account
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from web3 import Web3

from provenance.capture import track
from provenance.certificate import (
    SignedCertificate,
    load_certificate,
    parse_certificate,
    verify_certificate_signature,
)
from provenance.chain.client import connect
from provenance.chain.types import Status
from provenance.manifest import open_table, verify_subset
from provenance.registration import Parent, Relation
from provenance.stack import Stack
from provenance.storage import Kubo

from .chainutil import ADMIN, ALICE, deploy_registry

pytestmark = pytest.mark.integration

PROVENANCE = Path(sys.executable).parent / "provenance"


def run_cli(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROVENANCE), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def w3(stack: Stack) -> Web3:
    return connect(stack.config.chain.rpc_url)


def drop_outliers(frame: pd.DataFrame, z: float = 3.0) -> pd.DataFrame:
    numeric = frame.drop(columns="target")
    keep = ((numeric - numeric.mean()).abs() <= z * numeric.std()).all(axis=1)
    return frame[keep]


def test_the_api_certifies_stores_and_registers_a_scikit_learn_model(
    stack: Stack, w3: Web3, tmp_path: Path
) -> None:
    registry = deploy_registry(w3, tmp_path)
    storage = Kubo(stack.config.ipfs.api)
    csv = tmp_path / "iris.csv"
    load_iris(as_frame=True).frame.to_csv(csv, index=False)

    with track(
        "Model Alpha",
        output_dir=tmp_path / "alpha",
        signer=ADMIN,
        storage=storage,
        registry=registry,
        source_dir=tmp_path,
    ) as alpha:
        raw = pd.read_csv(csv)
        clean = alpha.step(drop_outliers)(raw, z=2.5)
        alpha.log_dataset(csv, role="train", subset=clean.index, store=True)
        pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=0.5))])
        alpha.log_params(C=0.5)
        alpha.log_seeds(sklearn=0)
        pipe.fit(clean.drop(columns="target"), clean["target"])
        alpha.log_metrics(accuracy=float(pipe.score(clean.drop(columns="target"), clean["target"])))
        alpha.log_model(pipe)

    cert, signed = alpha.certificate, alpha.signed
    assert cert is not None and signed is not None and alpha.registered is not None
    verify_certificate_signature(signed)
    assert cert.creator == ADMIN.address and alpha.registered.id == cert.model_id
    record = registry.record(cert.model_id)
    assert record.status is Status.ACTIVE and record.registrant == ADMIN.address
    event = registry.registration_event(cert.model_id)
    assert event is not None
    assert bytes(event.args["certificateDigest"]) == cert.digest
    assert bytes(event.args["modelDigest"]).hex() == cert.model.digest[7:]
    assert bytes(event.args["dataCommitment"]).hex() == cert.data.commitment[7:]
    # everything published is in IPFS, byte for byte
    assert storage.get_bytes(cert.cid) == cert.canonical_bytes()
    assert alpha.envelope_cid is not None
    envelope = parse_certificate(storage.get_bytes(alpha.envelope_cid))
    assert isinstance(envelope, SignedCertificate) and envelope == signed
    assert cert.model.url is not None
    model_file = tmp_path / "alpha" / "model.pkl"
    assert storage.get_bytes(cert.model.url.removeprefix("ipfs://")) == model_file.read_bytes()
    (dataset,) = cert.data.datasets
    assert dataset.url is not None and cert.data.url == dataset.url
    assert storage.get_bytes(dataset.url.removeprefix("ipfs://")) == csv.read_bytes()
    # the subset is what the step kept, and it verifies from the source
    assert dataset.manifest is not None and dataset.subset is not None
    assert dataset.manifest.kind == "table" and dataset.manifest.rows == len(clean) < 150
    verify_subset(dataset.manifest, dataset.subset, open_table(csv))
    (step,) = cert.preprocessing
    assert step.arguments == {"z": 2.5} and "pandas" in step.libraries
    assert cert.model.estimator is not None
    assert [s.type.rsplit(".", 1)[1] for s in cert.model.estimator.steps] == [
        "StandardScaler",
        "LogisticRegression",
    ]

    # a child, fine-tuned from Alpha, names its parent and is linked on chain
    frame = load_breast_cancer(as_frame=True).frame
    with track(
        "Model Beta",
        parents=[(cert.model_id, "fine-tune", "Model Alpha")],
        output_dir=tmp_path / "beta",
        signer=ADMIN,
        storage=storage,
        registry=registry,
        source_dir=tmp_path,
    ) as beta:
        beta.log_dataset(frame, role="train")
        child = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=500))])
        beta.log_model(child.fit(frame.drop(columns="target"), frame["target"]))
    assert beta.certificate is not None
    assert registry.parents(beta.certificate.model_id) == [
        Parent(cert.model_id, Relation.FINE_TUNE)
    ]
    assert beta.certificate.parents[0].name == "Model Alpha"


TRAIN = textwrap.dedent(
    """
    import pickle
    import pandas as pd
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier

    load_wine(as_frame=True).frame.to_csv("wine.csv", index=False)
    frame = pd.read_csv("wine.csv")
    model = RandomForestClassifier(n_estimators=10, random_state=0)
    model.fit(frame.drop(columns="target"), frame["target"])
    with open("model.pkl", "wb") as f:
        pickle.dump(model, f)
    """
)


def test_provenance_run_certifies_a_script_and_registers_it(
    stack: Stack, cli_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "train.py").write_text(TRAIN)

    def run(name: str, *extra: str) -> dict[str, object]:
        result = run_cli(
            "run", "--name", name, "--json", *extra, "--", sys.executable, "train.py",
            env=cli_env, cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        summary: dict[str, object] = json.loads(result.stdout)
        return summary

    alpha = run("Wine Alpha")
    beta = run("Wine Beta", "--parent", f"{alpha['model_id']}:distillation")
    for summary in (alpha, beta):
        assert summary["registered"] is True and summary["stored"] is True
        assert summary["signed_by"] == ADMIN.address and summary["warnings"] == []

    signed = load_certificate(Path(str(beta["certificate"])))
    assert isinstance(signed, SignedCertificate)
    verify_certificate_signature(signed)
    cert = signed.certificate
    assert cert.parents[0].id == alpha["model_id"] and cert.parents[0].relation == "distillation"
    assert cert.training.inputs is not None and cert.training.outputs is not None
    assert [f.path for f in cert.training.inputs.files] == ["train.py"]
    assert [f.path for f in cert.training.outputs.files] == ["model.pkl", "wine.csv"]
    assert [f.path for f in cert.model.manifest.files] == ["model.pkl"]
    assert [d.name for d in cert.data.datasets] == ["wine.csv"]
    assert cert.training.exit_code == 0 and cert.environment is not None

    shown = run_cli("show", str(beta["model_id"]), "--json", env=cli_env)
    assert shown.returncode == 0, shown.stderr
    on_chain = json.loads(shown.stdout)
    assert on_chain["certificate_digest"] == cert.digest_text
    assert on_chain["model_digest"] == cert.model.digest
    assert on_chain["parents"] == [
        {"id": alpha["model_id"], "relation": "distillation", "name": "Wine Alpha"}
    ]
    storage = Kubo(stack.config.ipfs.api)
    assert storage.get_bytes(str(beta["cid"])) == cert.canonical_bytes()

    verified = run_cli(
        "data", "verify", str(tmp_path / "wine.csv"), "-c", str(beta["certificate"]), env=cli_env
    )
    assert verified.returncode == 0, verified.stderr
    assert "178 rows match" in verified.stdout


def test_register_accepts_a_signed_certificate_and_refuses_a_forged_one(
    stack: Stack, cli_env: dict[str, str], tmp_path: Path
) -> None:
    with track(
        "Signed elsewhere",
        output_dir=tmp_path,
        signer=ALICE,
        environment=False,
        source_dir=tmp_path,
    ) as run:
        run.log_model(Path(__file__))
    assert run.signed is not None and run.path is not None
    # the id binds its registrant: the sender (ADMIN) may not register Alice's certificate
    refused = run_cli("register", str(run.path), "--json", env=cli_env)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == (
        f"error: certificate {run.path} names creator {ALICE.address} but the sender is "
        f"{ADMIN.address}: register it with the creator's keystore (--keystore or "
        "PROVENANCE_KEYSTORE), so the model id binds the creator\n"
    )
    keystore, password = tmp_path / "alice.json", tmp_path / "password"
    keystore.write_text(json.dumps(Account.encrypt(ALICE.key, "pw", iterations=2)))
    password.write_text("pw")
    with_key = ["--keystore", str(keystore), "--password-file", str(password)]
    done = run_cli("register", str(run.path), "--json", *with_key, env=cli_env)
    assert done.returncode == 0, done.stderr
    registered = json.loads(done.stdout)
    assert registered["id"] == "0x" + run.signed.certificate.model_id.hex()
    assert registered["certificate_digest"] == run.signed.certificate.digest_text
    assert registered["registrant"] == ALICE.address  # the creator
    # register stored the certificate first (before: never, so the model could never be
    # verified by its id), and the model is verified by its id
    assert registered["cid"] == run.signed.certificate.cid and registered["storage"] == "kubo"
    kubo = Kubo(stack.config.ipfs.api)
    assert kubo.get_bytes(run.signed.certificate.cid) == run.signed.certificate.canonical_bytes()
    verified = run_cli("verify", registered["id"], "--fetch-timeout", "5", env=cli_env)
    assert verified.returncode == 0, (verified.stdout, verified.stderr)

    document = json.loads(run.path.read_text())
    document["certificate"]["model_name"] = "Forged"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(document))
    refused = run_cli("register", str(forged), env=cli_env)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: the certificate signature recovers to 0x")
    assert refused.stderr.strip().endswith(f"not to its creator {ALICE.address}")


def test_publish_stores_a_certificate_its_model_and_public_data(
    stack: Stack, cli_env: dict[str, str], tmp_path: Path
) -> None:
    csv = tmp_path / "train.csv"
    csv.write_text("a,b\n1,2\n3,4\n")
    model = tmp_path / "model.joblib"
    model.write_bytes(b"weights")
    with track(
        "Published later", output_dir=tmp_path / "out", signer=ALICE, environment=False,
        source_dir=tmp_path,
    ) as run:  # fmt: skip
        run.log_dataset(csv)
        run.log_model(model)
    assert run.signed is not None and run.path is not None
    cert = run.signed.certificate
    done = run_cli(
        "publish", str(run.path), "--model-files", str(model), "--data", str(csv), "--json",
        env=cli_env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["cid"] == cert.cid and result["storage"] == "kubo"
    assert result["envelope_cid"] is not None and result["model_cid"] is not None
    kubo = Kubo(stack.config.ipfs.api)
    assert kubo.get_bytes(cert.cid) == cert.canonical_bytes()
    assert load_certificate_bytes(kubo.get_bytes(result["envelope_cid"])) == run.signed
    assert kubo.get_bytes(result["model_cid"]) == b"weights"
    assert kubo.get_bytes(result["data_cids"]["train.csv"]) == csv.read_bytes()
    text = run_cli("publish", str(run.path), env=cli_env)
    assert text.returncode == 0, text.stderr
    assert f"  certificate  ipfs://{cert.cid}" in text.stdout
    # the model files must be the certified ones
    other = tmp_path / "other.joblib"
    other.write_bytes(b"trojan")
    refused = run_cli("publish", str(run.path), "--model-files", str(other), env=cli_env)
    assert refused.returncode == 1
    assert refused.stderr.strip().endswith(
        f"the certificate records {cert.model.digest}: not the certified model"
    )
    assert len(refused.stderr.strip().splitlines()) == 1


def load_certificate_bytes(data: bytes) -> object:
    return parse_certificate(json.loads(data), "stored envelope")
