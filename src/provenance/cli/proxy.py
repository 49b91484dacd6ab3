"""``provenance proxy``: an attesting reverse proxy in front of any HTTP inference server, and
the sidecar API for services that answer by themselves."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provenance.cli._common import (
    Authorize,
    BatchSize,
    MaxAge,
    MaxRequestBytes,
    NodeKeystore,
    NodePasswordFile,
    SenderKeystore,
    SenderPasswordFile,
    err,
    password,
    say,
    session,
)
from provenance.errors import ConfigError, PolicyError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from provenance.chain.attestor import AttestorContract
    from provenance.proxy import Token
    from provenance.session import Session

app = typer.Typer()

TOKEN_VARIABLE = "PROVENANCE_PROXY_TOKEN"


class _Stopped(Exception):
    """SIGTERM after the server shut down cleanly."""


def _stopped(signum: int, frame: object) -> None:
    raise _Stopped


def _token(token_file: Path | None) -> Token | None:
    """The sidecar's token: ``--token-file``, else the environment variable, else none."""
    from provenance.proxy import Token

    if token_file is not None:
        try:
            text = token_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the token file {token_file}: {exc}") from exc
        return Token.of(text, source=f"the token file {token_file}")
    value = os.environ.get(TOKEN_VARIABLE)
    if value is not None:
        return Token.of(value, source=TOKEN_VARIABLE)
    return None


def _authorised_node(
    clients: Session,
    mid: bytes,
    model_digest: bytes,
    *,
    authorize: bool,
    node_keystore: Path | None,
    node_password_file: Path | None,
) -> tuple[LocalAccount, AttestorContract]:
    """(the node's key, the OutputAttestor sending as the sender): the node authorised for the
    model and its registered digest, authorising it now when allowed (``--authorize``)."""
    from provenance.server.service import fetch_certificate

    sender = clients.signer
    contract = clients.attestor_for(sender)
    node = clients.node_account(mid, node_keystore, lambda: password(node_password_file))
    digest, _ = contract.authorization(mid, node.address)
    if digest != model_digest:
        if not authorize:
            raise PolicyError(
                f"node {node.address} is not authorised for model 0x{mid.hex()}; the "
                "registrant (or its operator) must authorise it, or run with --authorize"
            )
        # the contract proves the digest against the model id's pre-image: the certificate's
        # registration fields; the proxy runs no image of its own (image id zero)
        certificate = fetch_certificate(mid, clients.registry, clients.storage)
        contract.authorize_node(mid, node.address, certificate.registration(), b"\x00" * 32)
        say(f"authorised node {node.address} for model 0x{mid.hex()}")
    return node, contract


