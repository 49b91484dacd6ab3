"""`provenance data hash / verify / prove` on a CSV without a header row: refused until the
user says which it is, then hashed with every row and verified and proven the same way."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from provenance.capture import track
from provenance.manifest import open_table
from tests.unit.cli_in_process import Main, in_process_main


@pytest.fixture
def main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Main:
    """``provenance.cli.main`` in this process, with its state in the working folder."""
    run = in_process_main(monkeypatch, capsys)

    def call(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return run(*args, cwd=cwd, env={"PROVENANCE_STATE_DIR": str(cwd / "state")})

    return call


def test_data_hash_of_a_headerless_csv_needs_the_users_word(tmp_path: Path, main: Main) -> None:
    (tmp_path / "iris.csv").write_text("5.1,3.5,setosa\n4.9,3.0,setosa\n6.2,2.9,virginica\n")
    refused = main("data", "hash", "--table", "iris.csv", cwd=tmp_path)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == (
        "error: iris.csv: the first row (5.1,3.5,setosa) reads as data, not column names: say "
        "whether it is a header (header=True, --header) or the file has none (header=False, "
        "--no-header)\n"
    )
    hashed = main("data", "hash", "--no-header", "--json", "iris.csv", cwd=tmp_path)
    assert hashed.returncode == 0, hashed.stderr
    document = json.loads(hashed.stdout)
    assert document["header"] is False and document["rows"] == 3
    manifest = open_table(tmp_path / "iris.csv", header=False).manifest()
    assert document == manifest.model_dump(mode="json", exclude_none=True)
    printed = main("data", "hash", "--no-header", "iris.csv", cwd=tmp_path)
    assert printed.stdout == f"{manifest.digest}  iris.csv (3 rows, root {manifest.root})\n"
    named = main("data", "hash", "--header", "--json", "iris.csv", cwd=tmp_path)
    assert json.loads(named.stdout)["rows"] == 2 and "header" not in json.loads(named.stdout)
    parquet = main("data", "hash", "--no-header", "m.parquet", cwd=tmp_path)
    assert parquet.returncode == 1 and parquet.stderr == (
        "error: only a CSV file has a header row to read or not (header=, --header/--no-header)\n"
    )


def test_a_headerless_dataset_is_verified_and_proven_from_its_certificate(
    tmp_path: Path, main: Main
) -> None:
    csv = tmp_path / "iris.csv"
    csv.write_text("5.1,3.5,setosa\n4.9,3.0,setosa\n6.2,2.9,virginica\n")
    with track("Iris", output_dir=tmp_path / "out", environment=False, source_dir=tmp_path) as run:
        run.log_dataset(csv, header=False, subset=[2, 0])
        run.log_model(csv)
    assert run.path is not None
    cert = str(run.path)
    ok = main("data", "verify", "iris.csv", "-c", cert, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "2 of 3 rows selected by indices" in ok.stdout
    proved = main("data", "prove", "iris.csv", "-c", cert, "--row", "1", cwd=tmp_path)
    assert proved.returncode == 0, proved.stderr
    proof = json.loads(proved.stdout)
    assert proof["cells"] == ["5.1", "3.5", "setosa"] and proof["source_row"] == 0
    assert proof["manifest"]["header"] is False
