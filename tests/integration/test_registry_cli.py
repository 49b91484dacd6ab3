"""`provenance register / show / revoke / tree` against the session stack."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import rfc8785

from provenance.certificate import (
    Certificate,
    ModelArtifact,
    ParentLink,
    TrainingData,
    load_certificate,
    raw_block_cid,
    timestamp,
    to_json,
)
from provenance.manifest import FileEntry, FileManifest, dataset_record, table_manifest
from provenance.stack import Stack
from provenance.storage import Kubo

from .test_stack import run_cli

pytestmark = pytest.mark.integration


def certificate(folder: Path, name: str, parents: list[dict[str, str]] | None = None) -> Path:
    """A real (unsigned) certificate of schema v1 with random model and data digests."""
    model = FileManifest.of(
        [FileEntry(path="model.bin", size=32, digest="sha256:" + os.urandom(32).hex())]
    )
    data, _ = dataset_record("train", table_manifest(pd.DataFrame({"x": [os.urandom(8).hex()]})))
    body = Certificate(
        model_name=name,
        created_at=timestamp(dt.datetime.now(dt.UTC)),
        parents=tuple(ParentLink.model_validate(p) for p in parents or []),
        model=ModelArtifact(digest=model.root, manifest=model),
        data=TrainingData.of((data,)),
    )
    path = folder / f"{name.replace(' ', '-')}.json"
    path.write_text(to_json(body))
    return path


def cli_json(env: dict[str, str], *args: str) -> dict[str, object]:
    result = run_cli(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_parent_and_child_from_the_cli(
    stack: Stack, cli_env: dict[str, str], tmp_path: Path
) -> None:
    alpha_path = certificate(tmp_path, "Model Alpha")
    alpha = cli_json(cli_env, "register", str(alpha_path))
    expected_digest = hashlib.sha256(rfc8785.dumps(json.loads(alpha_path.read_text()))).hexdigest()
    assert alpha["certificate_digest"] == "sha256:" + expected_digest
    assert alpha["already_registered"] is False
    # a certificate naming no creator is registered by the sender, under the sender's id
    body = load_certificate(alpha_path)
    assert isinstance(body, Certificate) and body.creator is None
    assert alpha["id"] == "0x" + body.model_id_for(str(alpha["registrant"])).hex()

    beta_path = certificate(
        tmp_path, "Model Beta", [{"id": str(alpha["id"]), "relation": "transfer"}]
    )
    beta = cli_json(cli_env, "register", str(beta_path), "--no-publish")  # not in IPFS
    again = cli_json(cli_env, "register", str(beta_path), "--no-publish")
    assert again["id"] == beta["id"] and again["already_registered"] is True

    # names come from the certificates in IPFS: alpha's is stored, beta's is not
    with Kubo(stack.config.ipfs.api) as kubo:
        assert isinstance(body, Certificate)
        kubo.put_bytes(body.canonical_bytes())
    shown = cli_json(cli_env, "show", str(beta["id"]))
    assert shown["status"] == "active" and shown["tainted"] is False
    assert shown["name"] is None
    assert shown["parents"] == [{"id": alpha["id"], "relation": "transfer", "name": "Model Alpha"}]
    at = shown["registered_at"]
    assert isinstance(at, int)
    assert shown["registered_at_utc"] == dt.datetime.fromtimestamp(at, dt.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    text = run_cli("show", str(alpha["id"]), env={**cli_env, "COLUMNS": "200"})
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    width = len("revoked_parent_acknowledged")  # the longest key
    assert f"{'name':<{width}}  Model Alpha" in lines
    utc = cli_json(cli_env, "show", str(alpha["id"]))["registered_at_utc"]
    assert any(line.startswith(f"{'registered_at':<{width}}  {utc} (") for line in lines)
    assert f"{'children':<{width}}  {beta['id']} (name unknown) (transfer)" in lines
    beta_doc = json.loads(beta_path.read_text())
    assert shown["model_digest"] == beta_doc["model"]["digest"]
    assert shown["data_commitment"] == beta_doc["data"]["commitment"]

    # a permanent act: without a terminal it needs --yes, and nothing is sent without it
    refused = run_cli("revoke", str(alpha["id"]), "--reason", "poisoned rows", env=cli_env)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "error: revoking is permanent and there is no terminal to confirm it on: add --yes to "
        "revoke"
    )
    assert cli_json(cli_env, "show", str(alpha["id"]))["status"] == "active"
    result = run_cli("revoke", str(alpha["id"]), "--reason", "poisoned rows", "--yes", env=cli_env)
    assert result.returncode == 0, result.stderr
    reason = hashlib.sha256(b"poisoned rows").hexdigest()
    cid = raw_block_cid(bytes.fromhex(reason))
    assert f"reason sha256:{reason}, text in IPFS {cid}," in result.stdout
    revoked = cli_json(cli_env, "show", str(alpha["id"]))
    assert (revoked["revoke_reason"], revoked["revoke_reason_text"]) == (
        "0x" + reason,
        "poisoned rows",
    )
    text = run_cli("show", str(alpha["id"]), env={**cli_env, "COLUMNS": "200"})
    line = f"{'revoke_reason':<{width}}  0x{reason} 'poisoned rows'"
    assert line in text.stdout.splitlines()

    tree = json.loads(run_cli("tree", str(alpha["id"]), "--format", "json", env=cli_env).stdout)
    assert tree["status"] == "revoked"
    assert tree["children"] == [
        {"id": beta["id"], "relation": "transfer", "status": "tainted", "children": []}
    ]
    affected = cli_json(cli_env, "impact", str(alpha["id"])[:12])  # a unique prefix
    assert affected["id"] == alpha["id"] and affected["revoked"] is True
    assert [a["id"] for a in affected["affected"]] == [beta["id"]]
    text = run_cli("tree", str(beta["id"]), env={**cli_env, "COLUMNS": "200"})
    assert text.returncode == 0
    assert "tainted" in text.stdout and "← transfer" in text.stdout and "revoked" in text.stdout

    again_revoke = run_cli("revoke", str(alpha["id"]), "--reason", "x", "--yes", env=cli_env)
    assert again_revoke.returncode == 1
    assert (
        again_revoke.stderr.strip()
        == f"error: ModelRegistry reverted: AlreadyRevoked(id={alpha['id']})"
    )


def test_cli_errors_are_one_line(stack: Stack, cli_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model_name": "no digest"}))
    cases = [
        (("register", str(bad)), f"error: certificate {bad} has no model.digest"),
        (
            ("register", str(tmp_path / "missing.json")),
            f"error: certificate {tmp_path / 'missing.json'} does not exist",
        ),
        (
            ("show", "0x1234"),
            "error: model id '0x1234' is neither 0x + 64 hex digits nor a prefix of at least 8 "
            "hex digits",
        ),
        (("show", "0xabababab"), "error: no registered model id starts with 0xabababab"),
        (
            ("revoke", "0xabababab", "--reason", "x"),
            "error: no registered model id starts with 0xabababab",
        ),
        (("impact", "0x" + "ab" * 31), f"error: no registered model id starts with 0x{'ab' * 31}"),
        (
            ("show", "0x" + "ab" * 32),
            f"error: model 0x{'ab' * 32} is not registered on chain 31337",
        ),
        (
            ("tree", "0x" + "ab" * 32, "--format", "png"),
            "error: unknown format 'png'; use one of: text, json, mermaid, dot, html, svg",
        ),
    ]
    ghost = tmp_path / "ghost.json"
    ghost_parent = "0x" + "cd" * 32
    ghost.write_text(
        json.dumps({"model": {"digest": "sha256:" + "11" * 32}, "parents": [{"id": ghost_parent}]})
    )
    cases.append(
        (
            ("register", str(ghost)),
            f"error: ModelRegistry reverted: ParentNotFound(parentId={ghost_parent})",
        )
    )
    for args, message in cases:
        result = run_cli(*args, env=cli_env)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert result.stderr.strip() == message


def test_an_auditor_with_only_a_gateway_sees_names_and_reasons(
    stack: Stack, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """`show` and `tree` read certificates and reasons through an `[ipfs] gateway` when that
    is all an auditor has (no kubo API, no deployment file)."""
    from provenance.chain.deploy import Deployment

    path = certificate(tmp_path, "Gateway Gamma")
    gamma = cli_json(cli_env, "register", str(path))
    body = load_certificate(path)
    assert isinstance(body, Certificate)
    with Kubo(stack.config.ipfs.api) as kubo:
        kubo.put_bytes(body.canonical_bytes())
    done = run_cli("revoke", str(gamma["id"]), "--reason", "leaked labels", "--yes", env=cli_env)
    assert done.returncode == 0, done.stderr
    deployment = Deployment.read(stack.config.deployment_file)
    assert deployment is not None
    auditor = tmp_path / "auditor"
    auditor.mkdir()
    (auditor / "provenance.toml").write_text(
        f"""state_dir = "state"

[chain]
rpc_url = "{stack.config.chain.rpc_url}"

[chain.contracts]
ModelRegistry = "{deployment.contracts["ModelRegistry"].address}"

[ipfs]
gateway = "{stack.config.ipfs.gateway}"
""",
        encoding="utf-8",
    )
    env = {**cli_env, "PROVENANCE_CONFIG": str(auditor / "provenance.toml")}
    shown = cli_json(env, "show", str(gamma["id"]))
    assert (shown["name"], shown["status"], shown["revoke_reason_text"]) == (
        "Gateway Gamma",
        "revoked",
        "leaked labels",
    )
    family = json.loads(run_cli("tree", str(gamma["id"]), "--format", "json", env=env).stdout)
    assert family["nodes"][0]["name"] == "Gateway Gamma"
