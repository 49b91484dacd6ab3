"""Ape entry point for deploying the contracts: ``ape run deploy --network ethereum:local:foundry``.

One implementation, two entry points: this script and ``provenance deploy --rpc-url URL
--keystore FILE`` both call :func:`provenance.chain.deploy.ensure_deployed`, which deploys the
packaged artifacts (src/provenance/chain/artifacts, built by scripts/compile.py). Ape only
provides the connection (``networks.provider.web3``) and, on a local dev network, the key.

Deployer: the keyfile in PROVENANCE_KEYSTORE (password in PROVENANCE_KEYSTORE_PASSWORD; an ape
account's ``~/.ape/accounts/ALIAS.json`` is such a keyfile) when set, else on a local network
ape's test account 0. Deployment file: PROVENANCE_DEPLOYMENT, else .provenance/deployment-ape.json.
Set PROVENANCE_ALLOWLIST=1 to deploy with registration restricted (like ``--allowlist``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ape import accounts, networks
from eth_account import Account
from eth_account.signers.local import LocalAccount

from provenance.chain.deploy import ensure_deployed
from provenance.chain.keys import load_keystore


def deployer(is_local: bool) -> LocalAccount:
    keystore = os.environ.get("PROVENANCE_KEYSTORE")
    if keystore:
        password = os.environ.get("PROVENANCE_KEYSTORE_PASSWORD")
        if password is None:
            raise SystemExit("PROVENANCE_KEYSTORE is set but PROVENANCE_KEYSTORE_PASSWORD is not")
        return load_keystore(Path(keystore).expanduser(), password)
    if not is_local:
        raise SystemExit("deploying to a non-local network needs PROVENANCE_KEYSTORE")
    account: LocalAccount = Account.from_key(accounts.test_accounts[0].private_key)
    return account


def main() -> None:
    provider = networks.provider
    account = deployer(provider.network.is_local)
    target = Path(os.environ.get("PROVENANCE_DEPLOYMENT", ".provenance/deployment-ape.json"))
    allowlist = os.environ.get("PROVENANCE_ALLOWLIST", "") not in ("", "0", "false")
    w3 = provider.web3
    result, now = ensure_deployed(w3, account, target, open_registration=not allowlist)
    for name, record in result.contracts.items():
        verb = "deployed" if name in now else "already deployed"
        size = len(w3.eth.get_code(record.address))
        print(
            f"{name} {verb} at {record.address} on chain {result.chain_id} ({size} bytes of code)"
        )
    print(f"deployment file: {target}")
