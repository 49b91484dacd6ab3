from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from eth_account import Account

from provenance.chain.keys import (
    Keystore,
    anvil_dev_key,
    keystore_address,
    list_keystores,
    load_keystore,
    new_keystore,
    verify_keystore_address,
)
from provenance.errors import ConfigError, KeyLoadError


def test_anvil_dev_accounts_derive_from_its_mnemonic() -> None:
    addresses = [Account.from_key(anvil_dev_key(i)).address for i in range(2)]
    assert addresses == [
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    ]


def test_keystore_round_trip_and_errors(tmp_path: Path) -> None:
    account = Account.create()
    path = tmp_path / "key.json"
    path.write_text(json.dumps(Account.encrypt(account.key, "pw", iterations=2)))
    assert load_keystore(path, "pw").address == account.address
    with pytest.raises(KeyLoadError) as info:
        load_keystore(path, "wrong")
    assert str(info.value) == f"cannot decrypt keystore {path}: MAC mismatch"
    with pytest.raises(KeyLoadError) as info:
        load_keystore(tmp_path / "none.json", "pw")
    assert str(info.value) == f"keystore {tmp_path / 'none.json'} does not exist"
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(KeyLoadError, match=rf"^keystore {broken} is not a readable keyfile JSON: "):
        load_keystore(broken, "pw")


def test_new_keystore_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "deployer.json"
    created = new_keystore("correct horse", path=path, scrypt_n=2)
    assert created == Keystore(path, keystore_address(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keystore(path, "correct horse").address == created.address
    keyfile = json.loads(path.read_text())
    assert keyfile["crypto"]["kdf"] == "scrypt"
    before = path.read_bytes()
    with pytest.raises(ConfigError) as info:
        new_keystore("correct horse", path=path, scrypt_n=2)
    assert str(info.value) == f"{path} already exists; a keystore is never overwritten"
    assert path.read_bytes() == before
    with pytest.raises(ConfigError) as info:
        new_keystore("short", path=tmp_path / "other.json", scrypt_n=2)
    assert str(info.value) == "the keystore password must have at least 8 characters"
    assert not (tmp_path / "other.json").exists()


def test_keystores_in_a_folder_are_named_by_address_and_listed(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    first = new_keystore("password-1", folder=folder, scrypt_n=2)
    second = new_keystore("password-2", folder=folder, scrypt_n=2)
    assert first.path == folder / f"{first.address}.json"
    (folder / "notes.json").write_text('{"hello": 1}')
    (folder / "broken.json").write_text("{")
    assert list_keystores(folder) == sorted([first, second], key=lambda k: k.path)
    assert list_keystores(tmp_path / "none") == []


def test_keystore_address_needs_no_password_and_check_catches_a_swapped_address(
    tmp_path: Path,
) -> None:
    path = tmp_path / "key.json"
    created = new_keystore("password-1", path=path, scrypt_n=2)
    assert verify_keystore_address(path, "password-1").address == created.address
    other = Account.create().address
    keyfile = json.loads(path.read_text())
    keyfile["address"] = other[2:].lower()
    path.write_text(json.dumps(keyfile))
    assert keystore_address(path) == other
    with pytest.raises(KeyLoadError) as info:
        verify_keystore_address(path, "password-1")
    assert str(info.value) == (
        f"keystore {path} names address {other} but holds the key of {created.address}"
    )
    path.write_text('{"version": 3}')
    with pytest.raises(KeyLoadError) as info:
        keystore_address(path)
    assert str(info.value) == f"keystore {path} names no address"
