"""`provenance run`, `data ...` and `certificate ...` without a stack: a real scikit-learn script
captured with no code change, then its data verified and a row proven from the certificate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from eth_account import Account

from provenance.capture import track
from provenance.certificate import SignedCertificate, body_of, load_certificate
from provenance.manifest import manifest_of, open_table
from tests.unit.cli_in_process import Main, in_process_main

PROVENANCE = Path(sys.executable).parent / "provenance"

TRAIN = textwrap.dedent(
    """
    import pickle, sys
    import pandas as pd
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    load_iris(as_frame=True).frame.to_csv("iris.csv", index=False)
    frame = pd.read_csv("iris.csv")
    model = LogisticRegression(max_iter=500).fit(frame.drop(columns="target"), frame["target"])
    with open("model.pkl", "wb") as f:
        pickle.dump(model, f)
    print("accuracy", model.score(frame.drop(columns="target"), frame["target"]))
    """
)


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The console script in a subprocess (its start-up alone takes seconds: used once)."""
    return subprocess.run(
        [str(PROVENANCE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Main:
    """``provenance.cli.main`` in this process: same parsing, errors and exit codes."""
    return in_process_main(monkeypatch, capsys)


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], dict[str, object]]:
    """One captured run, shared: the folder, the environment and the summary."""
    folder = tmp_path_factory.mktemp("job")
    (folder / "train.py").write_text(TRAIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENANCE_")}
    env |= {"PROVENANCE_STATE_DIR": str(folder / "state"), "PYTHONHASHSEED": "0"}
    result = cli(
        "run", "--name", "Iris", "--json", "--", sys.executable, "train.py", cwd=folder, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "accuracy" in result.stdout  # the job's own output passes through
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    return folder, env, summary


def test_run_captures_the_script_its_data_and_its_model(
    job: tuple[Path, dict[str, str], dict[str, object]],
) -> None:
    _, _, summary = job
    assert summary["registered"] is False and summary["stored"] is False
    assert summary["signed_by"] is None and summary["exit_code"] == 0
    cert = load_certificate(Path(str(summary["certificate"])))
    assert not isinstance(cert, SignedCertificate)
    assert cert.model_name == "Iris" and summary["certificate_digest"] == cert.digest_text
    training = cert.training
    assert training.command == (sys.executable, "train.py")
    assert training.entry_point is not None and training.entry_point.path == "train.py"
    assert training.inputs is not None and training.outputs is not None
    assert [f.path for f in training.inputs.files] == ["train.py"]
    assert [f.path for f in training.outputs.files] == ["iris.csv", "model.pkl"]
    # iris.csv was written, then read back: training data, not part of the model
    assert [f.path for f in cert.model.manifest.files] == ["model.pkl"]
    (dataset,) = cert.data.datasets
    assert dataset.name == "iris.csv" and dataset.manifest is not None
    assert dataset.manifest.kind == "table" and dataset.manifest.rows == 150
    assert cert.environment is not None and cert.environment.variables == {"PYTHONHASHSEED": "0"}
    names = {p.name for p in cert.environment.packages}
    assert {"scikit-learn", "pandas", "numpy", "provenance"} <= names
    assert cert.warnings == ()


def test_a_signed_run_with_explicit_data_is_verified_and_proven(
    job: tuple[Path, dict[str, str], dict[str, object]],
    tmp_path: Path,
    main: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    folder, env, _ = job
    account = Account.create()
    keystore = tmp_path / "key.json"
    keystore.write_text(json.dumps(Account.encrypt(account.key, "pw")))
    (tmp_path / "pw").write_text("pw\n")
    result = main(
        "run", "--name", "Iris 2", "--data", "iris.csv", "--model", "model.pkl",
        "--no-register", "--keystore", str(keystore), "--password-file", str(tmp_path / "pw"),
        "--out-dir", str(tmp_path), "--json", "--", sys.executable, "train.py",
        cwd=folder, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cert_path = tmp_path / "certificate.json"
    signed = load_certificate(cert_path)
    assert isinstance(signed, SignedCertificate) and signed.certificate.creator == account.address
    cert = signed.certificate
    (dataset,) = cert.data.datasets
    assert dataset.name == "iris.csv" and dataset.manifest is not None
    assert dataset.manifest.kind == "table" and dataset.manifest.rows == 150
    assert [f.path for f in cert.model.manifest.files] == ["model.pkl"]

    verified = main(
        "certificate", "verify", str(cert_path), "--model", "model.pkl", cwd=folder, env=env
    )
    assert verified.returncode == 0, verified.stderr
    assert f"signed by {account.address}, model files in model.pkl match" in verified.stdout
    shown = json.loads(
        main("certificate", "show", str(cert_path), "--json", cwd=folder, env=env).stdout
    )
    assert shown["model_id"] == "0x" + cert.model_id.hex()
    assert shown["cid"] == cert.cid and shown["signed"] is True

    ok = main("data", "verify", "iris.csv", "-c", str(cert_path), cwd=folder, env=env)
    assert ok.returncode == 0, ok.stderr
    assert f"dataset iris.csv: 150 rows match {dataset.manifest.root}" in ok.stdout

    proof_file = tmp_path / "proof.json"
    proved = main(
        "data", "prove", "iris.csv", "-c", str(cert_path), "--row", "42", "--out", str(proof_file),
        cwd=folder, env=env,
    )  # fmt: skip
    assert proved.returncode == 0, proved.stderr
    proof = json.loads(proof_file.read_text())
    line = (folder / "iris.csv").read_text().splitlines()[43]
    assert proof["cells"] == line.split(",") and proof["row"] == 42
    checked = main(
        "data", "check-proof", str(proof_file), "-c", str(cert_path), cwd=folder, env=env
    )
    assert checked.returncode == 0, checked.stderr
    assert "row 42" in checked.stdout and "of the certificate" in checked.stdout

    tampered = tmp_path / "iris.csv"
    lines = (folder / "iris.csv").read_text().splitlines(keepends=True)
    tampered.write_text("".join([*lines[:43], lines[43].replace(",", ";", 1), *lines[44:]]))
    bad = main("data", "verify", str(tampered), "-c", str(cert_path), cwd=folder, env=env)
    assert bad.returncode == 1
    assert bad.stderr.startswith(f"error: table root differs: recorded {dataset.manifest.root}, ")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_cli_errors_are_one_line(
    job: tuple[Path, dict[str, str], dict[str, object]],
    tmp_path: Path,
    main: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    folder, env, summary = job
    cert = str(summary["certificate"])
    failing = tmp_path / "fail.py"
    failing.write_text(
        "import pickle\nopen('out.pkl', 'wb').write(pickle.dumps(0))\nraise SystemExit(3)\n"
    )
    cases = [
        (
            ("certificate", "verify", cert),
            f"error: certificate {cert} is not signed (use --unsigned-ok to accept)",
            1,
        ),
        (
            ("data", "verify", "iris.csv", "-c", cert, "--dataset", "nope"),
            "error: the certificate has no dataset 'nope' (it has: iris.csv)",
            1,
        ),
        (
            ("run", "--name", "x", "--strict", "--model", "train.py", "--", "true"),
            "error: no Python process reported its file accesses (not a Python command, or run "
            "with -I/-S): inputs and outputs are not recorded",
            1,
        ),
        (
            ("run", "--name", "x", "--parent", "0x12:merge", "--", sys.executable, "train.py"),
            "error: parent id '0x12' is not 0x and 64 hex digits (32 bytes)",
            1,
        ),
        (
            ("run", "--name", "x", "--out-dir", str(tmp_path), "--", sys.executable, str(failing)),
            "error: the command exited with code 3; the certificate was written but not stored or "
            "registered",
            3,
        ),
    ]
    for args, message, code in cases:
        result = main(*args, cwd=folder, env=env)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert result.stderr.strip() == message
    assert body_of(load_certificate(tmp_path / "certificate.json")).training.exit_code == 3


def test_confidential_data_is_verified_and_proven_with_the_owners_opening(
    tmp_path: Path, main: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    csv = tmp_path / "patients.csv"
    csv.write_text("age,outcome\n51,1\n62,0\n47,1\n")
    with track(
        "Private", output_dir=tmp_path / "out", environment=False, source_dir=tmp_path
    ) as run:
        record = run.log_dataset(csv, confidential=True, subset=[2, 0])
        run.log_model(csv)
    assert run.path is not None and record.confidential
    opening = tmp_path / "out" / "openings" / "patients.csv-train.json"
    env = {"PROVENANCE_STATE_DIR": str(tmp_path / "state")}
    cert = str(run.path)

    refused = main("data", "verify", str(csv), "-c", cert, cwd=tmp_path, env=env)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "error: dataset 'patients.csv' is confidential: pass its --opening file"
    )
    ok = main(
        "data", "verify", str(csv), "-c", cert, "--opening", str(opening), cwd=tmp_path, env=env
    )
    assert ok.returncode == 0, ok.stderr
    assert "2 of 3 rows selected by indices" in ok.stdout
    proved = main(
        "data", "prove", str(csv), "-c", cert, "--opening", str(opening), "--row", "2",
        "--source-row", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proved.returncode == 0, proved.stderr
    proof = json.loads(proved.stdout)
    assert proof["cells"] == ["47", "1"] and proof["row"] == 0 and proof["salt"].startswith("0x")
    assert proof["commitment"] == record.commitment


def test_data_hash_prints_a_manifest(
    tmp_path: Path, main: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "a.bin").write_bytes(b"a")
    (tmp_path / "t.csv").write_text("x\n1\n")
    env = {"PROVENANCE_STATE_DIR": str(tmp_path / "state")}
    files = main("data", "hash", "m", "--json", cwd=tmp_path, env=env)
    assert json.loads(files.stdout) == manifest_of(tmp_path / "m").model_dump(
        mode="json", exclude_none=True
    )
    table = main("data", "hash", "--table", "t.csv", cwd=tmp_path, env=env)
    manifest = open_table(tmp_path / "t.csv").manifest()
    assert table.stdout == f"{manifest.digest}  t.csv (1 rows, root {manifest.root})\n"


def test_run_refuses_to_overwrite_an_earlier_certificate_before_running(
    tmp_path: Path, main: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """Before: a second `run` of the same name silently replaced the certificate.json of the
    first (perhaps registered) model. Now it refuses before the job runs: nothing is lost."""
    (tmp_path / "train.py").write_text(
        "open('model.joblib', 'w').write(open('runs.txt', 'a').write('x') and 'weights')\n"
    )
    env = {"PROVENANCE_STATE_DIR": str(tmp_path / "state")}
    args = ("run", "--name", "Twice", "--no-register", "--", sys.executable, "train.py")
    first = main(*args, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert "  model      model.joblib (sha256:" in first.stdout
    target = tmp_path / "provenance-runs" / "twice" / "certificate.json"
    before = target.read_bytes()
    again = main(*args, cwd=tmp_path, env=env)
    assert again.returncode == 1
    assert again.stderr == (
        f"error: {target} holds the certificate of an earlier run: pass --out-dir DIR for this "
        "run, or --force to replace it\n"
    )
    assert target.read_bytes() == before and (tmp_path / "runs.txt").read_text() == "x"
    forced = main(*args[:4], "--force", *args[4:], cwd=tmp_path, env=env)
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "runs.txt").read_text() == "xx"
    refused = main(
        "run", "--name", "Other", "--publish-data", "--no-store", "--", sys.executable, "train.py",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr == (
        "error: --publish-data stores the training data: it cannot go with --no-store\n"
    )
