from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from provenance.chain.keys import anvil_dev_key, load_keystore
from provenance.errors import KeyLoadError


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
