"""``provenance serve``: an attesting HTTP inference service for one registered model."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from provenance.config import Config


from provenance.cli._common import config as _config
from provenance.cli._common import err, password, say, signer
from provenance.cli._common import tools as _tools
from provenance.errors import ConfigError, PolicyError

app = typer.Typer()


def node_account(
    config: Config, chain_id: int, model_id: bytes, keystore: Path | None, pw: Path | None
) -> LocalAccount:
    """The node's signing key: an encrypted keystore, or on a local dev chain a key made once
    and kept in the state dir (mode 0600), one per model."""
    from eth_account import Account

    from provenance.chain.keys import load_keystore
    from provenance.config import is_loopback_url

    if keystore is not None:
        return load_keystore(keystore, password(pw))
    if not is_loopback_url(config.chain.rpc_url):
        raise ConfigError("serving on a remote chain needs --node-keystore FILE (the node's key)")
    path = config.state_dir / "nodes" / f"{chain_id}-0x{model_id.hex()}.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(Account.create().key.hex() + "\n")
    account: LocalAccount = Account.from_key(path.read_text(encoding="utf-8").strip())
    return account


class _Stopped(Exception):
    """SIGTERM after the server shut down cleanly."""


def _stopped(signum: int, frame: object) -> None:
    raise _Stopped


@app.command()
def serve(
    model_id: Annotated[str, typer.Option("--model-id", help="The registered model (0x...).")],
    source: Annotated[
        str,
        typer.Option(
            help="image (run its Docker image from IPFS), artifacts (its files), or auto."
        ),
    ] = "auto",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8700,
    node_keystore: Annotated[
        Path | None, typer.Option(help="Encrypted keyfile of the node's signing key.")
    ] = None,
    node_password_file: Annotated[
        Path | None, typer.Option(help="File holding the node keystore's password.")
    ] = None,
    keystore: Annotated[
        Path | None,
        typer.Option(
            help="Sender's keyfile: pays for anchoring; registrant or operator to authorise."
        ),
    ] = None,
    password_file: Annotated[
        Path | None, typer.Option(help="File holding the sender keystore's password.")
    ] = None,
    authorize: Annotated[
        bool,
        typer.Option(
            help="Authorise the node for the model when it is not (sender = registrant or operator)."
        ),
    ] = True,
    batch_size: Annotated[int, typer.Option(help="Seal a batch at this many outputs.")] = 1000,
    max_age: Annotated[
        float, typer.Option(help="...or when its oldest output waited this long (s).")
    ] = 2.0,
    max_request_bytes: Annotated[int, typer.Option(help="Largest request body accepted.")] = 1
    << 20,
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
    from provenance.chain.attestor import AttestorContract
    from provenance.chain.tx import Transactor
    from provenance.cli.registry import open_attestor, open_registry
    from provenance.images import RECORD_MEDIA_TYPE, DockerEngine
    from provenance.registration import as_bytes32
    from provenance.server.service import (
        check_servable,
        check_trusted_registrant,
        create_app,
        fetch_certificate,
        load_served_model,
    )
    from provenance.stack import Stack
    from provenance.storage import open_storage
    from provenance.verify.policy import policy_from_config

    if source not in ("auto", "image", "artifacts"):
        raise ConfigError(f"unknown source {source!r}; use image, artifacts or auto")
    mid = as_bytes32(model_id, "model id")
    config = _config()
    policy = policy_from_config(config, trust=trust or [])
    stack = Stack(config, _tools())
    registry = open_registry(config)
    w3 = registry.w3
    chain_id = int(w3.eth.chain_id)
    sender = signer(
        w3, config.chain.rpc_url, keystore or config.chain.keystore, password_file, "anchoring"
    )
    check_servable(mid, registry)
    check_trusted_registrant(mid, registry, policy.registrants, serving_account=sender.address)
    # only a servable, trusted model gets as far as IPFS
    storage = open_storage(config, stack_runs_kubo=stack.is_running("ipfs"))
    found = open_attestor(config, registry)
    if found is None:
        raise ConfigError(
            f"no OutputAttestor deployed or configured (deployment file {config.deployment_file}); "
            "run `provenance up` or `provenance deploy`"
        )
    contract = AttestorContract(w3, found[0].address, Transactor(w3, sender))
    node = node_account(config, chain_id, mid, node_keystore, node_password_file)
    workdir = config.state_dir / "serve" / f"0x{mid.hex()}"
    certificate = fetch_certificate(mid, registry, storage)
    has_image = any(a.media_type == RECORD_MEDIA_TYPE for a in certificate.attachments)
    chosen: Literal["image", "artifacts"] = (
        "image" if source == "image" or (source == "auto" and has_image) else "artifacts"
    )
    engine = DockerEngine(stack.docker_host()) if chosen == "image" else None
    served = load_served_model(
        mid,
        registry=registry,
        storage=storage,
        workdir=workdir,
        source=chosen,
        engine=engine,
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
            config.state_dir
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
        storage.close()
        if engine is not None:
            engine.close()
