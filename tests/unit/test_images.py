"""Model images without a Docker engine: the archive check that guards `docker load`, the
deterministic base-image archive, which packages a pickle needs, the generated Dockerfile, the
inference entrypoint (stdin and HTTP), image records in certificates, and the error when no
engine answers."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import socket
import subprocess
import sys
import tarfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from provenance import image_entrypoint
from provenance.capture import track
from provenance.errors import ImageError, IntegrityError, ServiceError
from provenance.hashing import format_digest
from provenance.images import (
    BASE_IMAGE,
    LABEL_PYTHON,
    RECORD_MEDIA_TYPE,
    TORCH_IMAGE,
    ArchiveCheck,
    DockerEngine,
    ImageLayout,
    ImageRecord,
    attach_image,
    base_for,
    default_rootfs,
    distributions_for,
    dockerfile,
    image_record_of,
    load_archive,
    make_rootfs,
    pickle_globals,
    read_layout,
    rootfs_archive,
    served_format,
    store_layout,
    verified_archive,
)
from provenance.images.build import RUNTIME_MODULES
from provenance.images.oci import LAYER_TYPE, kind_of
from provenance.model_formats import FORMATS, Detected
from provenance.storage import LocalStore

PROVENANCE = Path(sys.executable).parent / "provenance"


# ---------------------------------------------------------------- synthetic docker save archives
def tar_of(
    members: list[tuple[str, bytes | None]], *, symlinks: dict[str, str] | None = None
) -> bytes:
    """A tar with regular files (bytes) and directories (None), in this order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return out.getvalue()


def image_id_of(config: bytes) -> str:
    return "sha256:" + hashlib.sha256(config).hexdigest()


CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
OTHER = b'{"architecture":"amd64","os":"linux","config":{"Labels":{"x":"y"}}}'
LAYER = b"layer bytes " * 1000


def save_archive(config: bytes = CONFIG, *, tags: list[str] | None = None) -> bytes:
    """What `docker save` writes: layer folders, the config, manifest.json, repositories."""
    name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = [{"Config": name, "RepoTags": tags, "Layers": ["abc/layer.tar"]}]
    return tar_of(
        [
            ("abc", None),
            ("abc/VERSION", b"1.0"),
            ("abc/layer.tar", LAYER),
            (name, config),
            ("manifest.json", json.dumps(manifest).encode()),
            ("repositories", json.dumps({"evil/model": {"latest": "abc"}}).encode()),
        ]
    )


def chunks_of(data: bytes, size: int = 1000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def check(archive: bytes, expected: str | None) -> tuple[bytes, ArchiveCheck]:
    found = ArchiveCheck()
    out = b"".join(verified_archive(chunks_of(archive), expected, found, what="the archive X"))
    return out, found


def members(archive: bytes) -> dict[str, bytes | None]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: (f.read() if (f := tar.extractfile(m)) is not None else None) for m in tar}


def test_a_genuine_archive_passes_without_its_tags() -> None:
    out, found = check(save_archive(tags=["provenance/model:latest"]), image_id_of(CONFIG))
    assert found.image_id == image_id_of(CONFIG)
    got = members(out)
    assert got["abc/layer.tar"] == LAYER
    assert got[hashlib.sha256(CONFIG).hexdigest() + ".json"] == CONFIG
    assert "repositories" not in got
    manifest = json.loads(got["manifest.json"] or b"")
    assert manifest[0]["RepoTags"] is None
    assert manifest[0]["Layers"] == ["abc/layer.tar"]


def test_without_an_expected_id_any_single_image_passes() -> None:
    _, found = check(save_archive(OTHER), None)
    assert found.image_id == image_id_of(OTHER)


def test_another_image_is_refused_before_the_manifest_reaches_the_engine() -> None:
    found = ArchiveCheck()
    sent: list[bytes] = []
    with pytest.raises(IntegrityError) as info:
        for chunk in verified_archive(
            chunks_of(save_archive(OTHER)), image_id_of(CONFIG), found, what="the archive X"
        ):
            sent.append(chunk)
    assert str(info.value) == (
        f"the archive X holds image {image_id_of(OTHER)}, expected {image_id_of(CONFIG)}"
    )
    assert b"manifest.json" not in b"".join(sent)
    assert found.image_id is None


