"""`provenance key new|list|show` as a user runs them (no services needed)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

PROVENANCE = Path(sys.executable).parent / "provenance"


def run(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PROVENANCE_STATE_DIR": str(cwd / "state"), **extra}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(
        [str(PROVENANCE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_key_new_show_list_and_no_overwrite(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("correct horse battery\n")
    made = run("key", "new", "--out", "me.json", "--password-file", "pw", "--json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    address = json.loads(made.stdout)["address"]
    keyfile = tmp_path / "me.json"
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    before = keyfile.read_bytes()

    again = run("key", "new", "--out", "me.json", "--password-file", "pw", cwd=tmp_path)
    assert (again.returncode, again.stdout) == (1, "")
    assert again.stderr == "error: me.json already exists; a keystore is never overwritten\n"
    assert keyfile.read_bytes() == before

    shown = run("key", "show", "me.json", cwd=tmp_path)
    assert (shown.returncode, shown.stdout) == (0, address + "\n")
    checked = run("key", "show", "me.json", "--check", "--password-file", "pw", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    wrong = run("key", "show", "me.json", "--check", cwd=tmp_path, PROVENANCE_KEYSTORE_PASSWORD="x")
    assert wrong.returncode == 1
    assert wrong.stderr == "error: cannot decrypt keystore me.json: MAC mismatch\n"

    in_state = run("key", "new", "--json", cwd=tmp_path, PROVENANCE_KEYSTORE_PASSWORD="password-2")
    assert in_state.returncode == 0, in_state.stderr
    second = json.loads(in_state.stdout)
    assert second["path"] == str(tmp_path / "state" / "keys" / f"{second['address']}.json")
    listed = run("key", "list", "--json", cwd=tmp_path)
    assert json.loads(listed.stdout) == [second]
    # the private key is never printed
    key_hex = json.loads(keyfile.read_text())["crypto"]["ciphertext"]
    assert key_hex not in made.stdout + shown.stdout + checked.stdout


def test_key_new_without_a_password_source_writes_nothing(tmp_path: Path) -> None:
    result = run("key", "new", "--out", "me.json", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "error: a new keystore needs a password: --password-file or PROVENANCE_KEYSTORE_PASSWORD\n"
    )
    short = run("key", "new", "--out", "me.json", cwd=tmp_path, PROVENANCE_KEYSTORE_PASSWORD="abc")
    assert short.stderr == "error: the keystore password must have at least 8 characters\n"
    assert not (tmp_path / "me.json").exists()
    assert not (tmp_path / "state").exists()


def test_role_and_node_help_name_the_commands(tmp_path: Path) -> None:
    for group, commands in (("role", ("grant", "revoke", "list")), ("node", ("authorize",))):
        result = run(group, "--help", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert all(c in result.stdout for c in commands)
    bad = run("role", "grant", "superuser", "0x" + "11" * 20, cwd=tmp_path)
    assert bad.returncode == 2
    for group, command in (("role", "grant"), ("node", "authorize")):
        args = [group, command, "0x" + "ab" * 32, "alice"] if group == "node" else []
        args = args or [group, command, "registrant", "alice"]
        nobody = run(*args, cwd=tmp_path)
        assert (nobody.returncode, nobody.stdout) == (1, "")
        assert nobody.stderr == (
            "error: 'alice' is neither an address (0x + 40 hex digits) nor a keystore file\n"
        )
