"""`provenance tree` in every format and `provenance impact`, against the session stack."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_utils.crypto import keccak

from provenance.chain.attestor import AttestorContract
from provenance.chain.client import connect
from provenance.chain.deploy import Deployment
from provenance.chain.tx import Transactor
from provenance.cli.registry import certificate_registration
from provenance.stack import Stack

from .chainutil import ADMIN
from .test_registry_cli import certificate, cli_json
from .test_stack import run_cli

pytestmark = pytest.mark.integration

SVG = "{http://www.w3.org/2000/svg}"
IMAGE = keccak(text="sha256:tree-cli-image")


@dataclass(frozen=True)
class Family:
    """A (revoked) -> B (fine-tune) -> C (distillation); A -> D (quantization, revoked);
    node N authorised for B, node M authorised for C and withdrawn again."""

    a: str
    b: str
    c: str
    d: str
    node: str
    attestor: str


@pytest.fixture(scope="module")
def family(
    stack: Stack, stack_config_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Family:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVENANCE_", "DOCKER_HOST"))}
    env["PROVENANCE_CONFIG"] = str(stack_config_path)
    folder = tmp_path_factory.mktemp("family")
    # --no-publish: none of these certificates is in IPFS, so no name is known
    a = str(cli_json(env, "register", str(certificate(folder, "Tree A")), "--no-publish")["id"])
    b_path = certificate(folder, "Tree B", [{"id": a, "relation": "fine-tune"}])
    b = str(cli_json(env, "register", str(b_path), "--no-publish")["id"])
    c_path = certificate(folder, "Tree C", [{"id": b, "relation": "distillation"}])
    c = str(cli_json(env, "register", str(c_path), "--no-publish")["id"])
    d_path = certificate(folder, "Tree D", [{"id": a, "relation": "quantization"}])
    d = str(cli_json(env, "register", str(d_path), "--no-publish")["id"])

    w3 = connect(stack.config.chain.rpc_url)
    deployment = Deployment.read(stack.config.deployment_file)
    assert deployment is not None
    address = deployment.contracts["OutputAttestor"].address
    owner = AttestorContract(w3, address, Transactor(w3, ADMIN))  # the CLI registers as ADMIN
    node, withdrawn = Account.create(), Account.create()
    owner.authorize_node(
        bytes.fromhex(b[2:]), node.address, certificate_registration(b_path, False)[0], IMAGE
    )
    c_registration = certificate_registration(c_path, False)[0]
    owner.authorize_node(bytes.fromhex(c[2:]), withdrawn.address, c_registration, IMAGE)
    owner.deauthorize_node(bytes.fromhex(c[2:]), withdrawn.address)

    for model in (a, d):
        result = run_cli("revoke", model, "--reason", "poisoned", "--yes", env=env)
        assert result.returncode == 0, result.stderr
    return Family(a, b, c, d, node.address, address)


def tree(env: dict[str, str], model: str, fmt: str, *extra: str) -> str:
    result = run_cli("tree", model, "--format", fmt, *extra, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_tree_json_and_text(family: Family, cli_env: dict[str, str]) -> None:
    doc = json.loads(tree(cli_env, family.b, "json"))
    assert doc["id"] == family.b and doc["status"] == "tainted"
    assert doc["parents"] == [
        {"id": family.a, "relation": "fine-tune", "status": "revoked", "parents": []}
    ]
    assert doc["children"] == [
        {"id": family.c, "relation": "distillation", "status": "tainted", "children": []}
    ]
    assert [(n["id"], n["status"]) for n in doc["nodes"]] == [
        (family.b, "tainted"),
        (family.a, "revoked"),
        (family.c, "tainted"),
    ]
    assert doc["edges"] == [
        {"parent": family.a, "child": family.b, "relation": "fine-tune"},
        {"parent": family.b, "child": family.c, "relation": "distillation"},
    ]
    # names from the certificates (none of these is in IPFS: unknown), times in UTC
    assert [(n["name"], n["registered_at_utc"]) for n in doc["nodes"]] == [
        (None, utc(n["registered_at"])) for n in doc["nodes"]
    ]
    when = {n["id"]: n["registered_at_utc"] for n in doc["nodes"]}
    text = tree({**cli_env, "COLUMNS": "200"}, family.a, "text").splitlines()
    d_time = json.loads(tree(cli_env, family.d, "json"))["nodes"][0]["registered_at_utc"]
    assert text[0] == f"{family.a[:18]}… revoked (name unknown) {when[family.a]}"
    assert text[1:] == [
        "├── ancestors",
        "└── descendants",
        f"    ├── → fine-tune {family.b[:18]}… tainted (name unknown) {when[family.b]}",
        f"    │   └── → distillation {family.c[:18]}… tainted (name unknown) {when[family.c]}",
        f"    └── → quantization {family.d[:18]}… revoked (name unknown) {d_time}",
    ]


def utc(timestamp: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_tree_mermaid_and_dot(family: Family, cli_env: dict[str, str]) -> None:
    mermaid = tree(cli_env, family.a, "mermaid").splitlines()
    assert mermaid[0] == "flowchart TD"
    assert "    classDef revoked fill:#ffcdd2,stroke:#c62828,color:#000" in mermaid
    assert f'    m0["{family.a[:18]}…<br/>revoked"]:::revoked' in mermaid
    assert f'    m1["{family.b[:18]}…<br/>tainted"]:::tainted' in mermaid
    assert "    m0 -->|fine-tune| m1" in mermaid and "    m0 -->|quantization| m2" in mermaid
    assert "    class m0 focus" in mermaid
    dot = tree(cli_env, family.a, "dot")
    assert (
        f'"{family.b}" -> "{family.c}" [id="edge-{family.b}-{family.c}", label="distillation",'
        ' class="relation-distillation"];'
    ) in dot
    assert f'"{family.d}" [id="model-{family.d}", class="status-revoked",' in dot


def test_tree_svg_and_html_to_files(
    family: Family, cli_env: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "tree.svg"
    result = run_cli("tree", family.a, "--format", "svg", "-o", str(target), env=cli_env)
    assert result.returncode == 0, result.stderr
    assert f"wrote the family tree of {family.a} (svg) to {target}" in result.stdout
    root = ET.parse(target).getroot()
    nodes = {
        g.get("id"): g.get("class") for g in root.iter(f"{SVG}g") if "node" in g.get("class", "")
    }
    assert nodes == {
        f"model-{family.a}": "node status-revoked focus",
        f"model-{family.b}": "node status-tainted",
        f"model-{family.c}": "node status-tainted",
        f"model-{family.d}": "node status-revoked",
    }
    page = tree(cli_env, family.c, "html")
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert page.count('class="node ') == 3 and '<ul class="legend">' in page

    bad = run_cli("tree", family.a, "--format", "png", env=cli_env)
    assert bad.returncode == 1
    assert bad.stderr.strip() == (
        "error: unknown format 'png'; use one of: text, json, mermaid, dot, html, svg"
    )


def test_impact(family: Family, cli_env: dict[str, str]) -> None:
    report: Any = cli_json(cli_env, "impact", family.a)
    assert report["id"] == family.a and report["status"] == "revoked" and report["revoked"]
    assert report["attestor"] == family.attestor
    assert [
        (x["id"], x["status"], x["already_revoked"], x["depth"]) for x in report["affected"]
    ] == [
        (family.b, "tainted", False, 1),
        (family.d, "revoked", True, 1),
        (family.c, "tainted", False, 2),
    ]
    assert report["affected"][2]["path"] == [
        {"parent": family.a, "child": family.b, "relation": "fine-tune"},
        {"parent": family.b, "child": family.c, "relation": "distillation"},
    ]
    assert report["nodes"] == [
        {
            "model": family.b,
            "node": family.node,
            "model_digest": report["nodes"][0]["model_digest"],
            "image_id": "0x" + IMAGE.hex(),
            "block": report["nodes"][0]["block"],
            "transaction": report["nodes"][0]["transaction"],
        }
    ]
    # the digest the node is bound to is B's model digest
    shown: Any = cli_json(cli_env, "show", family.b)
    assert report["nodes"][0]["model_digest"] == shown["model_digest"]

    leaf = cli_json(cli_env, "impact", family.c)
    assert leaf["status"] == "tainted" and leaf["revoked"] is False
    assert leaf["affected"] == [] and leaf["nodes"] == []  # M was deauthorised

    text = run_cli("impact", family.a, env={**cli_env, "COLUMNS": "300"})
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == f"{family.a} (revoked): is revoked, 3 models are affected"
    assert f"  {family.d}  revoked already  via → quantization {family.d[:18]}…" in lines
    assert "inference nodes authorised for these models: 1" in lines
