"""Commands for the model registry: register, show, revoke, tree, impact."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import rfc8785
import typer
from rich.console import Console

if TYPE_CHECKING:
    from provenance.registration import Registration
    from provenance.session import Session

from provenance.cli._common import AsJson, PasswordFile, out, say, session, shown
from provenance.cli.record_view import (
    MAX_REASON,
    confirm_revocation,
    model_format_of,
    print_show,
    show_report,
    store_reason,
)
from provenance.cli.record_view import reader as _reader
from provenance.errors import ChainError, ConfigError, ContractRevertError, ProvenanceError
from provenance.registration import Registration
from provenance.untrusted import loads_json

app = typer.Typer()

Keystore = Annotated[
    Path | None,
    typer.Option(help="Encrypted keyfile JSON of the sender (else PROVENANCE_KEYSTORE)."),
]


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
    from provenance.registration import Parent, Registration, as_bytes32

    try:
        document = loads_json(path.read_bytes(), what=f"certificate {path}", error=ConfigError)
    except FileNotFoundError:
        raise ConfigError(f"certificate {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"certificate {path} is not readable: {exc.strerror}") from exc
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


def certificate_creator(document: dict[str, Any], path: Path) -> str | None:
    """The creator a schema-v1 certificate names (None for an unsigned body without one, and
    for the older minimal form)."""
    from provenance.certificate import body_of, parse_certificate

    if "version" in document or "certificate" in document:
        return body_of(parse_certificate(document, f"certificate {path}")).creator
    return None


def _hex(b: bytes | None) -> str | None:
    return None if b is None else "0x" + b.hex()


@app.command()
def register(
    certificate: Annotated[Path, typer.Argument(help="Certificate JSON file.")],
    acknowledge_revoked_parents: Annotated[
        bool, typer.Option(help="Accept parents that are already revoked (recorded on chain).")
    ] = False,
    publish: Annotated[
        bool,
        typer.Option(
            "--publish/--no-publish",
            help="Store the certificate in IPFS first, so the model can be verified by id.",
        ),
    ] = True,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
    as_json: AsJson = False,
) -> None:
    """Store a model's birth certificate in IPFS and register it on chain (idempotent for the
    same registrant).

    The model id binds its registrant, and verifiers accept only the creator's registration:
    a certificate that names a creator is registered with the creator's keystore only."""

    registration, document = certificate_registration(certificate, acknowledge_revoked_parents)
    with session(keystore=keystore, password_file=password_file) as clients:
        registry = clients.registry_for()
        creator = certificate_creator(document, certificate)
        if creator is not None and creator.lower() != (registry.sender or "").lower():
            raise ConfigError(
                f"certificate {certificate} names creator {creator} but the sender is "
                f"{registry.sender}: register it with the creator's keystore (--keystore or "
                "PROVENANCE_KEYSTORE), so the model id binds the creator"
            )
        cids = _publish_certificate(clients, document, certificate) if publish else None
        try:
            done = registry.register(registration)
        except ContractRevertError as exc:
            if exc.error != "UnauthorizedRegistrant":
                raise
            raise ChainError(
                f"{exc}: this registry is on an allowlist and {registry.sender} does not hold "
                "REGISTRANT_ROLE; an admin grants it with `provenance role grant registrant "
                f"{registry.sender}`"
            ) from exc
    result = {
        "id": _hex(done.id),
        "registrant": done.registrant,
        "certificate_digest": "sha256:" + registration.certificate_digest.hex(),
        "cid": cids[0] if cids else None,
        "envelope_cid": cids[1] if cids else None,
        "storage": clients.storage_kind if cids else None,
        "transaction": done.transaction,
        "block": done.block,
        "already_registered": done.already,
        "parents": [{"id": _hex(p.id), "relation": p.relation.label} for p in registration.parents],
    }
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    if cids is not None:
        say(f"stored the certificate: ipfs://{cids[0]} ({clients.storage_kind})")
    if done.already:
        say(f"already registered by {done.registrant}: {result['id']}")
    else:
        say(f"registered {result['id']} in block {done.block} (tx {done.transaction})")
    if cids is None:
        out.print(
            "[yellow]not stored:[/] the model can be verified by id only once the certificate "
            f"is in IPFS (`provenance publish {shown(certificate)}`)",
            highlight=False,
            soft_wrap=True,
        )


