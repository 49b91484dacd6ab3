"""Commands for model images: ``provenance image build / push / pull / run / verify`` (and
``bind``, :mod:`provenance.cli.image_bind`).

The engine is the configured one (``[docker] host`` / ``DOCKER_HOST``), else the stack's dockerd,
else the system's. Archives go to the configured storage, as with ``provenance ipfs``. The base
image is loaded into the engine from ``.tools/images/base-bookworm.tar`` (made by
``scripts/setup.sh``; for TorchScript ``torch-bookworm.tar``, made on first use) when the engine
lacks it. ``build --dockerfile`` builds an image of your own and checks the model inside it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from provenance.certificate import Certificate
    from provenance.images import DockerEngine, ImageRecord, LocalImage

from provenance.cli._common import AsJson, say, session
from provenance.cli.image_bind import bind
from provenance.errors import ImageError
from provenance.untrusted import loads_json

app = typer.Typer(
    help="Docker images of models, moved through IPFS and checked by image id.",
    no_args_is_help=True,
)
app.command("bind")(bind)


def _certificate(path: Path | None) -> Certificate | None:
    from provenance.certificate import body_of, load_certificate

    return body_of(load_certificate(path)) if path is not None else None


def _write_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")


def _image_json(image: LocalImage, record: ImageRecord | None = None) -> dict[str, Any]:
    report: dict[str, Any] = {"image_id": image.id, "tag": image.tag, "labels": dict(image.labels)}
    if record is not None:
        report["archive"] = record.archive
        report["size"] = record.size
    return report


Expect = Annotated[
    str | None,
    typer.Option("--expect", help="The image id (sha256:...) the archive must hold."),
]


@app.command()
def build(
    model: Annotated[
        Path,
        typer.Argument(
            help="The model: a file (pickle, ONNX, TorchScript, XGBoost, LightGBM, ...) or a "
            "folder (every file is copied)."
        ),
    ],
    certificate: Annotated[
        Path | None,
        typer.Option(
            "--certificate",
            help="The model's certificate: checks the model digest (and package versions), "
            "takes its recorded format, and labels the image with the certificate digest.",
        ),
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Default provenance/model:<digest>.")] = (
        None
    ),
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="The base image (with python3; default provenance/base:bookworm, for "
            "TorchScript provenance/torch:bookworm).",
        ),
    ] = None,
    base_rootfs: Annotated[
        Path | None,
        typer.Option(
            "--base-rootfs",
            help="Root file system tarball to load the base image from when the engine lacks "
            "it (default: .tools/images/<base>-bookworm.tar of this checkout).",
        ),
    ] = None,
    own: Annotated[
        Path | None,
        typer.Option(
            "--dockerfile",
            help="Build this Dockerfile instead (any format, your runtime); the model files "
            "inside the image are checked.",
        ),
    ] = None,
    context: Annotated[
        Path | None,
        typer.Option("--context", help="With --dockerfile: the build context (its folder)."),
    ] = None,
    model_path: Annotated[
        str | None,
        typer.Option(
            "--model-path",
            help="With --dockerfile: where the Dockerfile puts the model files in the image "
            "(default /opt/provenance/model).",
        ),
    ] = None,
    push: Annotated[bool, typer.Option("--push", help="Also push the image to IPFS.")] = False,
    as_json: AsJson = False,
) -> None:
    """Build a Docker image that serves a model (predictions from stdin), or your own."""
    from provenance.images import MODEL_DIR, push_to_ipfs

    if own is None and (context is not None or model_path is not None):
        raise ImageError("--context and --model-path go with --dockerfile")
    body = _certificate(certificate)
    with session() as clients:
        engine = clients.engine
        if own is not None:
            from provenance.images import build_own_image

            image = build_own_image(
                engine,
                model,
                own,
                context=context,
                model_path=model_path or MODEL_DIR,
                certificate=body,
                tag=tag,
            )
        else:
            image = _build_generated(engine, model, body, tag, base, base_rootfs)
        record = push_to_ipfs(engine, image.id, clients.storage) if push else None
    if as_json:
        _write_json(_image_json(image, record))
        return
    say(f"built {image.id} as {image.tag}")
    if record is not None:
        say(f"pushed its archive ({record.size} bytes) to IPFS: {record.archive}")


def _build_generated(
    engine: DockerEngine,
    model: Path,
    body: Certificate | None,
    tag: str | None,
    base: str | None,
    base_rootfs: Path | None,
) -> LocalImage:
    """The generated image: its base loaded when the engine lacks it (the torch base's root
    file system built first, once, when this checkout has none)."""
    from provenance.images import (
        BASE_IMAGE,
        TORCH_IMAGE,
        base_for,
        build_model_image,
        default_rootfs,
        ensure_base_image,
        make_rootfs,
        served_format,
    )

    base = base or base_for(served_format(model, body))
    if base in (BASE_IMAGE, TORCH_IMAGE):
        rootfs = base_rootfs or default_rootfs(Path(sys.prefix), base)
        if base == TORCH_IMAGE and not engine.has(base) and not rootfs.is_file():
            say(
                f"building the base image {base} from Debian packages (python3-torch, CPU; "
                "a few minutes, once)"
            )
            rootfs = make_rootfs(Path(sys.prefix), base)
        ensure_base_image(engine, rootfs, base)
    return build_model_image(engine, model, certificate=body, tag=tag, base=base)


@app.command()
def push(
    image: Annotated[str, typer.Argument(help="Any image of the engine, by tag or id.")],
    as_json: AsJson = False,
) -> None:
    """Stream `docker save` of an image into IPFS; prints the archive's CID."""
    from provenance.images import push_to_ipfs

    with session() as clients:
        record = push_to_ipfs(clients.engine, image, clients.storage)
    if as_json:
        _write_json(record.model_dump(mode="json", exclude_none=True))
    else:
        sys.stdout.write(record.archive + "\n")