def test_two_images_are_refused() -> None:
    names = [hashlib.sha256(c).hexdigest() + ".json" for c in (CONFIG, OTHER)]
    manifest: list[dict[str, Any]] = [{"Config": n, "RepoTags": None, "Layers": []} for n in names]
    archive = tar_of(
        [(names[0], CONFIG), (names[1], OTHER), ("manifest.json", json.dumps(manifest).encode())]
    )
    with pytest.raises(IntegrityError) as info:
        check(archive, None)
    assert str(info.value) == "the archive X holds 2 images; expected one"


def test_an_archive_without_manifest_is_refused() -> None:
    with pytest.raises(IntegrityError) as info:
        check(tar_of([("abc/layer.tar", LAYER)]), None)
    assert str(info.value) == (
        "the archive X has no manifest.json: it is not a docker save archive"
    )


def test_a_config_that_is_a_symlink_does_not_count() -> None:
    name = hashlib.sha256(CONFIG).hexdigest() + ".json"
    manifest: list[dict[str, Any]] = [{"Config": name, "RepoTags": None, "Layers": []}]
    archive = tar_of(
        [("real.json", CONFIG), ("manifest.json", json.dumps(manifest).encode())],
        symlinks={name: "real.json"},
    )
    with pytest.raises(IntegrityError) as info:
        check(archive, image_id_of(CONFIG))
    assert str(info.value) == f"the archive X does not contain the image config {name}"


def test_a_config_replaced_later_in_the_archive_is_the_one_hashed() -> None:
    name = hashlib.sha256(CONFIG).hexdigest() + ".json"
    manifest: list[dict[str, Any]] = [{"Config": name, "RepoTags": None, "Layers": []}]
    archive = tar_of(
        [(name, CONFIG), (f"./{name}", OTHER), ("manifest.json", json.dumps(manifest).encode())]
    )
    with pytest.raises(IntegrityError) as info:
        check(archive, image_id_of(CONFIG))
    assert str(info.value) == (
        f"the archive X holds image {image_id_of(OTHER)}, expected {image_id_of(CONFIG)}"
    )


def test_members_outside_the_archive_are_refused() -> None:
    with pytest.raises(IntegrityError) as info:
        check(tar_of([("../etc/passwd", b"x")]), None)
    assert str(info.value) == "the archive X has a member outside the archive: ../etc/passwd"


