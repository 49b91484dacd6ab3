"""Signing keys: encrypted keystores (eth-account keyfile JSON), or anvil's dev accounts on a dev chain.

A plaintext key is never read from configuration, written, or returned by these helpers::

    address = new_keystore(Path("deployer.json"), password)   # scrypt, mode 0600, never overwrites
    keystore_address(Path("deployer.json"))                   # no password: the file names it
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import requests
from eth_account import Account
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import Web3Exception

from provenance.errors import ConfigError, KeyLoadError

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


KEYSTORE_MODE = 0o600
"""Keystores are written readable by their owner only."""

MIN_PASSWORD = 8
"""The fewest characters a new keystore's password may have."""


@dataclass(frozen=True)
class Keystore:
    """A keystore file and the address it says it holds (read without decrypting)."""

    path: Path
    address: str


def new_keystore(
    password: str,
    *,
    path: Path | None = None,
    folder: Path | None = None,
    scrypt_n: int | None = None,
) -> Keystore:
    """Create a fresh account and write it encrypted with ``password`` (eth-account's scrypt
    keyfile, mode 0600) to ``path``, else to ``folder/<address>.json``. An existing file is
    never overwritten (ConfigError). ``scrypt_n`` lowers the work factor, for tests only."""
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the keystore password must have at least {MIN_PASSWORD} characters")
    if path is None and folder is None:
        raise ConfigError("new_keystore needs a path or a folder")
    if path is not None and path.exists():  # before the slow key derivation
        raise ConfigError(f"{path} already exists; a keystore is never overwritten")
    account: LocalAccount = Account.create()
    keyfile = Account.encrypt(account.key, password, kdf="scrypt", iterations=scrypt_n)
    data = (json.dumps(keyfile, indent=2) + "\n").encode()
    target = path if path is not None else (folder or Path()) / f"{account.address}.json"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEYSTORE_MODE)
    except FileExistsError:
        raise ConfigError(f"{target} already exists; a keystore is never overwritten") from None
    except OSError as exc:
        raise ConfigError(f"cannot create keystore {target}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    return Keystore(target, str(account.address))


def keystore_address(path: Path) -> str:
    """The address a keystore file names (its ``address`` field), checksummed; no password is
    needed, and nothing is decrypted: :func:`load_keystore` proves the file holds that key."""
    try:
        keyfile = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise KeyLoadError(f"keystore {path} does not exist") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyLoadError(f"keystore {path} is not a readable keyfile JSON: {exc}") from exc
    address = keyfile.get("address") if isinstance(keyfile, dict) else None
    if not isinstance(address, str) or not Web3.is_address(address):
        raise KeyLoadError(f"keystore {path} names no address")
    return str(Web3.to_checksum_address(address))


def verify_keystore_address(path: Path, password: str) -> LocalAccount:
    """Decrypt ``path`` and check the key is the address the file names (KeyLoadError if not)."""
    named = keystore_address(path)
    account = load_keystore(path, password)
    if account.address != named:
        raise KeyLoadError(
            f"keystore {path} names address {named} but holds the key of {account.address}"
        )
    return account


def list_keystores(folder: Path) -> list[Keystore]:
    """The keystores (``*.json`` naming an address) in ``folder``, by file name; files that are
    not keystores are skipped."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            found.append(Keystore(path, keystore_address(path)))
        except KeyLoadError:
            continue
    return found