@app.command()
def pull(
    cid: Annotated[str, typer.Argument(help="The CID of an image archive.")],
    expect: Expect = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Default provenance/ipfs:<cid>.")] = None,
    as_json: AsJson = False,
) -> None:
    """Fetch an image archive (verified against its CID), load it, check its image id."""
    from provenance.images import pull_from_ipfs

    with session() as clients:
        image = pull_from_ipfs(clients.engine, clients.storage, cid, expect, tag=tag)
    if as_json:
        _write_json(_image_json(image))
    else:
        say(f"loaded {image.id} as {image.tag}")


@app.command()
def run(
    cid: Annotated[str, typer.Argument(help="The CID of a model image archive.")],
    expect: Expect = None,
    request: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help='JSON request: a list of rows, or {"instances": rows}; default stdin.',
        ),
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="predict, predict_proba, decision_function...")
    ] = "predict",
) -> None:
    """Pull a model image, run one prediction in it (no network), print the predictions.

    With --expect and that image already in the engine, nothing is fetched: an image id is the
    digest of the image's config, which names every layer by digest."""
    from provenance.images import pull_from_ipfs, run_prediction

    try:
        raw = request.read_bytes() if request is not None else sys.stdin.buffer.read()
    except OSError as exc:
        raise ImageError(f"cannot read the request {request}: {exc.strerror}") from None
    instances = loads_json(raw, what="the request", error=ImageError)
    with session() as clients:
        engine = clients.engine
        if expect is not None and engine.has(expect):
            image = expect
        else:
            image = pull_from_ipfs(engine, clients.storage, cid, expect).id
        predictions = run_prediction(engine, image, instances, method=method)
    sys.stdout.write(json.dumps({"predictions": predictions}) + "\n")


@app.command()
def verify(
    image: Annotated[str, typer.Argument(help="An image of the engine, by tag or id.")],
    certificate: Annotated[Path, typer.Option("--certificate", help="The model's certificate.")],
) -> None:
    """Check that the model files inside an image have the certificate's model digest."""
    from provenance.certificate import body_of, load_certificate
    from provenance.images import verify_model_image

    body = body_of(load_certificate(certificate))
    with session() as clients:
        verify_model_image(clients.engine, image, body.model.digest)
    say(f"{image} holds model {body.model.digest}")
