"""Journey 5: an auditor with only an RPC URL, the registry's address and an IPFS gateway (no
IPFS node, no deployment file, a state folder of their own) verifies a model by id; without a
registry address, the error says which setting names it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .conftest import Journey
from .test_run_verify import run_training


def _auditor_config(folder: Path, stack: dict[str, Any], registry: str | None) -> Path:
    contracts = f'\n[chain.contracts]\nModelRegistry = "{registry}"\n' if registry else ""
    path = folder / "auditor.toml"
    path.write_text(
        f"""state_dir = "audit-state"

[chain]
rpc_url = "{stack["chain"]["rpc_url"]}"
{contracts}
[ipfs]
gateway = "{stack["ipfs"]["gateway"]}"
""",
        encoding="utf-8",
    )
    return path


def test_an_auditor_with_a_gateway_verifies_a_model_by_id(journey: Journey) -> None:
    summary = run_training(journey, "Audited Model")
    model_id = summary["model_id"]
    stack = json.loads(journey.ok("status", "--json", cwd=journey.home).stdout)
    registry = stack["contracts"]["ModelRegistry"]["address"]

    desk = journey.folder("auditor")
    config = _auditor_config(desk, stack, registry)
    as_auditor = {"PROVENANCE_CONFIG": str(config)}
    verified = journey.ok("verify", model_id, "--json", cwd=desk, env=as_auditor)
    report = json.loads(verified.stdout)
    assert report["ok"] is True and report["model_id"] == model_id
    (fetched,) = [c for c in report["checks"] if c["name"] == "certificate-fetched"]
    assert fetched["status"] == "pass"
    assert f"fetched from {stack['ipfs']['gateway']}" in fetched["detail"]
    assert not (desk / "audit-state" / "blocks").exists()  # nothing stored, no local store
    assert not (desk / "audit-state" / "deployment.json").exists()

    # the registry from the environment instead, and the id as the README shortens it
    bare = _auditor_config(journey.folder("auditor-env"), stack, None)
    by_env = {"PROVENANCE_CONFIG": str(bare), "PROVENANCE_REGISTRY": registry}
    shortened = journey.ok("verify", model_id[:12], cwd=desk, env=by_env)
    assert "verified: every required check passed" in shortened.stdout


def test_an_auditor_without_a_registry_is_told_where_to_name_it(journey: Journey) -> None:
    stack = json.loads(journey.ok("status", "--json", cwd=journey.home).stdout)
    desk = journey.folder("auditor")
    config = _auditor_config(desk, stack, None)
    done = journey.run("verify", "0x" + "ab" * 32, cwd=desk, env={"PROVENANCE_CONFIG": str(config)})
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "error: no ModelRegistry is configured and the deployment file "
        f"{desk / 'audit-state' / 'deployment.json'} names none for this chain: set "
        "[chain.contracts] ModelRegistry in the config (or PROVENANCE_REGISTRY) to the registry "
        "you trust, or run `provenance up` (a local chain) or `provenance deploy`\n"
    )
