"""Signing keys: encrypted keystores (eth-account keyfile JSON), or anvil's dev accounts on a dev chain.

A plaintext key is never read from configuration.
"""

from __future__ import annotations

import json
from pathlib import Path

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import Web3Exception

from provenance.errors import KeyLoadError

# The first of anvil's default dev accounts (mnemonic "test test ... junk"); public knowledge,
# accepted only on a chain whose node reports this account as its own (a dev node).
ANVIL_DEV_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
)


def load_keystore(path: Path, password: str) -> LocalAccount:
    """Decrypt an eth-account keyfile; a wrong password or a broken file raises KeyLoadError."""
    try:
        keyfile = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise KeyLoadError(f"keystore {path} does not exist") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise KeyLoadError(f"keystore {path} is not a readable keyfile JSON: {exc}") from exc
    try:
        key = Account.decrypt(keyfile, password)
    except ValueError as exc:
        raise KeyLoadError(f"cannot decrypt keystore {path}: {exc}") from exc
    account: LocalAccount = Account.from_key(key)
    return account


def dev_account(w3: Web3, index: int = 0) -> LocalAccount:
    """Anvil dev account ``index``; refused unless the node itself holds that account."""
    account: LocalAccount = Account.from_key(ANVIL_DEV_KEYS[index])
    try:
        node_accounts = {a.lower() for a in w3.eth.accounts}
    except (requests.RequestException, Web3Exception, ValueError) as exc:
        raise KeyLoadError(f"cannot ask the node for its dev accounts: {exc}") from exc
    if account.address.lower() not in node_accounts:
        raise KeyLoadError(
            "no keystore given and this chain is not a local dev node holding anvil's dev "
            "accounts; pass --keystore FILE (or set PROVENANCE_KEYSTORE)"
        )
    return account
