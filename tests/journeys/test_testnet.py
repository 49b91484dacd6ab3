"""Journey 6: an operator deploys to a testnet with an allowlist, and a creator registers there.

The "testnet" is a second anvil with Sepolia's chain id and no dev accounts: every command
must work from keystores made with ``provenance key new``. Funding the new addresses with
``anvil_setBalance`` stands in for a faucet. IPFS is the journey stack's kubo.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from provenance.chain.client import connect
from provenance.errors import ServiceError
from provenance.session import default_tools
from provenance.stack import free_port
from tests.journeys.conftest import Journey

SEPOLIA = 11155111
PASSWORD = "correct horse battery staple"


@contextmanager
def sepolia_anvil() -> Iterator[str]:
    """An anvil serving chain 11155111 that holds no dev accounts; yields its RPC URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        str(default_tools().find("anvil")), "--host", "127.0.0.1", "--port", str(port),
        "--chain-id", str(SEPOLIA), "--accounts", "0", "--silent", "--no-cors",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                connect(url, timeout=2)
                break
            except ServiceError:
                assert proc.poll() is None, "the testnet anvil exited"
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def fund(url: str, address: str) -> None:
    """The faucet: 100 ether to ``address``."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "anvil_setBalance",
        "params": [address, hex(10**20)],
    }
    assert "error" not in requests.post(url, json=body, timeout=10).json()


def new_key(journey: Journey, name: str, cwd: Path, env: dict[str, str]) -> str:
    done = journey.ok("key", "new", "--out", name, "--json", cwd=cwd, env=env)
    address: str = json.loads(done.stdout)["address"]
    fund(env["PROVENANCE_RPC_URL"], address)
    return address


TRAIN = """\
rows = open("data.csv").read().splitlines()
open("model.bin", "w").write("weights from %d rows" % len(rows))
"""


def test_deploy_allowlist_grant_register_verify(journey: Journey) -> None:
    with sepolia_anvil() as url:
        operator = journey.folder("operator")
        env = {
            "PROVENANCE_RPC_URL": url,
            "PROVENANCE_CHAIN_ID": str(SEPOLIA),
            "PROVENANCE_DEPLOYMENT": str(journey.home / "sepolia-deployment.json"),
            "PROVENANCE_KEYSTORE_PASSWORD": PASSWORD,
            # kubo named explicitly, as a testnet config names its IPFS node
            "PROVENANCE_IPFS_API": "http://127.0.0.1:5001",
        }
        deployer = new_key(journey, "deployer.json", operator, env)
        refused = journey.run("key", "new", "--out", "deployer.json", cwd=operator, env=env)
        assert (refused.returncode, refused.stderr) == (
            1,
            "error: deployer.json already exists; a keystore is never overwritten\n",
        )

        # no dev accounts on a testnet: a keystore is needed
        bare = journey.run("deploy", "--allowlist", cwd=operator, env=env)
        assert bare.returncode == 1
        assert bare.stderr.startswith("error: no keystore given and this chain is not a local ")

        done = journey.ok(
            "deploy", "--allowlist", "--keystore", "deployer.json", cwd=operator, env=env
        )
        assert f"on chain {SEPOLIA}" in done.stdout
        assert f"{deployer} is its admin and may register" in done.stdout
        deployment = json.loads((journey.home / "sepolia-deployment.json").read_text())
        assert deployment["chain_id"] == SEPOLIA
        registry = deployment["contracts"]["ModelRegistry"]["address"]
        again = journey.ok("deploy", "--open", "--keystore", "deployer.json", cwd=operator, env=env)
        assert f"ModelRegistry already deployed at {registry}" in again.stdout
        assert (
            "note: the ModelRegistry already deployed is on an allowlist; deploy --open --force "
            "for a new one"
        ) in again.stdout
        mainnet = journey.run(
            "deploy",
            "--keystore",
            "deployer.json",
            cwd=operator,
            env={**env, "PROVENANCE_CHAIN_ID": "1"},
        )
        assert (mainnet.returncode, mainnet.stderr) == (
            1,
            f"error: the configured chain id is 1 but the RPC {url} serves chain {SEPOLIA}: "
            "nothing deployed\n",
        )
        assert json.loads((journey.home / "sepolia-deployment.json").read_text()) == deployment

        alice = new_key(journey, "alice.json", operator, env)
        mallory = new_key(journey, "mallory.json", operator, env)

        # a non-admin cannot grant
        denied = journey.run(
            "role", "grant", "registrant", mallory, "--keystore", "mallory.json",
            cwd=operator, env=env,
        )  # fmt: skip
        assert (denied.returncode, denied.stdout) == (1, "")
        assert denied.stderr == (
            f"error: {mallory} is not an admin of the ModelRegistry at {registry}; only an "
            f"admin may grant or revoke roles (admins: {deployer})\n"
        )
        granted = journey.ok(
            "role", "grant", "registrant", "alice.json", "--keystore", "deployer.json",
            cwd=operator, env=env,
        )  # fmt: skip
        assert f"granted registrant to {alice}" in granted.stdout
        roles = json.loads(journey.ok("role", "list", "--json", cwd=operator, env=env).stdout)
        assert roles["open_registration"] is False
        assert [(h["role"], h["account"]) for h in roles["holders"]] == [
            ("admin", deployer),
            ("registrant", deployer),
            ("registrant", alice),
        ]

        last = journey.run(
            "role", "revoke", "admin", "deployer.json", "--keystore", "deployer.json",
            cwd=operator, env=env,
        )  # fmt: skip
        assert (last.returncode, last.stderr) == (
            1,
            f"error: {deployer} is the registry's only admin: revoking it would leave nobody "
            "to manage roles; grant admin to another account first\n",
        )

        # the deployer may register at once; a non-holder is refused in one line
        (operator / "minimal.json").write_text(json.dumps({"model": {"digest": "0x" + "ab" * 32}}))
        journey.ok("register", "minimal.json", "--keystore", "deployer.json", cwd=operator, env=env)
        outsider = journey.run(
            "register", "minimal.json", "--keystore", "mallory.json", cwd=operator, env=env
        )
        assert (outsider.returncode, outsider.stdout) == (1, "")
        assert outsider.stderr == (
            f"error: ModelRegistry reverted: UnauthorizedRegistrant(account={mallory}): this "
            f"registry is on an allowlist and {mallory} does not hold REGISTRANT_ROLE; an admin "
            f"grants it with `provenance role grant registrant {mallory}`\n"
        )

        # alice trains, signs with her keystore, stores in IPFS and registers
        training = journey.folder("training")
        (training / "data.csv").write_text("x,y\n1,2\n3,4\n")
        (training / "train.py").write_text(TRAIN)
        alice_key = str(operator / "alice.json")
        journey.ok(
            "run", "--name", "Testnet Model", "--keystore", alice_key, "--no-register",
            "--store", "--model", "model.bin", "--", "python", "train.py",
            cwd=training, env=env,
        )  # fmt: skip
        certificate = training / "provenance-runs" / "testnet-model" / "certificate.json"
        registered = journey.ok(
            "register", str(certificate), "--keystore", alice_key, "--json",
            cwd=training, env=env,
        )  # fmt: skip
        result = json.loads(registered.stdout)
        assert result["registrant"] == alice
        model_id = result["id"]

        # an auditor elsewhere verifies it against the testnet registry
        auditor = journey.folder("auditor")
        report = journey.run("verify", model_id, "--json", cwd=auditor, env=env)
        assert report.returncode == 0, (report.stdout[-3000:], report.stderr[-2000:])
        assert json.loads(report.stdout)["ok"] is True

        # the registrant authorises an inference node; nobody else may
        node = new_key(journey, "node.json", operator, env)
        stranger = journey.run(
            "node", "authorize", model_id[:10], node, "--keystore", "mallory.json",
            cwd=operator, env=env,
        )  # fmt: skip
        assert (stranger.returncode, stranger.stdout) == (1, "")
        assert stranger.stderr == (
            f"error: {mallory} may not authorise nodes for {model_id}: only its registrant "
            f"{alice} or an operator it approved may\n"
        )
        journey.ok(
            "node", "authorize", model_id[:10], "node.json", "--keystore", "alice.json",
            cwd=operator, env=env,
        )  # fmt: skip
        nodes = json.loads(journey.ok("node", "list", "--json", cwd=auditor, env=env).stdout)
        assert [(n["model"], n["node"]) for n in nodes["nodes"]] == [(model_id, node)]
        journey.ok(
            "node", "deauthorize", model_id, node, "--keystore", "alice.json",
            cwd=operator, env=env,
        )  # fmt: skip
        nodes = json.loads(journey.ok("node", "list", "--json", cwd=auditor, env=env).stdout)
        assert nodes["nodes"] == []
