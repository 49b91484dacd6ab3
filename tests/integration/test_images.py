"""Model images against the session stack's real dockerd and kubo: a scikit-learn model is
trained and certified, its image built and pushed inside the run (so the certificate records
the image id and archive CID), removed, pulled back from IPFS, and its prediction in a
network-less container equals the in-process one. Images are OCI image layouts in IPFS: a second
model on the same base adds only its own layer; a pull fetches only the layers the engine lacks.
A lying node, a tampered manifest, config or layer, an unexpected image id and a different image
under the expected tag are refused with nothing loaded; records of single archives still pull."""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import httpx
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from provenance.capture import track
from provenance.certificate import Certificate
from provenance.errors import ImageError, IntegrityError
from provenance.images import (
    LABEL_CERTIFICATE,
    LABEL_MODEL_DIGEST,
    LABEL_PACKAGES,
    ChunkReader,
    DockerEngine,
    ImageRecord,
    LocalImage,
    attach_image,
    build_model_image,
    ensure_base_image,
    image_record_of,
    import_rootfs,
    present_layers,
    pull_from_ipfs,
    push_to_ipfs,
    read_layout,
    run_prediction,
    verify_model_image,
)
from provenance.stack import Stack
from provenance.storage import Kubo, dagpb
from provenance.storage import cid as cids
from tests.integration.conftest import BASE_ROOTFS
from tests.integration.test_ipfs_storage import flatfs_block

pytestmark = pytest.mark.integration

PROVENANCE = Path(sys.executable).parent / "provenance"


@pytest.fixture(scope="module")
def engine(stack: Stack) -> Iterator[DockerEngine]:
    with DockerEngine(stack.docker_host()) as client:
        yield client


@pytest.fixture(scope="module")
def kubo(stack: Stack) -> Iterator[Kubo]:
    with Kubo(stack.config.ipfs.api, timeout=600) as client:
        yield client


@dataclass(frozen=True)
class Trained:
    model: Pipeline
    rows: list[list[float]]
    certificate: Certificate
    model_path: Path
    image: LocalImage
    record: ImageRecord


@pytest.fixture(scope="module")
def trained(
    engine: DockerEngine, kubo: Kubo, base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Trained:
    """Train, build the image, push it and attach its record, all inside the run."""
    folder = tmp_path_factory.mktemp("images")
    X, y = load_iris(return_X_y=True)
    with track("Iris in a box", output_dir=folder / "run", storage=kubo, source_dir=folder) as run:
        model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=0.5))])
        model.fit(X, y)
        run.log_params(C=0.5)
        run.log_model(model)
        image = build_model_image(engine, folder / "run" / "model.pkl")
        record = push_to_ipfs(engine, image.id, kubo)
        attach_image(run, record)
    assert run.certificate is not None
    return Trained(model, X.tolist(), run.certificate, folder / "run" / "model.pkl", image, record)


def removed(engine: DockerEngine, image_id: str) -> None:
    if engine.has(image_id):
        engine.client.images.remove(image_id, force=True)
    assert not engine.has(image_id)


def present(engine: DockerEngine, kubo: Kubo, trained: Trained) -> None:
    if not engine.has(trained.record.image_id):
        pull_from_ipfs(engine, kubo, trained.record.archive, trained.record.image_id)


def test_the_image_round_trips_through_ipfs_and_predicts_as_in_process(
    engine: DockerEngine, kubo: Kubo, trained: Trained
) -> None:
    certificate, record = trained.certificate, trained.record
    assert image_record_of(certificate, kubo) == record
    assert record.image_id == trained.image.id
    assert record.model_digest == certificate.model.digest
    assert trained.image.labels[LABEL_MODEL_DIGEST] == certificate.model.digest
    assert "scikit-learn==" in trained.image.labels[LABEL_PACKAGES]

    removed(engine, record.image_id)
    pulled = pull_from_ipfs(engine, kubo, record.archive, record.image_id)
    assert pulled.id == record.image_id
    assert pulled.tag == f"provenance/ipfs:{record.archive}"
    assert engine.image(pulled.tag).id == record.image_id
    verify_model_image(engine, pulled.id, certificate.model.digest)

    rows = trained.rows
    assert run_prediction(engine, pulled.id, rows) == trained.model.predict(rows).tolist()
    proba = run_prediction(engine, pulled.id, {"instances": rows, "method": "predict_proba"})
    assert proba == trained.model.predict_proba(rows).tolist()