def test_a_truncated_archive_is_refused() -> None:
    archive = save_archive()
    with pytest.raises(IntegrityError) as info:
        check(archive[: len(archive) // 3], None)
    assert str(info.value).startswith("the archive X is not a valid image archive: ")


# ---------------------------------------------------------------- OCI image layouts in IPFS
BASE_LAYER = b"base layer " * 100_000  # ~1.1 MB: several leaves, a file node with links
MODEL_LAYER_A = b"model A " * 1000
MODEL_LAYER_B = b"model B " * 1000


def layered(layers: list[bytes], label: str = "x") -> tuple[bytes, str]:
    """A docker save archive of an image with these layers (the second layer of each image is
    stored as a symlink when it repeats the first, as docker save does); (archive, image id)."""
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps(
        {"config": {"Labels": {"l": label}}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    ).encode()
    name = hashlib.sha256(config).hexdigest() + ".json"
    folders = [f"{i:064x}" for i in range(len(layers))]
    files: list[tuple[str, bytes | None]] = []
    symlinks: dict[str, str] = {}
    for i, (folder, layer) in enumerate(zip(folders, layers, strict=True)):
        files.append((folder, None))
        first = layers.index(layer)
        if first == i:
            files.append((f"{folder}/layer.tar", layer))
        else:
            symlinks[f"{folder}/layer.tar"] = f"../{folders[first]}/layer.tar"
    manifest = [{"Config": name, "RepoTags": None, "Layers": [f"{f}/layer.tar" for f in folders]}]
    files += [(name, config), ("manifest.json", json.dumps(manifest).encode())]
    return tar_of(files, symlinks=symlinks), image_id_of(config)


def stored(store: LocalStore, layers: list[bytes], label: str = "x") -> ImageLayout:
    archive, image_id = layered(layers, label)
    return store_layout(chunks_of(archive, 65536), image_id, store)


def test_an_image_round_trips_as_an_oci_layout_and_loads_as_docker_save(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "blocks")
    layout = stored(store, [BASE_LAYER, MODEL_LAYER_A, BASE_LAYER])
    root = tmp_path / "layout"
    store.get_path(layout.cid, root)
    assert (root / "oci-layout").read_bytes() == b'{"imageLayoutVersion":"1.0.0"}'
    index = json.loads((root / "index.json").read_bytes())
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    (descriptor,) = index["manifests"]
    blobs = root / "blobs" / "sha256"
    manifest = json.loads((blobs / descriptor["digest"][7:]).read_bytes())
    assert manifest["config"]["digest"] == layout.image_id
    assert [d["mediaType"] for d in manifest["layers"]] == [LAYER_TYPE] * 3
    for blob in blobs.iterdir():  # every blob is named by its digest
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    assert len(list(blobs.iterdir())) == 4  # manifest, config, two distinct layers

    read = read_layout(store, layout.cid, layout.image_id)
    assert read.layers == layout.layers
    assert read.image_id == layout.image_id
    archive = members(b"".join(load_archive(store, read)))
    assert list(archive)[-1] == "manifest.json"
    (entry,) = json.loads(archive["manifest.json"] or b"")
    assert entry["RepoTags"] is None
    assert [archive[name] for name in entry["Layers"]] == [BASE_LAYER, MODEL_LAYER_A, BASE_LAYER]
    assert image_id_of(archive[entry["Config"]] or b"") == layout.image_id


def test_two_images_on_one_base_share_the_base_layer_blob(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "blocks")
    first = stored(store, [BASE_LAYER, MODEL_LAYER_A], "a")
    second = stored(store, [BASE_LAYER, MODEL_LAYER_B], "b")
    assert first.cid != second.cid
    assert first.layers[0] == second.layers[0]  # same digest, same CID
    assert first.layers[1].cid != second.layers[1].cid


def test_layers_the_engine_has_are_left_out_of_the_load_archive(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "blocks")
    layout = stored(store, [BASE_LAYER, MODEL_LAYER_A])
    archive = members(b"".join(load_archive(store, layout, skip=1)))
    (entry,) = json.loads(archive["manifest.json"] or b"")
    assert entry["Layers"][0] not in archive  # docker load looks it up by chain instead
    assert archive[entry["Layers"][1]] == MODEL_LAYER_A


def test_an_archive_whose_layer_is_not_its_diff_id_is_not_stored(tmp_path: Path) -> None:
    archive, image_id = layered([BASE_LAYER])
    forged = archive.replace(BASE_LAYER[:11], b"evil layer ", 1)
    with pytest.raises(IntegrityError, match="are not the ones its config names"):
        store_layout(chunks_of(forged, 65536), image_id, LocalStore(tmp_path / "blocks"))


def test_an_archive_of_another_image_is_not_stored(tmp_path: Path) -> None:
    archive, image_id = layered([BASE_LAYER])
    with pytest.raises(IntegrityError) as info:
        store_layout(chunks_of(archive), "sha256:" + "0" * 64, LocalStore(tmp_path / "b"))
    assert str(info.value) == f"the image holds image {image_id}, expected sha256:{'0' * 64}"


def tampered(store: LocalStore, layout: ImageLayout, tmp_path: Path, change: str) -> str:
    """The layout with one blob changed and its directory re-stored; its new CID. ``change``:
    manifest (a layer digest swapped), config (a label), index (another manifest digest)."""
    root = tmp_path / change
    store.get_path(layout.cid, root)
    blobs = root / "blobs" / "sha256"
    index = json.loads((root / "index.json").read_bytes())
    manifest_path = blobs / index["manifests"][0]["digest"][7:]
    manifest = json.loads(manifest_path.read_bytes())
    if change == "config":
        config_path = blobs / manifest["config"]["digest"][7:]
        config_path.write_bytes(config_path.read_bytes().replace(b'"l": "x"', b'"l": "y"'))
    elif change == "manifest":
        manifest["layers"][1]["digest"] = manifest["layers"][0]["digest"]
        manifest_path.write_bytes(json.dumps(manifest).encode())
    elif change == "layer":
        layer_path = blobs / manifest["layers"][1]["digest"][7:]
        layer_path.write_bytes(MODEL_LAYER_B)
    return store.put_path(root)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("config", "the config of the image layout {cid} is sha256:"),
        ("manifest", "the manifest of the image layout {cid} is sha256:"),
    ],
)
def test_a_tampered_manifest_or_config_is_refused_before_anything_is_sent(
    tmp_path: Path, change: str, message: str
) -> None:
    store = LocalStore(tmp_path / "blocks")
    layout = stored(store, [BASE_LAYER, MODEL_LAYER_A])
    cid = tampered(store, layout, tmp_path, change)
    with pytest.raises(IntegrityError) as info:
        read_layout(store, cid, layout.image_id)
    assert str(info.value).startswith(message.format(cid=cid))


def test_a_tampered_layer_is_refused_before_the_manifest_is_sent(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "blocks")
    layout = stored(store, [BASE_LAYER, MODEL_LAYER_A])
    cid = tampered(store, layout, tmp_path, "layer")
    read = read_layout(store, cid, layout.image_id)  # small blobs are fine: the layer is not
    sent: list[bytes] = []
    with pytest.raises(IntegrityError) as info:
        for chunk in load_archive(store, read):
            sent.append(chunk)
    assert str(info.value) == f"layer 1 of the image layout {cid} is not {layout.layers[1].digest}"
    assert b"manifest.json" not in b"".join(sent)


def test_a_layout_of_another_image_is_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "blocks")
    layout = stored(store, [BASE_LAYER])
    with pytest.raises(IntegrityError) as info:
        read_layout(store, layout.cid, "sha256:" + "1" * 64)
    assert str(info.value) == (
        f"the image layout {layout.cid} holds image {layout.image_id}, expected sha256:{'1' * 64}"
    )


