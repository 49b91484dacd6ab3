"""Signing keys: encrypted keystores (eth-account keyfile JSON), or anvil's dev accounts on a dev chain.

A plaintext key is never read from configuration.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import requests
from eth_account import Account
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import Web3Exception

from provenance.errors import KeyLoadError

# anvil's dev accounts derive from its default mnemonic (public knowledge); they are accepted
# only on a chain whose node reports the account as its own (a dev node).
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"


@cache
def anvil_dev_key(index: int) -> bytes:
    """The private key of anvil's dev account ``index`` (BIP-44 path m/44'/60'/0'/0/index)."""
    return bytes(key_from_seed(seed_from_mnemonic(ANVIL_MNEMONIC, ""), f"m/44'/60'/0'/0/{index}"))


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
    account: LocalAccount = Account.from_key(anvil_dev_key(index))
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