def a_leaf(kubo: Kubo, cid: str) -> bytes:
    """A raw leaf near the start of a file DAG (the third link at each level)."""
    node = cids.parse(cid)
    while cids.codec(node) != cids.RAW:
        links = dagpb.decode_node(kubo.block(node)).links
        node = links[min(2, len(links) - 1)].cid
    return node


def test_a_layer_altered_in_the_node_is_refused_and_nothing_is_loaded(
    stack: Stack, engine: DockerEngine, kubo: Kubo, trained: Trained
) -> None:
    record = trained.record
    removed(engine, record.image_id)
    layout = read_layout(kubo, record.archive, record.image_id)
    leaf = a_leaf(kubo, layout.layers[-1].cid)  # the model's own layer: the engine lacks it
    block_file = flatfs_block(stack, leaf)
    original = block_file.read_bytes()
    block_file.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        with pytest.raises(IntegrityError) as info:
            pull_from_ipfs(engine, kubo, record.archive, record.image_id)
        assert str(info.value) == (
            f"block {cids.to_str(leaf)} from {kubo.api_url} does not match its CID"
        )
        assert not engine.has(record.image_id)
    finally:
        block_file.write_bytes(original)


def repo_size(kubo: Kubo) -> int:
    """What kubo's `repo stat` says the repo holds, in bytes."""
    response = httpx.post(f"{kubo.api_url}/api/v0/repo/stat", params={"size-only": "true"})
    return int(response.json()["RepoSize"])


@pytest.fixture(scope="module")
def sibling(
    engine: DockerEngine, trained: Trained, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A second model image on the same base (another model, same packages): its id."""
    path = tmp_path_factory.mktemp("sibling") / "model.pkl"
    X, y = load_iris(return_X_y=True)
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=2.0))])
    path.write_bytes(pickle.dumps(model.fit(X, y), protocol=5))
    return build_model_image(engine, path, tag="provenance/model:sibling").id


def test_a_second_model_on_the_same_base_adds_only_its_own_layer(
    engine: DockerEngine, kubo: Kubo, trained: Trained, sibling: str
) -> None:
    first = read_layout(kubo, trained.record.archive, trained.record.image_id)
    before = repo_size(kubo)
    record = push_to_ipfs(engine, sibling, kubo)
    added = repo_size(kubo) - before
    second = read_layout(kubo, record.archive, sibling)
    print(f"first push {first.size} bytes of blobs, second push added {added} bytes to the repo "
          f"({added / first.size:.4%})")  # fmt: skip
    assert record.archive in kubo.pins()
    # the base, the packages and the entrypoint are the same blobs, under the same CIDs
    assert first.layers[:-1] == second.layers[:-1]
    assert first.layers[-1].cid != second.layers[-1].cid
    assert added <= 0.05 * first.size


def remove_every_image(engine: DockerEngine) -> None:
    """Remove every image of the engine, children before their parents (the session's engine
    holds other tests' images, some built on others: a parent with children cannot go)."""
    for _ in range(20):
        images = engine.api.images(all=True)
        if not images:
            return
        for image in images:
            with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
                engine.client.images.remove(image["Id"], force=True)
    raise AssertionError(f"images left: {engine.api.images(all=True)}")


def test_a_pull_into_an_engine_without_the_base_fetches_every_layer(
    engine: DockerEngine, kubo: Kubo, trained: Trained
) -> None:
    record = trained.record
    layout = read_layout(kubo, record.archive, record.image_id)
    try:
        remove_every_image(engine)  # no layer of the model's chain is left
        assert present_layers(engine, [layer.digest for layer in layout.layers]) == 0
        fetched: list[int] = []
        pulled = pull_from_ipfs(
            engine, kubo, record.archive, record.image_id, progress=fetched.append
        )
        assert pulled.id == record.image_id
        assert sum(fetched) == sum(layer.size for layer in layout.layers)
        rows = trained.rows[:5]
        assert run_prediction(engine, pulled.id, rows) == trained.model.predict(rows).tolist()
    finally:
        ensure_base_image(engine, BASE_ROOTFS)


def test_a_pull_into_an_engine_with_the_base_skips_the_layers_it_has(
    engine: DockerEngine, kubo: Kubo, trained: Trained, base_image: str
) -> None:
    record = trained.record
    removed(engine, record.image_id)
    layout = read_layout(kubo, record.archive, record.image_id)
    skip = present_layers(engine, [layer.digest for layer in layout.layers])
    assert skip >= 1  # the base at least
    fetched: list[int] = []
    pulled = pull_from_ipfs(engine, kubo, record.archive, record.image_id, progress=fetched.append)
    assert pulled.id == record.image_id
    assert sum(fetched) == sum(layer.size for layer in layout.layers[skip:])
    assert (
        run_prediction(engine, pulled.id, trained.rows[:3])
        == trained.model.predict(trained.rows[:3]).tolist()
    )
    fetched.clear()  # the engine has it all: nothing is fetched but the small blobs
    pull_from_ipfs(engine, kubo, record.archive, record.image_id, progress=fetched.append)
    assert fetched == []


def tampered(kubo: Kubo, cid: str, folder: Path, change: str) -> str:
    """The layout at ``cid`` with one blob changed (its name kept) and put back; its CID."""
    kubo.get_path(cid, folder)
    blobs = folder / "blobs" / "sha256"
    index = json.loads((folder / "index.json").read_bytes())
    manifest_path = blobs / index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads(manifest_path.read_bytes())
    if change == "manifest":
        manifest["layers"].reverse()
        manifest_path.write_bytes(json.dumps(manifest).encode())
    elif change == "config":
        path = blobs / manifest["config"]["digest"].removeprefix("sha256:")
        path.write_bytes(path.read_bytes().replace(b'"Cmd":null', b'"Cmd":["sh"]'))
    else:
        path = blobs / manifest["layers"][-1]["digest"].removeprefix("sha256:")
        data = bytearray(path.read_bytes())
        data[700] ^= 1  # inside the first file's content, same size
        path.write_bytes(bytes(data))
    return kubo.put_path(folder, pin=False)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("manifest", "the manifest of the image layout {cid} is sha256:"),
        ("config", "the config of the image layout {cid} is sha256:"),
        ("layer", "layer 3 of the image layout {cid} is not sha256:"),
    ],
)
def test_a_tampered_layout_is_refused_before_anything_is_loaded(
    engine: DockerEngine, kubo: Kubo, trained: Trained, tmp_path: Path, change: str, reason: str
) -> None:
    record = trained.record
    cid = tampered(kubo, record.archive, tmp_path / "layout", change)
    removed(engine, record.image_id)
    with pytest.raises(IntegrityError) as info:
        pull_from_ipfs(engine, kubo, cid, record.image_id)
    assert str(info.value).startswith(reason.format(cid=cid))
    assert not engine.has(record.image_id)