def test_records_of_single_archives_still_read_as_archives(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "blocks")
    old = store.put_bytes(save_archive())
    big = store.put_bytes(save_archive() + b"\0" * 600_000)  # a file node, not one raw leaf
    assert kind_of(store, old) == kind_of(store, big) == "archive"
    assert kind_of(store, stored(store, [BASE_LAYER]).cid) == "layout"


# ---------------------------------------------------------------- the base image archive
def rootfs(tmp_path: Path) -> Path:
    path = tmp_path / "rootfs.tar"
    path.write_bytes(
        tar_of([("./usr/", None), ("./usr/lib/", None), ("./usr/lib/python3.11/", None)])
        + b""  # tarfile pads the archive itself
    )
    return path


def test_a_root_file_system_gives_the_same_image_id_every_time(tmp_path: Path) -> None:
    path = rootfs(tmp_path)
    first, second = ArchiveCheck(), ArchiveCheck()
    archive = b"".join(rootfs_archive(path, "provenance/base:test", first))
    assert archive == b"".join(rootfs_archive(path, "provenance/base:test", second))
    got = members(archive)
    config = got["config.json"] or b""
    assert first.image_id == second.image_id == image_id_of(config)
    assert got["layer/layer.tar"] == path.read_bytes()
    parsed = json.loads(config)
    assert parsed["rootfs"]["diff_ids"] == [image_id_of(path.read_bytes())]
    assert parsed["config"]["Labels"] == {LABEL_PYTHON: "3.11"}
    manifest = json.loads(got["manifest.json"] or b"")
    assert manifest == [
        {
            "Config": "config.json",
            "RepoTags": ["provenance/base:test"],
            "Layers": ["layer/layer.tar"],
        }
    ]
    # and the check pull uses accepts it
    _, found = check(archive, first.image_id)
    assert found.image_id == first.image_id