def _publish_certificate(
    session: Session, document: dict[str, Any], path: Path
) -> tuple[str, str | None]:
    """Store a certificate before it is registered (the body's CID, the envelope's); an error
    that says why not, and that nothing was registered, when it cannot be stored."""
    from provenance.capture.publish import publish
    from provenance.certificate import parse_certificate, raw_block_cid

    try:
        if "version" in document or "certificate" in document:
            done = publish(
                parse_certificate(document, f"certificate {path}"),
                storage=session.storage,
                register=False,
            )
            return done.cid, done.envelope_cid
        cid = session.storage.put_bytes(rfc8785.dumps(document))
        expected = raw_block_cid(hashlib.sha256(rfc8785.dumps(document)).digest())
        if cid != expected:
            raise ConfigError(
                f"storage returned CID {cid} for the certificate, expected {expected}"
            )
        return cid, None
    except ProvenanceError as exc:
        raise ConfigError(
            f"not registered: the certificate could not be stored, so nobody could verify the "
            f"model by its id ({exc}); --no-publish registers it anyway"
        ) from exc


@app.command()
def show(
    model_id: Annotated[
        str,
        typer.Argument(metavar="ID", help="Model id (0x...) or a unique prefix of 8+ hex digits."),
    ],
    as_json: AsJson = False,
) -> None:
    """Show a model's on-chain record, its name (from its certificate in IPFS), parents and
    children, when it was registered, and why it was revoked."""
    from provenance import lineage

    clients = session()
    registry = clients.registry
    mid = clients.resolve_id(model_id)
    record = registry.record(mid)
    if not record.exists:
        raise ProvenanceError(f"model {model_id} is not registered on chain {clients.chain_id}")
    with clients, _reader(clients) as read:
        index = clients.index
        indexed = index.require(mid)
        parents = [(p.id, p.relation.label) for p in index.parents(mid)]
        children = [(c, r.label) for c, r in index.children(mid)]
        digests = lineage.tree_certificate_digests(
            index, [mid, *(m for m, _ in parents), *(m for m, _ in children)]
        )
        names = lineage.certificate_names(read.storage, digests, fetch_missing=read.fetch)
        reason = (
            None
            if indexed.revoke_reason is None
            else lineage.stored_text(
                read.storage, indexed.revoke_reason, max_size=MAX_REASON, fetch_missing=read.fetch
            )
        )
        model_format = model_format_of(read, bytes(indexed.certificate_digest))
        report = show_report(record, indexed, index.is_tainted(mid), names, reason, model_format)
        report["parents"] = [
            {"id": _hex(m), "relation": r, "name": names.get(m)} for m, r in parents
        ]
        report["children"] = [
            {"id": _hex(m), "relation": r, "name": names.get(m)} for m, r in children
        ]
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    print_show(report)


