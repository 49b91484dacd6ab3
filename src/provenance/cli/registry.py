"""Commands for the model registry: register, show, revoke, tree."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import rfc8785
import typer
from rich.tree import Tree

from provenance.chain.client import connect
from provenance.chain.deploy import Deployment
from provenance.chain.index import LineageIndex
from provenance.chain.registry import Registry
from provenance.chain.tx import Transactor
from provenance.chain.types import Parent, Registration, Status, as_bytes32
from provenance.cli._common import config as _config
from provenance.cli._common import out, say, signer
from provenance.config import Config
from provenance.errors import ConfigError, ProvenanceError

app = typer.Typer()

Keystore = Annotated[
    Path | None,
    typer.Option(help="Encrypted keyfile JSON of the sender (else PROVENANCE_KEYSTORE)."),
]
PasswordFile = Annotated[
    Path | None,
    typer.Option(help="File holding the keystore password (else PROVENANCE_KEYSTORE_PASSWORD)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]


def open_registry(
    config: Config, transactor_for: tuple[Path | None, Path | None] | None = None
) -> Registry:
    """The configured registry; with ``transactor_for`` (keystore, password file) it can write."""
    w3 = connect(config.chain.rpc_url)
    address = config.chain.contracts.get("ModelRegistry")
    from_block = 0
    if address is None:
        deployment = Deployment.read(config.deployment_file)
        if deployment is None or "ModelRegistry" not in deployment.contracts:
            raise ConfigError(
                f"no ModelRegistry deployed or configured (deployment file {config.deployment_file}); "
                "run `provenance up` or `provenance deploy`"
            )
        if deployment.chain_id != w3.eth.chain_id:
            raise ConfigError(
                f"deployment file {config.deployment_file} is for chain {deployment.chain_id}, but "
                f"the RPC serves chain {w3.eth.chain_id}"
            )
        address = deployment.contracts["ModelRegistry"].address
        from_block = deployment.contracts["ModelRegistry"].block
    transactor = None
    if transactor_for is not None:
        keystore, password_file = transactor_for
        account = signer(
            w3, config.chain.rpc_url, keystore or config.chain.keystore, password_file, "sending"
        )
        transactor = Transactor(w3, account)
    return Registry(w3, address, transactor, from_block=from_block)


def synced_index(config: Config, registry: Registry) -> LineageIndex:
    path = config.state_dir / "index" / f"{registry.w3.eth.chain_id}-{registry.address}.sqlite"
    index = LineageIndex(path)
    index.sync(registry)
    return index


def certificate_registration(
    path: Path, acknowledge_revoked: bool
) -> tuple[Registration, dict[str, Any]]:
    """The registration a certificate file commits to.

    A certificate of schema v1 (a signed envelope or a bare body, see
    :mod:`provenance.certificate`) is validated, its signature checked, and registered by its
    body's digest (SHA-256 of the RFC 8785 canonical bytes). The older minimal form
    (``model.digest``, optional ``data.commitment`` and ``parents[].id`` / ``.relation``, no
    ``version``) is still accepted; its digest is over the whole document.
    """
    from provenance.certificate import (
        SignedCertificate,
        body_of,
        parse_certificate,
        verify_certificate_signature,
    )

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"certificate {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"certificate {path} is not readable JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"certificate {path} must be a JSON object")
    if "version" in document or "certificate" in document:
        parsed = parse_certificate(document, f"certificate {path}")
        if isinstance(parsed, SignedCertificate):
            verify_certificate_signature(parsed)
        return body_of(parsed).registration(acknowledge_revoked), document
    try:
        model_digest = document["model"]["digest"]
    except (KeyError, TypeError):
        raise ConfigError(f"certificate {path} has no model.digest") from None
    data = document.get("data") or {}
    parents = [
        Parent(p["id"], p.get("relation", "fine-tune")) for p in document.get("parents") or []
    ]
    digest = hashlib.sha256(rfc8785.dumps(document)).digest()
    return (
        Registration(
            certificate_digest=digest,
            model_digest=as_bytes32(model_digest, "model.digest"),
            data_commitment=as_bytes32(data.get("commitment", "0x" + "00" * 32), "data.commitment"),
            parents=tuple(parents),
            acknowledge_revoked_parents=acknowledge_revoked,
        ),
        document,
    )


def _id(text: str) -> bytes:
    return as_bytes32(text, "model id")


def _hex(b: bytes | None) -> str | None:
    return None if b is None else "0x" + b.hex()


@app.command()
def register(
    certificate: Annotated[Path, typer.Argument(help="Certificate JSON file.")],
    acknowledge_revoked_parents: Annotated[
        bool, typer.Option(help="Accept parents that are already revoked (recorded on chain).")
    ] = False,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
    as_json: AsJson = False,
) -> None:
    """Register a model's birth certificate on chain (idempotent for the same registrant)."""
    registration, _ = certificate_registration(certificate, acknowledge_revoked_parents)
    registry = open_registry(_config(), (keystore, password_file))
    done = registry.register(registration)
    result = {
        "id": _hex(done.id),
        "registrant": done.registrant,
        "certificate_digest": "sha256:" + registration.certificate_digest.hex(),
        "transaction": done.transaction,
        "block": done.block,
        "already_registered": done.already,
        "parents": [{"id": _hex(p.id), "relation": p.relation.label} for p in registration.parents],
    }
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    if done.already:
        say(f"already registered by {done.registrant}: {result['id']}")
    else:
        say(f"registered {result['id']} in block {done.block} (tx {done.transaction})")


