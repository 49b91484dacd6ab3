"""`provenance node authorize|deauthorize|list`: which inference nodes may attest the outputs
of a model on the OutputAttestor.

Authorising proves the model digest against the model id's pre-image: the registration is
taken from the family-tree index (synced from the trusted registry's events), so no IPFS is
needed. The sender must be the model's registrant or an operator it approved.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provenance.cli._common import AsJson, PasswordFile, out, say, session
from provenance.cli.roles import account_address
from provenance.errors import ChainError, ConfigError

if TYPE_CHECKING:
    from provenance.chain.attestor import AttestorContract
    from provenance.registration import Registration
    from provenance.session import Session

app = typer.Typer(help="Inference nodes allowed to attest a model's outputs.", no_args_is_help=True)

ModelArgument = Annotated[
    str, typer.Argument(help="A model id (0x + 64 hex digits, or a unique prefix of 8+).")
]
NodeArgument = Annotated[str, typer.Argument(help="The node's address, or its keystore file.")]
Keystore = Annotated[
    Path | None,
    typer.Option(
        help="Encrypted keyfile JSON of the model's registrant or its operator (else "
        "PROVENANCE_KEYSTORE)."
    ),
]


def registration_of(s: Session, model_id: bytes) -> tuple[Registration, str]:
    """The registration ``model_id`` commits to and its registrant, from the index; checked
    against the id before anything is sent."""
    from provenance.registration import Registration

    indexed = s.index.require(model_id)
    registration = Registration(
        certificate_digest=indexed.certificate_digest,
        model_digest=indexed.model_digest,
        data_commitment=indexed.data_commitment,
        parents=tuple(s.index.parents(model_id)),
    )
    if registration.model_id_for(indexed.registrant) != model_id:
        raise ChainError(
            f"the index's record of 0x{model_id.hex()} does not derive its id; delete "
            f"{s.config.state_dir / 'index'} and try again"
        )
    return registration, indexed.registrant


def _sending_attestor(s: Session, model_id: bytes) -> tuple[AttestorContract, str]:
    """The trusted attestor sending as the session's signer, who must be the registrant of
    ``model_id`` or its operator; and that registrant."""
    registrant = s.registry.record(model_id).registrant
    attestor = s.attestor_for()
    if attestor.registry_address() != s.registry.address:
        raise ConfigError(
            f"the OutputAttestor at {attestor.address} reads the ModelRegistry at "
            f"{attestor.registry_address()}, not the trusted one at {s.registry.address}: fix "
            "[chain.contracts] or the deployment file"
        )
    sender = s.signer.address
    if sender != registrant and not attestor.is_operator(registrant, sender):
        raise ChainError(
            f"{sender} may not authorise nodes for 0x{model_id.hex()}: only its registrant "
            f"{registrant} or an operator it approved may"
        )
    return attestor, registrant


def _image_id(text: str | None) -> bytes:
    from provenance.registration import as_bytes32

    return b"\x00" * 32 if text is None else as_bytes32(text, "image id")


@app.command()
def authorize(
    model: ModelArgument,
    node: NodeArgument,
    image_id: Annotated[
        str | None,
        typer.Option(
            "--image-id",
            help="The container image the node serves it in (sha256:HEX); default none (the "
            "model's files).",
        ),
    ] = None,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Authorise a node to attest outputs of a registered, active model."""
    address = account_address(node)
    image = _image_id(image_id)
    with session(keystore=keystore, password_file=password_file) as s:
        model_id = s.resolve_id(model)
        registration, _ = registration_of(s, model_id)
        attestor, _ = _sending_attestor(s, model_id)
        receipt = attestor.authorize_node(model_id, address, registration, image)
    tx = "0x" + bytes(receipt["transactionHash"]).hex()
    say(f"authorised node {address} for 0x{model_id.hex()} (tx {tx})")


@app.command()
def deauthorize(
    model: ModelArgument,
    node: NodeArgument,
    keystore: Keystore = None,
    password_file: PasswordFile = None,
) -> None:
    """Withdraw a node's authorisation for a model (its later outputs are no longer valid)."""
    address = account_address(node)
    with session(keystore=keystore, password_file=password_file) as s:
        model_id = s.resolve_id(model)
        attestor, _ = _sending_attestor(s, model_id)
        digest, _image = attestor.authorization(model_id, address)
        if digest == b"\x00" * 32:
            say(f"node {address} is not authorised for 0x{model_id.hex()}; nothing sent")
            return
        receipt = attestor.deauthorize_node(model_id, address)
    tx = "0x" + bytes(receipt["transactionHash"]).hex()
    say(f"deauthorised node {address} for 0x{model_id.hex()} (tx {tx})")


@app.command("list")
def list_nodes(
    model: Annotated[
        str | None, typer.Argument(help="Only this model (id or unique 8+ hex prefix).")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """The nodes authorised now (from the OutputAttestor's events), for one model or all."""
    from provenance.chain.authorizations import authorized_nodes

    with session() as s:
        model_ids = None if model is None else [s.resolve_id(model)]
        found = authorized_nodes(s.attestor, model_ids, from_block=s.attestor_from_block)
        attestor = s.attestor.address
    if as_json:
        report = {"attestor": attestor, "nodes": [a.to_json() for a in found]}
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    if not found:
        out.print(f"no authorised nodes (OutputAttestor {attestor})", highlight=False)
        return
    for a in found:
        image = "none" if a.image_id == b"\x00" * 32 else "sha256:" + a.image_id.hex()
        out.print(
            f"0x{a.model_id.hex()}  node {a.node}  image {image}  (block {a.block})",
            highlight=False,
            soft_wrap=True,
        )


__all__ = ["app", "registration_of"]