@app.command()
def revoke(
    model_id: Annotated[
        str,
        typer.Argument(metavar="ID", help="Model id (0x...) or a unique prefix of 8+ hex digits."),
    ],
    reason: Annotated[
        str,
        typer.Option(
            help="Why: free text (stored in IPFS; its sha-256 goes on chain), or a 0x/sha256: "
            "digest, e.g. of an incident report."
        ),
    ],
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", "-y", help="Do not ask for confirmation (revoking cannot be undone)."
        ),
    ] = False,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Revoke a model, permanently (its registrant or an auditor): it and every descendant
    fail verification from then on. Asks for confirmation unless --yes."""
    from provenance.registration import as_bytes32

    text: bytes | None = None
    try:
        digest = as_bytes32(reason, "reason")
    except ProvenanceError:
        text = reason.encode()
        if len(text) > MAX_REASON:
            raise ConfigError(
                f"the reason has {len(text)} bytes; at most {MAX_REASON}: store a longer report "
                "elsewhere and give its sha256: digest"
            ) from None
        digest = hashlib.sha256(text).digest()
    with session(keystore=keystore, password_file=password_file) as clients:
        mid = clients.resolve_id(model_id)
        confirm_revocation(model_id, reason if text is not None else None, yes)
        registry = clients.registry_for()
        stored = None if text is None else store_reason(clients, text, digest)
        tx = registry.revoke(mid, digest)
    where = f", text in IPFS {stored}" if stored else ""
    say(f"revoked {model_id} (reason sha256:{digest.hex()}{where}, tx {tx})")


Formats = Annotated[
    str,
    typer.Option("--format", help="text, json, mermaid, dot, html (one page) or svg (Graphviz)."),
]


@app.command()
def tree(
    model_id: Annotated[
        str,
        typer.Argument(metavar="ID", help="Model id (0x...) or a unique prefix of 8+ hex digits."),
    ],
    fmt: Formats = "text",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to FILE instead of stdout.")
    ] = None,
) -> None:
    """The family tree around a model: its ancestors and descendants, typed and with status
    (revoked; tainted: an ancestor is revoked), names (from the certificates in IPFS) and
    registration times (UTC)."""
    from provenance import lineage

    if fmt not in lineage.FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; use one of: {', '.join(lineage.FORMATS)}")
    clients = session()
    mid = clients.resolve_id(model_id)
    with clients, _reader(clients) as read:
        index = clients.index
        index.require(mid)
        family = lineage.build_family_tree(index, mid)
        ids = [n.id for n in family.nodes]
        digests = lineage.tree_certificate_digests(index, ids)
        names = lineage.certificate_names(read.storage, digests, fetch_missing=read.fetch)
        family = family.with_names(names).with_times(
            {m: clients.registry.record(m).registered_at for m in ids}
        )
    if fmt == "text":
        if output is None:
            out.print(lineage.rich_tree(family, unknown_names=True))
            return
        with output.open("w", encoding="utf-8") as stream:
            Console(file=stream, width=200, no_color=True).print(
                lineage.rich_tree(family, unknown_names=True)
            )
        say(f"wrote the family tree of {model_id} to {output}")
        return
    text = lineage.render(family, fmt)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc}") from exc
    say(f"wrote the family tree of {model_id} ({fmt}) to {output}")


@app.command()
def impact(
    model_id: Annotated[
        str,
        typer.Argument(metavar="ID", help="Model id (0x...) or a unique prefix of 8+ hex digits."),
    ],
    as_json: AsJson = False,
) -> None:
    """What a revocation of ID affects: every descendant (how it is reached, whether it is
    revoked already) and the inference nodes authorised for ID or any descendant."""
    from provenance import lineage
    from provenance.chain.authorizations import authorized_nodes
    from provenance.chain.types import Status

    clients = session()
    mid = clients.resolve_id(model_id)
    with clients.index as index:
        focus = index.require(mid)
        affected = lineage.impact(index, mid)
        status = lineage.node_status(index, mid)
    attestor = clients.attestor if clients.has_attestor else None
    nodes = (
        None
        if attestor is None
        else authorized_nodes(
            attestor, [mid, *(a.id for a in affected)], from_block=clients.attestor_from_block
        )
    )
    report: dict[str, Any] = {
        "id": _hex(mid),
        "status": status,
        "revoked": focus.status is Status.REVOKED,
        "affected": [a.to_json() for a in affected],
        "nodes": None if nodes is None else [n.to_json() for n in nodes],
        "attestor": None if attestor is None else attestor.address,
    }
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    state = "is revoked" if report["revoked"] else "if it were revoked"
    count = f"{len(affected)} model is" if len(affected) == 1 else f"{len(affected)} models are"
    out.print(f"[bold]{model_id}[/] ({status}): {state}, {count} affected")
    for a in affected:
        chain = " ".join(f"\u2192 {e.relation} 0x{e.child.hex()[:16]}\u2026" for e in a.path)
        mark = "[red]revoked already[/]" if a.revoked else f"[dark_orange]{a.status}[/]"
        out.print(f"  0x{a.id.hex()}  {mark}  via {chain}", highlight=False, soft_wrap=True)
    if nodes is None:
        out.print("[yellow]no OutputAttestor configured: authorised nodes not checked[/]")
        return
    out.print(f"inference nodes authorised for these models: {len(nodes)}")
    for n in nodes:
        out.print(
            f"  {n.node}  for 0x{n.model_id.hex()}  (image 0x{n.image_id.hex()[:16]}\u2026,"
            f" block {n.block})",
            highlight=False,
            soft_wrap=True,
        )