def test_a_record_of_a_single_archive_still_pulls(
    engine: DockerEngine, kubo: Kubo, trained: Trained
) -> None:
    """Records made before image layouts name a `docker save` tar stored as one file."""
    record = trained.record
    present(engine, kubo, trained)
    cid = kubo.put_stream(ChunkReader(engine.api.get_image(record.image_id, chunk_size=1 << 20)))  # type: ignore[arg-type]
    removed(engine, record.image_id)
    pulled = pull_from_ipfs(engine, kubo, cid, record.image_id)
    assert pulled.id == record.image_id
    assert engine.image(f"provenance/ipfs:{cid}").id == record.image_id


def tiny_rootfs(folder: Path) -> Path:
    path = folder / "tiny.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("hello.txt")
        data = b"not the model you are looking for\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def impostor(
    engine: DockerEngine, kubo: Kubo, trained: Trained, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str]:
    """Another image saved under the model image's tag (`docker save TAG`, so the archive
    carries that tag) and put into IPFS; the model image keeps its tag. (id, CID)"""
    tag = trained.image.tags[0]
    other = import_rootfs(engine, tiny_rootfs(tmp_path_factory.mktemp("tiny")), tag)
    assert engine.image(tag).id == other.id
    reader = ChunkReader(engine.client.images.get(tag).save(chunk_size=1 << 20))
    cid = kubo.put_stream(reader)  # type: ignore[arg-type]
    removed(engine, other.id)
    present(engine, kubo, trained)
    engine.client.images.get(trained.image.id).tag(tag)
    return other.id, cid


