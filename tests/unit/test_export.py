"""The export scaffolding: the format table, the subject, the signing keys of other formats."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account

from provenance.certificate import sign_certificate
from provenance.errors import ConfigError, KeyLoadError
from provenance.export import FORMATS, Subject, export
from provenance.export.signing_keys import load_signing_key, new_signing_key, public_pem

from .test_certificate import sample_certificate


def test_an_unknown_format_names_the_formats(tmp_path: Path) -> None:
    subject = Subject.of(sample_certificate(tmp_path))
    with pytest.raises(ConfigError) as info:
        export(subject, "no-such-format")
    assert str(info.value) == (
        f"unknown export format 'no-such-format'; the formats are: {', '.join(sorted(FORMATS))}"
    )


def test_a_subject_of_a_signed_certificate_keeps_the_envelope(tmp_path: Path) -> None:
    creator = Account.create()
    body = sample_certificate(tmp_path, creator=creator.address)
    signed = sign_certificate(body, creator)
    subject = Subject.of(signed, chain_id=31337)
    assert subject.certificate == body and subject.envelope == signed
    assert subject.model_id == body.model_id and subject.model_id_hex == "0x" + body.model_id.hex()
    assert subject.cid == body.cid and subject.chain_id == 31337
    assert Subject.of(sample_certificate(tmp_path)).model_id is None  # no creator, no id


def test_signing_keys_are_encrypted_never_overwritten_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "oms.pem"
    key = new_signing_key(path, "correct horse")
    assert path.stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED" in path.read_bytes()
    assert Path(f"{path}.pub").read_bytes() == public_pem(key)
    assert public_pem(load_signing_key(path, "correct horse")) == public_pem(key)
    with pytest.raises(ConfigError, match="already exists; a signing key is never overwritten"):
        new_signing_key(path, "correct horse")
    with pytest.raises(KeyLoadError, match="cannot be opened"):
        load_signing_key(path, "wrong password")
    with pytest.raises(ConfigError, match="at least 8 characters"):
        new_signing_key(tmp_path / "short.pem", "short")
    with pytest.raises(ConfigError, match="unknown curve"):
        new_signing_key(tmp_path / "k1.pem", "correct horse", curve="secp256k1")