# ---------------------------------------------------------------- what a pickle needs
def pipeline() -> Pipeline:
    X, y = load_iris(return_X_y=True)
    return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X, y)


def test_a_scikit_learn_pickle_needs_scikit_learn_and_its_requirements(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(pipeline(), protocol=5))
    found = pickle_globals(path)
    assert ("sklearn.pipeline", "Pipeline") in found
    assert ("sklearn.preprocessing._data", "StandardScaler") in found
    dists = distributions_for(module for module, _ in found)
    assert {"scikit-learn", "numpy", "scipy", "joblib", "threadpoolctl"} <= set(dists)
    assert "pytest" not in dists


def test_older_protocols_are_read_too(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(StandardScaler(), protocol=2))
    assert ("sklearn.preprocessing._data", "StandardScaler") in pickle_globals(path)


def local_function(x: Any) -> Any:
    return x


def test_a_model_that_needs_a_module_of_no_distribution_is_refused() -> None:
    with pytest.raises(ImageError) as info:
        distributions_for(["sklearn.pipeline", "my_training_script"])
    assert str(info.value) == (
        "the model refers to module my_training_script, which no installed distribution "
        "provides: define what the model pickles in an installed package"
    )


def test_standard_library_modules_need_no_distribution() -> None:
    assert distributions_for(["collections", "copyreg", "builtins", "_codecs"]) == {}


def test_the_dockerfile() -> None:
    text = dockerfile(
        "provenance/base:bookworm",
        "3.11",
        "model.pkl",
        {"provenance.model.digest": "sha256:" + "ab" * 32, "a b": 'quote "x"'},
    )
    assert text == (
        "FROM provenance/base:bookworm\n"
        "COPY packages/ /\n"
        "COPY app/ /\n"
        "COPY model/ /\n"
        'LABEL "a b"="quote \\"x\\""\n'
        f'LABEL "provenance.model.digest"="sha256:{"ab" * 32}"\n'
        "USER 65534:65534\n"
        'ENTRYPOINT ["python3", "-I", "/opt/provenance/entrypoint.py", "--model", '
        '"/opt/provenance/model/model.pkl"]\n'
    )


def test_the_dockerfile_passes_the_format_and_serves_a_folder_from_its_model_folder() -> None:
    text = dockerfile("provenance/torch:bookworm", "3.11", "net.pt", {}, "torchscript")
    assert text.endswith(
        'ENTRYPOINT ["python3", "-I", "/opt/provenance/entrypoint.py", "--model", '
        '"/opt/provenance/model/net.pt", "--format", "torchscript"]\n'
    )
    text = dockerfile("provenance/base:bookworm", "3.11", ".", {}, "onnx")
    assert '"--model", "/opt/provenance/model", "--format", "onnx"]' in text


