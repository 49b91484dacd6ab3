"""Which backend the configuration selects, and the `provenance ipfs` commands on the local
store (the kubo side runs in tests/integration/test_ipfs_storage.py)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from provenance.config import load_config
from provenance.storage import Gateway, Kubo, LocalStore, cid_of_path, open_storage, storage_kind

PROVENANCE = Path(sys.executable).parent / "provenance"


KINDS = {"kubo": Kubo, "gateway": Gateway, "local": LocalStore}


@pytest.mark.parametrize(
    ("toml", "env", "backend"),
    [
        ("", {}, "local"),
        ('[ipfs]\napi = "http://127.0.0.1:5001"\n', {}, "kubo"),
        ("", {"PROVENANCE_IPFS_API": "http://ipfs.example.invalid:5001"}, "kubo"),
        ('[ipfs]\ngateway = "http://127.0.0.1:8081"\n', {}, "gateway"),
        ("", {"PROVENANCE_IPFS_GATEWAY": "http://127.0.0.1:8081"}, "gateway"),
        ('[ipfs]\napi = "http://127.0.0.1:5001"\ngateway = "http://127.0.0.1:8081"\n', {}, "kubo"),
        ('[ipfs]\napi = "http://127.0.0.1:5001"\nbackend = "local"\n', {}, "local"),
        ("", {"PROVENANCE_IPFS_BACKEND": "kubo"}, "kubo"),
    ],
)
def test_backend_rule(tmp_path: Path, toml: str, env: dict[str, str], backend: str) -> None:
    (tmp_path / "provenance.toml").write_text(f'state_dir = "state"\n{toml}')
    config = load_config(env, cwd=tmp_path)
    assert storage_kind(config) == backend
    with open_storage(config) as storage:
        assert type(storage) is KINDS[backend]


def test_auto_uses_the_kubo_the_local_stack_runs(tmp_path: Path) -> None:
    (tmp_path / "provenance.toml").write_text(
        'state_dir = "state"\n[ipfs]\ngateway = "http://127.0.0.1:8081"\n'
    )
    config = load_config({}, cwd=tmp_path)
    assert storage_kind(config, lambda: True) == "kubo"  # before an explicit gateway
    with open_storage(config, stack_runs_kubo=True) as storage:
        assert isinstance(storage, Kubo)
    forced = load_config({"PROVENANCE_IPFS_BACKEND": "local"}, cwd=tmp_path)
    with open_storage(forced, stack_runs_kubo=True) as storage:
        assert isinstance(storage, LocalStore)


def test_the_stack_is_asked_only_when_the_config_leaves_it_open(tmp_path: Path) -> None:
    (tmp_path / "provenance.toml").write_text(
        'state_dir = "state"\n[ipfs]\napi = "http://127.0.0.1:5001"\n'
    )

    def never() -> bool:
        raise AssertionError("the stack was asked")

    assert storage_kind(load_config({}, cwd=tmp_path), never) == "kubo"
    assert storage_kind(load_config({"PROVENANCE_IPFS_BACKEND": "local"}, cwd=tmp_path), never) == (
        "local"
    )


def test_local_store_folder(tmp_path: Path) -> None:
    (tmp_path / "provenance.toml").write_text('state_dir = "state"\n')
    assert load_config({}, cwd=tmp_path).ipfs_store == tmp_path / "state" / "blocks"
    (tmp_path / "provenance.toml").write_text('state_dir = "state"\n[ipfs]\nstore = "cas"\n')
    assert load_config({}, cwd=tmp_path).ipfs_store == tmp_path / "cas"
    env = {"PROVENANCE_IPFS_STORE": str(tmp_path / "elsewhere")}
    assert load_config(env, cwd=tmp_path).ipfs_store == tmp_path / "elsewhere"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PROVENANCE_STATE_DIR": str(cwd / "state")}
    return subprocess.run(
        [str(PROVENANCE), "ipfs", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_cli_add_get_export_import_on_the_local_store(tmp_path: Path) -> None:
    src = tmp_path / "dataset"
    src.mkdir()
    (src / "rows.bin").write_bytes(random.Random(6).randbytes(300_000))
    (src / "labels.txt").write_text("cat\ndog\n")
    expected = cid_of_path(src)

    hashed = run("add", "--only-hash", str(src), cwd=tmp_path)
    assert (hashed.returncode, hashed.stdout) == (0, expected + "\n")
    assert not (tmp_path / "state").exists()  # --only-hash stores nothing

    added = run("add", "--json", str(src), cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {
        "cid": expected,
        "path": str(src),
        "size": 300_000 + 8,
        "stored_in": {"backend": "local", "location": str(tmp_path / "state" / "blocks")},
    }

    got = run("get", expected, "-o", str(tmp_path / "copy"), cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "copy" / "labels.txt").read_text() == "cat\ndog\n"

    exported = run("export", expected, "-o", str(tmp_path / "d.car"), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    imported = run("import", str(tmp_path / "d.car"), cwd=elsewhere)
    assert (imported.returncode, imported.stdout) == (0, expected + "\n")
    assert LocalStore(elsewhere / "state" / "blocks").pins() == {expected}


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    missing = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    result = run("get", missing, "-o", str(tmp_path / "x"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        f"error: block {missing} is not in the local store {tmp_path / 'state' / 'blocks'}\n"
    )
    result = run("get", "nonsense", "-o", str(tmp_path / "x"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: 'nonsense' is not a CID: ")
