"""``provenance serve``: an attesting HTTP inference service for one registered model."""

from __future__ import annotations

import signal
from typing import Annotated, Literal

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

app = typer.Typer()


class _Stopped(Exception):
    """SIGTERM after the server shut down cleanly."""


def _stopped(signum: int, frame: object) -> None:
    raise _Stopped


@app.command()
def serve(
    model_id: Annotated[
        str,
        typer.Option(
            "--model-id", help="The registered model (0x..., or a unique prefix of 8+ hex digits)."
        ),
    ],
    source: Annotated[
        str,
        typer.Option(
            help="image (run its Docker image from IPFS), artifacts (its files), or auto "
            "(the image when the certificate records one or the registrant bound one)."
        ),
    ] = "auto",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8700,
    node_keystore: NodeKeystore = None,
    node_password_file: NodePasswordFile = None,
    keystore: SenderKeystore = None,
    password_file: SenderPasswordFile = None,
    authorize: Authorize = True,
    batch_size: BatchSize = 1000,
    max_age: MaxAge = 2.0,
    max_request_bytes: MaxRequestBytes = 1 << 20,
    trust: Annotated[
        list[str] | None,
        typer.Option(
            "--trust",
            metavar="ADDRESS",
            help="A registrant whose models may be served (repeatable; with [trust] registrants).",
        ),
    ] = None,
    max_backlog: Annotated[
        int, typer.Option(help="/healthz fails when more outputs than this wait for the chain.")
    ] = 10_000,
    max_backlog_age: Annotated[
        float, typer.Option(help="...or when the oldest of them waited longer than this (s).")
    ] = 60.0,
) -> None:
    """Serve a registered model over HTTP, each prediction attested on chain.

    Before it loads anything it checks the model's registrant is trusted (--trust, [trust]
    registrants, REGISTRANT_ROLE in an allowlisted registry, or the sender itself). Before it
    listens it checks the model is registered and neither revoked nor tainted, fetches
    its certificate from IPFS by the digest on chain, and checks the model files (or its image)
    against the certificate's model digest; it refuses to start on any mismatch.
    """
    import uvicorn

    from provenance.attest import Attestor
    from provenance.images import RECORD_MEDIA_TYPE
    from provenance.server.service import (
        check_servable,
        check_trusted_registrant,
        create_app,
        fetch_certificate,
        load_served_model,
    )

    if source not in ("auto", "image", "artifacts"):
        raise ConfigError(f"unknown source {source!r}; use image, artifacts or auto")
    clients = session(keystore=keystore, password_file=password_file, trust=trust)
    mid = clients.resolve_id(model_id)
    policy = clients.policy
    registry = clients.registry
    chain_id = clients.chain_id
    sender = clients.signer
    check_servable(mid, registry)
    check_trusted_registrant(mid, registry, policy.registrants, serving_account=sender.address)
    # only a servable, trusted model gets as far as IPFS
    storage = clients.storage
    contract = clients.attestor_for(sender)
    node = clients.node_account(mid, node_keystore, lambda: password(node_password_file))
    workdir = clients.config.state_dir / "serve" / f"0x{mid.hex()}"
    certificate = fetch_certificate(mid, registry, storage)
    # an image recorded in the certificate, or bound on chain by the registrant afterwards
    has_image = any(a.media_type == RECORD_MEDIA_TYPE for a in certificate.attachments) or (
        source == "auto" and registry.image_binding(mid) is not None
    )
    chosen: Literal["image", "artifacts"] = (
        "image" if source == "image" or (source == "auto" and has_image) else "artifacts"
    )
    served = load_served_model(
        mid,
        registry=registry,
        storage=storage,
        workdir=workdir,
        source=chosen,
        engine=clients.engine if chosen == "image" else None,
        certificate=certificate,
        registrants=policy.registrants,
        serving_account=sender.address,
    )
    try:
        digest, _ = contract.authorization(mid, node.address)
        if digest != served.model_digest_bytes:
            if not authorize:
                raise PolicyError(
                    f"node {node.address} is not authorised for model 0x{mid.hex()}; the "
                    "registrant (or its operator) must authorise it, or run with --authorize"
                )
            contract.authorize_node(
                mid, node.address, served.certificate.registration(), served.image_id_bytes
            )
            say(f"authorised node {node.address} for model 0x{mid.hex()}")
        attestor = Attestor(
            mid,
            served.model_digest_bytes,
            node,
            contract,
            clients.config.state_dir
            / "attest"
            / f"{chain_id}-{contract.address}-0x{mid.hex()}-{node.address}.sqlite",
            batch_size=batch_size,
            max_age=max_age,
        )
        attestor.start()
        # the app owns the attestor and the model from here: its shutdown (SIGTERM or SIGINT)
        # anchors what the journal holds, closes it and stops the model's container
        app_ = create_app(
            served,
            attestor,
            registry,
            max_request_bytes=max_request_bytes,
            max_backlog=max_backlog,
            max_backlog_age=max_backlog_age,
            on_shutdown=err.print,
        )
        say(
            f"serving {served.certificate.model_name} (0x{mid.hex()}) from its {served.source}"
            f"{' ' + served.image_id if served.image_id else ''} on http://{host}:{port} "
            f"- node {node.address}; OpenAPI at /docs"
        )
        # uvicorn re-raises the signal it stopped on once it has shut down; SIGTERM's default
        # action would then kill the process before the clean-up below
        previous = signal.signal(signal.SIGTERM, _stopped)
        try:
            uvicorn.run(app_, host=host, port=port, log_level="warning")
        except _Stopped:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        served.close()
        clients.close()