# ---------------------------------------------------------------- which runtime, which base
def onnx_file(path: Path) -> Path:
    """A real (tiny) ONNX model: y = x + 1, written by onnx itself."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "g", [x], [y], [one])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_the_format_decides_the_runtime_and_the_base(tmp_path: Path, model_file: Path) -> None:
    served = served_format(onnx_file(tmp_path / "m.onnx"))
    assert (served.format.name, served.entry, base_for(served)) == ("onnx", "m.onnx", BASE_IMAGE)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("trained on Tuesday")
    onnx_file(folder / "sub.onnx")
    assert served_format(folder).entry == "sub.onnx"
    assert served_format(model_file).format.name == "pickle"
    assert set(RUNTIME_MODULES) == {f.runtime for f in FORMATS.values() if f.runtime is not None}, (
        "every runtime of model_formats has its packages"
    )
    torch_like = Detected(FORMATS["torchscript"], "net.pt")
    assert base_for(torch_like) == TORCH_IMAGE


def test_a_certificate_whose_format_disagrees_with_the_files_is_refused(
    tmp_path: Path, model_file: Path
) -> None:
    with track("Model", output_dir=tmp_path / "out", environment=False) as run:
        run.log_model(model_file)
    certificate = run.certificate
    assert certificate is not None
    onnx = certificate.model_copy(
        update={"model": certificate.model.model_copy(update={"format": "onnx"})}
    )
    with pytest.raises(ImageError) as info:
        served_format(model_file, onnx)
    assert str(info.value) == (
        f"the certificate records format onnx, {model_file} is in format pickle"
    )
    # a format this version does not know ("files") leaves it to the files
    files = certificate.model_copy(
        update={"model": certificate.model.model_copy(update={"format": "files"})}
    )
    assert served_format(model_file, files).format.name == "pickle"


def test_the_torch_base_has_its_own_root_file_system_and_recipe(tmp_path: Path) -> None:
    prefix = tmp_path / "checkout" / ".venv"
    assert default_rootfs(prefix) == tmp_path / "checkout/.tools/images/base-bookworm.tar"
    assert default_rootfs(prefix, TORCH_IMAGE) == (
        tmp_path / "checkout/.tools/images/torch-bookworm.tar"
    )
    with pytest.raises(ImageError) as info:
        make_rootfs(prefix, TORCH_IMAGE)
    assert str(info.value) == (
        f"the base image {TORCH_IMAGE} needs scripts/base-image.sh of a provenance checkout, "
        f"and {tmp_path}/checkout/scripts/base-image.sh does not exist"
    )
    script = Path(__file__).resolve().parents[2] / "scripts" / "base-image.sh"
    text = script.read_text()
    assert "python3-torch" in text and "libgomp1" in text


# ---------------------------------------------------------------- the entrypoint
@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.pkl"
    path.write_bytes(pickle.dumps(pipeline(), protocol=5))
    return path


ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def test_the_entrypoint_predicts_from_stdin(model_file: Path) -> None:
    model = image_entrypoint.load_model(model_file)
    entry = Path(image_entrypoint.__file__ or "")
    result = subprocess.run(
        [sys.executable, "-I", str(entry), "--model", str(model_file)],
        input=json.dumps(ROWS), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(result.stdout) == {"predictions": model.predict(ROWS).tolist()}


def test_the_entrypoint_takes_a_method_and_reports_bad_requests(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = image_entrypoint.load_model(model_file)
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"instances": ROWS, "method": "predict_proba"}))
    assert image_entrypoint.main(["--model", str(model_file), "--input", str(request)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer == {"predictions": model.predict_proba(ROWS).tolist()}
    request.write_text('{"rows": []}')
    assert image_entrypoint.main(["--model", str(model_file), "--input", str(request)]) == 2
    assert capsys.readouterr().err == (
        'error: a request object needs "instances": a list of rows\n'
    )


def test_the_entrypoint_answers_over_http(model_file: Path) -> None:
    model = image_entrypoint.load_model(model_file)
    with image_entrypoint.server(model, "127.0.0.1:0") as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=10) as response:
                assert json.loads(response.read()) == {"status": "ok"}
            body = json.dumps({"instances": ROWS, "method": "decision_function"}).encode()
            with urllib.request.urlopen(f"{base}/predict", data=body, timeout=10) as response:
                answer = json.loads(response.read())
            assert answer == {"predictions": model.decision_function(ROWS).tolist()}
            bad = json.dumps({"instances": ROWS, "method": "fit"}).encode()
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(f"{base}/predict", data=bad, timeout=10)
            assert info.value.code == 400
            assert json.loads(info.value.read())["error"].startswith("unknown method 'fit'")
        finally:
            httpd.shutdown()
            thread.join(10)


def test_the_entrypoint_answers_over_a_unix_socket(model_file: Path, tmp_path: Path) -> None:
    import httpx

    model = image_entrypoint.load_model(model_file)
    socket = tmp_path / "model.sock"
    socket.write_text("stale")  # left by a crashed run: replaced
    with image_entrypoint.server(model, f"unix:{socket}") as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            assert socket.stat().st_mode & 0o777 == 0o666
            transport = httpx.HTTPTransport(uds=str(socket))
            with httpx.Client(transport=transport, base_url="http://model") as client:
                assert client.get("/health").json() == {"status": "ok"}
                answer = client.post("/predict", json={"instances": ROWS})
                assert answer.json() == {"predictions": model.predict(ROWS).tolist()}
                bad = client.post("/predict", json={"rows": []})
                assert (bad.status_code, bad.json()) == (
                    400,
                    {"error": 'a request object needs "instances": a list of rows'},
                )
        finally:
            httpd.shutdown()
            thread.join(10)


# ---------------------------------------------------------------- records in certificates
def test_an_image_record_rides_in_the_certificate(tmp_path: Path, model_file: Path) -> None:
    store = LocalStore(tmp_path / "store")
    record = ImageRecord(
        image_id="sha256:" + "1" * 64,
        archive="bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        size=123,
        model_digest=None,
    )
    with track("Model", output_dir=tmp_path / "out", storage=store, environment=False) as run:
        run.log_model(model_file)
        record = record.model_copy(update={"model_digest": run.model.digest if run.model else None})
        attachment = attach_image(run, record)
    assert attachment.media_type == RECORD_MEDIA_TYPE
    assert attachment.digest == format_digest(hashlib.sha256(record.to_bytes()).digest())
    certificate = run.certificate
    assert certificate is not None and attachment in certificate.attachments
    assert image_record_of(certificate, store) == record

    other = store.put_bytes(b'{"image_id": "something else"}')
    forged = certificate.model_copy(
        update={"attachments": (attachment.model_copy(update={"url": f"ipfs://{other}"}),)}
    )
    with pytest.raises(IntegrityError) as info:
        image_record_of(forged, store)
    assert str(info.value) == (
        f"the image record at ipfs://{other} does not match its digest {attachment.digest}"
    )


# ---------------------------------------------------------------- no engine
def test_no_engine_is_a_clear_error(tmp_path: Path) -> None:
    host = f"unix://{tmp_path}/docker.sock"
    with pytest.raises(ServiceError) as info:
        DockerEngine(host)
    assert str(info.value) == f"no Docker engine at {host}: {tmp_path}/docker.sock does not exist"


def test_a_socket_nobody_listens_on_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))  # bound, never listening: connections are refused
        with pytest.raises(ServiceError) as info:
            DockerEngine(f"unix://{path}", timeout=5)
    assert str(info.value).startswith(f"Docker engine at unix://{path} does not answer: ")
    assert "\n" not in str(info.value)


def test_the_cli_without_an_engine_says_so_in_one_line(tmp_path: Path) -> None:
    host = f"unix://{tmp_path}/none.sock"
    result = subprocess.run(
        [str(PROVENANCE), "image", "push", "provenance/model:x"],
        cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "DOCKER_HOST": host, "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert (
        result.stderr == f"error: no Docker engine at {host}: {tmp_path}/none.sock does not exist\n"
    )


# ---------------------------------------------------------------- the package's modules
def _fresh(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_archive_check_and_the_labels_import_no_docker() -> None:
    """Importing one module of provenance.images imports only what it needs: the archive
    check (which the fuzzer drives) and the label names need no Docker SDK."""
    stdout = _fresh(
        "import sys\n"
        "from provenance.images import ArchiveCheck, verified_archive, ChunkReader\n"
        "from provenance.images import LABEL_MODEL_DIGEST, MODEL_DIR\n"
        "print('docker' in sys.modules)\n"
    )
    assert stdout == "False\n"


def test_every_listed_name_resolves_to_its_own_module() -> None:
    stdout = _fresh(
        "import provenance.images as images\n"
        "for name in images.__all__:\n"
        "    value = getattr(images, name)\n"
        "    owner = getattr(value, '__module__', None)\n"
        "    if isinstance(value, type) or callable(value):\n"
        "        assert owner.startswith('provenance.images.'), (name, owner)\n"
        "print(len(images.__all__))\n"
    )
    assert stdout == "52\n"


def test_an_unknown_name_is_an_import_error() -> None:
    with pytest.raises(ImportError, match="cannot import name 'NoSuchThing'"):
        exec("from provenance.images import NoSuchThing", {})