@app.command("proxy")
def proxy(
    model_id: Annotated[
        str,
        typer.Option(
            "--model-id", help="The registered model (0x..., or a unique prefix of 8+ hex digits)."
        ),
    ],
    upstream: Annotated[
        str | None,
        typer.Option(help="The inference server's base URL (http://host:port[/prefix])."),
    ] = None,
    sidecar_only: Annotated[
        bool,
        typer.Option(
            "--sidecar-only",
            help="No upstream: serve only POST /_provenance/v1/attestations and receipts.",
        ),
    ] = False,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8701,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help=f"File holding the sidecar's bearer token (else {TOKEN_VARIABLE}; without "
            "either the sidecar API is off)."
        ),
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(help="Base of the receipt URLs (default: the Host each request names)."),
    ] = None,
    node_keystore: NodeKeystore = None,
    node_password_file: NodePasswordFile = None,
    keystore: SenderKeystore = None,
    password_file: SenderPasswordFile = None,
    authorize: Authorize = True,
    batch_size: BatchSize = 1000,
    max_age: MaxAge = 2.0,
    max_request_bytes: MaxRequestBytes = 1 << 20,
    max_response_bytes: Annotated[
        int, typer.Option(help="Largest upstream answer passed on (buffered; 502 beyond).")
    ] = 16 << 20,
    timeout: Annotated[
        float, typer.Option(help="Seconds the upstream may take to send or answer.")
    ] = 60.0,
    trust: Annotated[
        list[str] | None,
        typer.Option(
            "--trust",
            metavar="ADDRESS",
            help="A registrant whose models may be attested (repeatable; with [trust] registrants).",
        ),
    ] = None,
    max_backlog: Annotated[
        int, typer.Option(help="/_provenance/healthz fails when more outputs wait for the chain.")
    ] = 10_000,
    max_backlog_age: Annotated[
        float, typer.Option(help="...or when the oldest of them waited longer than this (s).")
    ] = 60.0,
) -> None:
    """Attest every answer of any HTTP inference server: forward each request to --upstream
    unchanged and journal each 2xx answer (SHA-256 of the request body and of the answer body,
    as sent) for anchoring on chain; the answer gets X-Provenance-Sequence and
    X-Provenance-Receipt headers. ?wait=true answers once it is anchored. Other answers pass
    unattested. The proxy's own paths: /_provenance/receipts/N, /_provenance/healthz and, with a
    token, the sidecar POST /_provenance/v1/attestations.

    Before it listens it checks the model is registered and neither revoked nor tainted, its
    registrant is trusted (--trust, [trust] registrants, REGISTRANT_ROLE in an allowlisted
    registry, or the sender itself) and the node is authorised for it on the OutputAttestor.
    """
    import uvicorn

    from provenance.attest import Attestor
    from provenance.proxy import ProxyApp, Upstream, server_options
    from provenance.server.service import check_servable, check_trusted_registrant

    if sidecar_only == (upstream is not None):
        raise ConfigError("give --upstream URL, or --sidecar-only (not both)")
    for name, value in (
        ("--max-request-bytes", max_request_bytes),
        ("--max-response-bytes", max_response_bytes),
    ):
        if value <= 0:
            raise ConfigError(f"{name} must be positive, not {value}")
    token = _token(token_file)
    if sidecar_only and token is None:
        raise ConfigError(
            f"--sidecar-only needs the sidecar's token: --token-file FILE or {TOKEN_VARIABLE}"
        )
    target = (
        None
        if upstream is None
        else Upstream(upstream, max_response_bytes=max_response_bytes, timeout=timeout)
    )
    clients = session(keystore=keystore, password_file=password_file, trust=trust)
    try:
        mid = clients.resolve_id(model_id)
        registry = clients.registry
        sender = clients.signer
        check_servable(mid, registry)
        check_trusted_registrant(
            mid, registry, clients.policy.registrants, serving_account=sender.address
        )
        event = registry.registration_event(mid)
        if event is None:
            raise PolicyError(f"model 0x{mid.hex()} has no registration event on chain")
        model_digest = bytes(event.args["modelDigest"])
        node, contract = _authorised_node(
            clients,
            mid,
            model_digest,
            authorize=authorize,
            node_keystore=node_keystore,
            node_password_file=node_password_file,
        )
        attestor = Attestor(
            mid,
            model_digest,
            node,
            contract,
            clients.config.state_dir
            / "attest"
            / f"{clients.chain_id}-{contract.address}-0x{mid.hex()}-{node.address}.sqlite",
            batch_size=batch_size,
            max_age=max_age,
        )
        attestor.start()
        # the app owns the attestor from here: its shutdown (SIGTERM or SIGINT) anchors what the
        # journal holds and closes it
        app_ = ProxyApp(
            attestor,
            registry,
            target,
            token=token,
            max_request_bytes=max_request_bytes,
            public_url=public_url,
            max_backlog=max_backlog,
            max_backlog_age=max_backlog_age,
            on_shutdown=err.print,
        )
        what = f"proxying {target}" if target is not None else "sidecar only"
        say(
            f"attesting model 0x{mid.hex()}: {what} on http://{host}:{port} - node "
            f"{attestor.node.address}; sidecar {'on' if token else 'off'}; receipts at "
            "/_provenance/receipts/N"
        )
        previous = signal.signal(signal.SIGTERM, _stopped)
        try:
            uvicorn.run(app_, host=host, port=port, **server_options())
        except _Stopped:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        clients.close()


__all__ = ["app"]