@app.command()
def show(
    model_id: Annotated[str, typer.Argument(metavar="ID", help="Model id (0x...).")],
    as_json: AsJson = False,
) -> None:
    """Show a model's on-chain record, its parents and children."""
    config = _config()
    registry = open_registry(config)
    mid = _id(model_id)
    record = registry.record(mid)
    if not record.exists:
        raise ProvenanceError(
            f"model {model_id} is not registered on chain {registry.w3.eth.chain_id}"
        )
    with synced_index(config, registry) as index:
        indexed = index.require(mid)
        report = {
            "id": _hex(mid),
            "status": record.status.label,
            "tainted": index.is_tainted(mid),
            "registrant": record.registrant,
            "registered_at": record.registered_at,
            "block": indexed.block,
            "transaction": indexed.transaction,
            "certificate_digest": "sha256:" + indexed.certificate_digest.hex(),
            "model_digest": "sha256:" + indexed.model_digest.hex(),
            "data_commitment": "sha256:" + indexed.data_commitment.hex(),
            "revoked_parent_acknowledged": record.revoked_parent_acknowledged,
            "revoked_by": indexed.revoked_by,
            "revoke_reason": _hex(indexed.revoke_reason),
            "parents": [
                {"id": _hex(p.id), "relation": p.relation.label} for p in index.parents(mid)
            ],
            "children": [{"id": _hex(c), "relation": r.label} for c, r in index.children(mid)],
        }
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    width = max(len(k) for k in report)
    for key, value in report.items():
        if isinstance(value, list):
            value = ", ".join(f"{v['id']} ({v['relation']})" for v in value) or "-"
        out.print(f"{key:<{width}}  {value}", highlight=False, soft_wrap=True)


@app.command()
def revoke(
    model_id: Annotated[str, typer.Argument(metavar="ID", help="Model id (0x...).")],
    reason: Annotated[
        str,
        typer.Option(
            help="Why: free text (its sha-256 goes on chain), or a 0x/sha256: digest, e.g. of an incident report."
        ),
    ],
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Revoke a model, permanently (its registrant or an auditor)."""
    try:
        digest = as_bytes32(reason, "reason")
    except ProvenanceError:
        digest = hashlib.sha256(reason.encode()).digest()
    registry = open_registry(_config(), (keystore, password_file))
    tx = registry.revoke(_id(model_id), digest)
    say(f"revoked {model_id} (reason sha256:{digest.hex()}, tx {tx})")


@app.command()
def tree(
    model_id: Annotated[str, typer.Argument(metavar="ID", help="Model id (0x...).")],
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
) -> None:
    """The family tree around a model: its ancestors and descendants, typed and with status."""
    if fmt not in ("text", "json"):
        raise ConfigError(f"unknown format {fmt!r}; use text or json")
    config = _config()
    registry = open_registry(config)
    mid = _id(model_id)
    with synced_index(config, registry) as index:
        index.require(mid)

        def status(m: bytes) -> str:
            found = index.get(m)
            if found is None:
                return "unknown"
            if found.status is Status.REVOKED:
                return "revoked"
            return "tainted" if index.is_tainted(m) else "active"

        def up(m: bytes, seen: frozenset[bytes]) -> list[dict[str, Any]]:
            return [
                {
                    "id": _hex(p.id),
                    "relation": p.relation.label,
                    "status": status(p.id),
                    "parents": up(p.id, seen | {p.id}),
                }
                for p in index.parents(m)
                if p.id not in seen
            ]

        def down(m: bytes, seen: frozenset[bytes]) -> list[dict[str, Any]]:
            return [
                {
                    "id": _hex(c),
                    "relation": r.label,
                    "status": status(c),
                    "children": down(c, seen | {c}),
                }
                for c, r in index.children(m)
                if c not in seen
            ]

        doc: dict[str, Any] = {
            "id": _hex(mid),
            "status": status(mid),
            "parents": up(mid, frozenset({mid})),
            "children": down(mid, frozenset({mid})),
        }
    if fmt == "json":
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    colours = {"active": "green", "revoked": "red", "tainted": "yellow", "unknown": "dim"}

    def label(node: dict[str, Any], arrow: str) -> str:
        c = colours[node["status"]]
        via = f"{arrow} {node['relation']} " if "relation" in node else ""
        return f"{via}[bold]{node['id'][:18]}…[/] [{c}]{node['status']}[/]"

    root = Tree(label(doc, ""))
    ancestors = root.add("[dim]ancestors[/]")

    def add_up(branch: Tree, nodes: list[dict[str, Any]]) -> None:
        for node in nodes:
            add_up(branch.add(label(node, "\u2190")), node["parents"])

    def add_down(branch: Tree, nodes: list[dict[str, Any]]) -> None:
        for node in nodes:
            add_down(branch.add(label(node, "\u2192")), node["children"])

    add_up(ancestors, doc["parents"])
    descendants = root.add("[dim]descendants[/]")
    add_down(descendants, doc["children"])
    out.print(root)
