"""`revoke` asks before a permanent act; `show` prints names, UTC times and the reason text
(issue 15 papercuts). No services: the refusal comes before any is asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from provenance.cli import record_view
from provenance.errors import ConfigError

PROVENANCE = Path(sys.executable).parent / "provenance"


def test_without_a_terminal_and_without_yes_revoke_refuses_in_one_line(tmp_path: Path) -> None:
    # the config names an RPC where nothing listens: the refusal must come first
    (tmp_path / "provenance.toml").write_text('[chain]\nrpc_url = "http://127.0.0.1:9"\n')
    done = subprocess.run(
        [str(PROVENANCE), "revoke", "0x" + "ab" * 32, "--reason", "poisoned rows"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == f"error: {record_view.NOT_CONFIRMED}"
    assert "Traceback" not in done.stderr


def test_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    record_view.confirm_revocation("0x12", "why", yes=True)  # nothing asked
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    with pytest.raises(ConfigError) as caught:
        record_view.confirm_revocation("0x12", "why", yes=False)
    assert str(caught.value) == (
        "revoking is permanent and there is no terminal to confirm it on: add --yes to revoke"
    )
    asked: list[str] = []
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(typer, "confirm", lambda q, default: asked.append(q) or False)
    with pytest.raises(typer.Exit):
        record_view.confirm_revocation("0x12", "poisoned\nrows", yes=False)
    assert asked == [
        "Revoke model 0x12 (reason: 'poisoned\\nrows')? It and every descendant will fail "
        "verification; this cannot be undone"
    ]
    monkeypatch.setattr(typer, "confirm", lambda q, default: True)
    record_view.confirm_revocation("0x12", None, yes=False)


def test_a_reason_longer_than_the_limit_is_refused_before_anything(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(PROVENANCE), "revoke", "0x" + "ab" * 32, "--reason", "x" * 20_000, "--yes"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: the reason has 20000 bytes; at most 16384: store a longer report elsewhere and "
        "give its sha256: digest"
    )


def test_show_text_names_times_and_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    report = {
        "id": "0x01",
        "name": None,
        "status": "revoked",
        "registered_at": 1764655200,
        "registered_at_utc": "2025-12-02T06:00:00Z",
        "revoke_reason": "0x" + "ee" * 32,
        "revoke_reason_text": "poisoned rows",
        "parents": [{"id": "0x02", "relation": "fine-tune", "name": "Model Alpha"}],
        "children": [{"id": "0x03", "relation": "merge", "name": None}],
    }
    record_view.print_show(report)
    lines = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        "id             0x01",
        "name           (unknown: the certificate is not in IPFS)",
        "status         revoked",
        "registered_at  2025-12-02T06:00:00Z (1764655200)",
        f"revoke_reason  0x{'ee' * 32} 'poisoned rows'",
        "parents        0x02 Model Alpha (fine-tune)",
        "children       0x03 (name unknown) (merge)",
    ]
    assert record_view.reason_text(b"\xff") is None
    assert record_view.reason_text(None) is None