def test_a_different_image_under_the_expected_tag_is_refused(
    engine: DockerEngine, kubo: Kubo, trained: Trained, impostor: tuple[str, str]
) -> None:
    other_id, cid = impostor
    tag = trained.image.tags[0]
    with pytest.raises(IntegrityError) as info:
        pull_from_ipfs(engine, kubo, cid, trained.image.id, tag=tag)
    assert str(info.value) == (
        f"the archive {cid} holds image {other_id}, expected {trained.image.id}"
    )
    assert not engine.has(other_id)
    assert engine.image(tag).id == trained.image.id  # the archive's tag moved nothing


def cli(
    *args: str, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROVENANCE), *args], env=env, input=stdin, capture_output=True, text=True, timeout=600
    )


def test_the_cli_refuses_an_unexpected_image(
    cli_env: dict[str, str], trained: Trained, impostor: tuple[str, str], engine: DockerEngine
) -> None:
    other_id, cid = impostor
    result = cli("image", "pull", cid, "--expect", trained.image.id, env=cli_env)
    assert result.returncode == 1
    assert result.stderr == (
        f"error: the archive {cid} holds image {other_id}, expected {trained.image.id}\n"
    )
    assert not engine.has(other_id)
    result = cli("image", "pull", cid, "--expect", "latest", env=cli_env)
    assert result.returncode == 1
    assert result.stderr == "error: 'latest' is not an image id (sha256:<64 hex digits>)\n"


def test_the_cli_pushes_pulls_and_runs(
    cli_env: dict[str, str], engine: DockerEngine, kubo: Kubo, trained: Trained
) -> None:
    record = trained.record
    present(engine, kubo, trained)
    pushed = cli("image", "push", record.image_id, "--json", env=cli_env)
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout) == record.model_dump(mode="json", exclude_none=True)

    removed(engine, record.image_id)
    rows = trained.rows[:7]
    result = cli(
        "image", "run", record.archive, "--expect", record.image_id, env=cli_env,
        stdin=json.dumps(rows),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"predictions": trained.model.predict(rows).tolist()}
    assert engine.image(f"provenance/ipfs:{record.archive}").id == record.image_id


def test_an_image_built_after_the_certificate_names_it(
    engine: DockerEngine, trained: Trained, cli_env: dict[str, str]
) -> None:
    certificate = trained.certificate
    path = trained.model_path.parent / "certificate.json"  # what the run wrote
    result = cli(
        "image", "build", str(trained.model_path), "--certificate", str(path),
        "--tag", "provenance/model:certified", "--json", env=cli_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["tag"] == "provenance/model:certified"
    image = engine.image(report["image_id"])
    assert image.labels == report["labels"]
    assert image.labels[LABEL_CERTIFICATE] == certificate.digest_text
    assert image.labels[LABEL_MODEL_DIGEST] == certificate.model.digest
    assert image.labels["org.opencontainers.image.title"] == "Iris in a box"
    verify_model_image(engine, image.id, certificate.model.digest)
    result = cli("image", "verify", image.id, "--certificate", str(path), env=cli_env)
    assert result.returncode == 0, result.stderr


def test_an_image_of_another_model_fails_verification(
    engine: DockerEngine, trained: Trained, base_image: str
) -> None:
    with pytest.raises(IntegrityError) as info:
        verify_model_image(engine, base_image, trained.certificate.model.digest)
    assert str(info.value) == (
        f"image {base_image} is labelled model None, expected {trained.certificate.model.digest}"
    )


def test_a_model_file_that_is_not_the_certified_one_is_refused(
    engine: DockerEngine, trained: Trained, tmp_path: Path
) -> None:
    other = tmp_path / "model.pkl"
    other.write_bytes(trained.model_path.read_bytes() + b"\0")
    with pytest.raises(IntegrityError) as info:
        build_model_image(engine, other, certificate=trained.certificate)
    assert str(info.value).startswith(f"{other} has model digest sha256:")
    assert str(info.value).endswith(f", the certificate names {trained.certificate.model.digest}")


def test_a_failing_prediction_says_why(engine: DockerEngine, kubo: Kubo, trained: Trained) -> None:
    present(engine, kubo, trained)
    with pytest.raises(ImageError) as info:
        run_prediction(engine, trained.image.id, {"rows": []})
    assert str(info.value) == (
        f"the prediction in {trained.image.id} failed (exit 2): error: a request object needs "
        '"instances": a list of rows'
    )
