"""``provenance image bind MODEL RECORD.json`` (or ``--image IMAGE``): the model's registrant
binds a Docker image to it on chain, after registration (:mod:`provenance.bound_image`).

Before anything is sent it checks what the contract cannot: the record names the registered
model's digest, and the OCI layout it names in IPFS holds the record's image id (with
``--image``, the image is pushed first and the model files inside it are hashed too). The
record's canonical JSON goes to IPFS as one raw block, its sha-256 on chain with the image id;
the contract lets only the registrant bind, and only while the model is active.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from provenance.cli._common import AsJson, PasswordFile, say, session
from provenance.errors import ConfigError, ImageError

if TYPE_CHECKING:
    from provenance.images import ImageRecord
    from provenance.session import Session


def read_record(path: Path) -> ImageRecord:
    """The image record in ``path`` (as ``provenance image push --json`` writes it), bounded
    before it is decoded; ImageError with one line when it is not one."""
    from pydantic import ValidationError

    from provenance.bound_image import MAX_RECORD_BYTES
    from provenance.images import ImageRecord
    from provenance.untrusted import loads_json

    try:
        with path.open("rb") as f:
            raw = f.read(MAX_RECORD_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the image record {path}: {exc.strerror}") from None
    if len(raw) > MAX_RECORD_BYTES:
        raise ImageError(f"the image record {path} is larger than {MAX_RECORD_BYTES} bytes")
    data = loads_json(raw, what=f"the image record {path}", error=ImageError)
    try:
        return ImageRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the record"
        raise ImageError(f"{path} is not an image record: {where}: {first['msg']}") from None


def _check_bindable(clients: Session, model_id: bytes, sender: str) -> str:
    """The model's digest (``sha256:<hex>``) once the model is active and ``sender`` is its
    registrant (what the contract enforces, checked first so nothing is pushed in vain)."""
    from provenance.chain.types import Status
    from provenance.errors import PolicyError
    from provenance.hashing import format_digest

    registry = clients.registry
    record = registry.record(model_id)
    if record.status is Status.NONE:
        raise ConfigError(f"model 0x{model_id.hex()} is not registered")
    if record.registrant != sender:
        raise PolicyError(
            f"{sender} is not the registrant of model 0x{model_id.hex()} ({record.registrant}): "
            "only its registrant may bind an image to it"
        )
    if record.status is Status.REVOKED:
        raise PolicyError(f"model 0x{model_id.hex()} is revoked: no image may be bound to it")
    event = registry.registration_event(model_id)
    if event is None:
        raise ConfigError(f"the registration event of model 0x{model_id.hex()} was not found")
    return format_digest(bytes(event.args["modelDigest"]))


def bind(
    model_id: Annotated[
        str,
        typer.Argument(
            metavar="MODEL", help="Model id (0x...) or a unique prefix of 8+ hex digits."
        ),
    ],
    record_file: Annotated[
        Path | None,
        typer.Argument(
            metavar="RECORD.json",
            help="The image record (provenance image push --json); or give --image.",
        ),
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            "--image",
            help="An image of the engine (tag or id): pushed to IPFS, its model files hashed, "
            "then bound.",
        ),
    ] = None,
    keystore: Annotated[
        Path | None,
        typer.Option(help="Encrypted keyfile JSON of the registrant (else PROVENANCE_KEYSTORE)."),
    ] = None,
    password_file: PasswordFile = None,
    as_json: AsJson = False,
) -> None:
    """Bind a Docker image to a registered model, on chain (its registrant only; a later
    binding replaces it). `provenance verify MODEL` and `provenance serve --source image` then
    use it; an image merely labelled for the certificate is not the model's."""
    from provenance.bound_image import (
        check_record_layout,
        image_id_bytes,
        record_digest,
        store_record,
    )
    from provenance.errors import IntegrityError

    if (record_file is None) == (image is None):
        raise ConfigError("give the image record file or --image IMAGE (one of them)")
    record = read_record(record_file) if record_file is not None else None
    with session(keystore=keystore, password_file=password_file) as clients:
        mid = clients.resolve_id(model_id)
        sender = clients.signer.address
        digest = _check_bindable(clients, mid, sender)
        if clients.storage_kind == "gateway":
            raise ConfigError(
                "the configured storage is a read-only gateway: cannot store the record"
            )
        if image is not None:
            from provenance.images import push_to_ipfs, verify_model_image

            engine = clients.engine
            verify_model_image(engine, image, digest)
            record = push_to_ipfs(engine, image, clients.storage)
        assert record is not None
        if record.model_digest != digest:
            raise IntegrityError(
                f"the image record names model digest {record.model_digest}, model "
                f"0x{mid.hex()} has {digest}; not binding"
            )
        check_record_layout(clients.storage, record)
        cid = store_record(clients.storage, record)
        transaction = clients.registry_for().bind_image(
            mid, image_id_bytes(record), record_digest(record)
        )
    report: dict[str, Any] = {
        "model_id": f"0x{mid.hex()}",
        "image_id": record.image_id,
        "archive": record.archive,
        "record_digest": "sha256:" + record_digest(record).hex(),
        "record_cid": cid,
        "transaction": transaction,
    }
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return
    say(
        f"bound image {record.image_id} to model 0x{mid.hex()} (record {report['record_digest']} "
        f"in IPFS {cid}, tx {transaction})"
    )


__all__ = ["bind", "read_record"]
