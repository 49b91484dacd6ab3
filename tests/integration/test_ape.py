"""Ape entry points, run in the separate .venv-ape (scripts/setup.sh --with-ape):
``ape compile`` gives the same contract as scripts/compile.py, and ``ape run deploy`` deploys
through provenance.chain.deploy.ensure_deployed (the code behind ``provenance deploy``).

Marked ``ape``: selected with ``-m ape``. A missing .venv-ape fails (not skips) the tests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from provenance.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
APE_VENV = ROOT / ".venv-ape"
APE = APE_VENV / "bin" / "ape"
SOLCX_DIR = APE_VENV / "solcx"  # py-solc-x's install folder, holding the solc-js shim
ARTIFACT = ROOT / "src" / "provenance" / "chain" / "artifacts" / "ModelRegistry.json"
SOLC_VERSION = "0.8.37"
DEPLOYED = re.compile(
    r"ModelRegistry (deployed|already deployed) at (0x[0-9a-fA-F]{40}) .*\((\d+) bytes of code\)"
)

pytestmark = [pytest.mark.integration, pytest.mark.ape]


@pytest.fixture(scope="module")
def ape_env() -> dict[str, str]:
    if not APE.exists():
        pytest.fail(f"{APE} does not exist: run scripts/setup.sh --with-ape")
    if not (SOLCX_DIR / f"solc-v{SOLC_VERSION}").exists():
        pytest.fail(
            f"{SOLCX_DIR}/solc-v{SOLC_VERSION} (the solc-js shim) does not exist: "
            "run scripts/setup.sh --with-ape"
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVENANCE_", "APE_"))}
    env["PATH"] = os.pathsep.join(
        [str(APE_VENV / "bin"), str(ROOT / ".tools" / "bin"), env.get("PATH", "")]
    )
    env["SOLCX_BINARY_PATH"] = str(SOLCX_DIR)
    env.pop("VIRTUAL_ENV", None)
    return env


def ape(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    proc = subprocess.run(
        [str(APE), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"ape {' '.join(args)} exited {proc.returncode}:\n{out}"
    return out


def without_metadata(code: str) -> bytes:
    """Runtime bytecode without its trailing CBOR metadata (length in the last two bytes)."""
    raw = bytes.fromhex(code.removeprefix("0x"))
    return raw[: -(int.from_bytes(raw[-2:], "big") + 2)]


def test_ape_compile_matches_packaged_artifact(ape_env: dict[str, str]) -> None:
    out = ape(ape_env, "compile", "--force")
    assert "compiled" in out, out
    manifest = json.loads((ROOT / ".build" / "__local__.json").read_text(encoding="utf-8"))
    compiled = manifest["contractTypes"]["ModelRegistry"]
    artifact = json.loads(ARTIFACT.read_text(encoding="utf-8"))
    assert compiled["abi"] == artifact["abi"]
    assert manifest["compilers"][0]["version"].startswith(SOLC_VERSION + "+")
    # Same code; only the metadata hash at the end differs, because ape-solidity names the
    # OpenZeppelin sources contracts/.cache/openzeppelin/5.7.0/... (plus a remapping) where
    # scripts/compile.py keeps @openzeppelin/contracts/..., and both enter the metadata.
    assert without_metadata(compiled["runtimeBytecode"]["bytecode"]) == without_metadata(
        artifact["deployedBytecode"]
    )


def test_ape_run_deploy_with_ape_managed_anvil(ape_env: dict[str, str], tmp_path: Path) -> None:
    """ape starts anvil on a free port, the script deploys, ape stops anvil."""
    deployment = tmp_path / "deployment.json"
    env = {
        **ape_env,
        "APE_FOUNDRY_HOST": f"http://127.0.0.1:{free_port()}",
        "PROVENANCE_DEPLOYMENT": str(deployment),
    }
    out = ape(env, "run", "deploy", "--network", "ethereum:local:foundry")
    match = DEPLOYED.search(out)
    assert match and match[1] == "deployed" and int(match[3]) > 0, out
    recorded = json.loads(deployment.read_text(encoding="utf-8"))
    assert recorded["chain_id"] == 31337
    assert recorded["contracts"]["ModelRegistry"]["address"] == match[2]


@pytest.fixture
def anvil() -> Iterator[str]:
    """An anvil of our own on a free port, which ape connects to instead of starting one."""
    url = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [str(ROOT / ".tools" / "bin" / "anvil"), "--host", "127.0.0.1",
         "--port", url.rsplit(":", 1)[1], "--hardfork", "prague"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        w3 = Web3(Web3.HTTPProvider(url))
        deadline = time.monotonic() + 30
        while not w3.is_connected():
            assert proc.poll() is None and time.monotonic() < deadline, "anvil did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_ape_run_deploy_on_running_anvil_is_idempotent(
    ape_env: dict[str, str], anvil: str, tmp_path: Path
) -> None:
    deployment = tmp_path / "deployment.json"
    env = {**ape_env, "APE_FOUNDRY_HOST": anvil, "PROVENANCE_DEPLOYMENT": str(deployment)}
    first = DEPLOYED.search(ape(env, "run", "deploy", "--network", "ethereum:local:foundry"))
    assert first and first[1] == "deployed"
    w3 = Web3(Web3.HTTPProvider(anvil))
    code = w3.eth.get_code(Web3.to_checksum_address(first[2]))
    artifact = json.loads(ARTIFACT.read_text(encoding="utf-8"))
    expected = bytes.fromhex(artifact["deployedBytecode"].removeprefix("0x"))
    # The packaged artifact (its metadata hash, not ape's build), with the immutables
    # (EIP-712 domain caches) filled in at deployment, so compare length and metadata.
    assert len(code) == len(expected)
    metadata = expected[len(without_metadata(expected.hex())) :]
    assert bytes(code).endswith(metadata)
    second = DEPLOYED.search(ape(env, "run", "deploy", "--network", "ethereum:local:foundry"))
    assert second and second[1] == "already deployed" and second[2] == first[2]
