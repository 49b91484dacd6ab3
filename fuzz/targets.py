"""The parsers of untrusted bytes the fuzzer drives, each with its seeds.

A target takes bytes and returns ``"accepted"`` (parsed), ``"clean"`` (refused with a
ProvenanceError, or an HTTP 4xx) or raises anything else (a bug: "other exception"). Targets
that need files or an app build them once per process (``setup``).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from provenance.errors import ProvenanceError
from provenance.untrusted import Limits, keep_recursion_limit

keep_recursion_limit()

Outcome = str  # "accepted" | "clean"


@dataclass
class Target:
    name: str
    seeds: Callable[[], list[bytes]]
    run: Callable[[bytes], Outcome]
    json: bool = False


def _clean(call: Callable[[], object]) -> Outcome:
    try:
        call()
    except ProvenanceError:
        return "clean"
    return "accepted"


_TMP = Path(tempfile.mkdtemp(prefix="provenance-fuzz-"))
_STATE: dict[str, Any] = {}
"""What targets build once per process (an app client, a block map)."""


# -- certificates -----------------------------------------------------------------------------


def _body() -> Any:
    from provenance.certificate import (
        Attachment,
        Certificate,
        Cpu,
        Environment,
        ModelArtifact,
        Package,
        ParentLink,
        PythonInfo,
        Step,
        Training,
        TrainingData,
        ValueRef,
    )
    from provenance.manifest import FileEntry, FileManifest

    digest = "sha256:" + hashlib.sha256(b"abc").hexdigest()
    manifest = FileManifest.of(
        [
            FileEntry(path="model.pkl", size=3, digest=digest),
            FileEntry(path="dir/weights.bin", size=3, digest=digest, shard_size=1024),
        ]
    )
    return Certificate(
        model_name="iris-classifier",
        created_at="2024-01-02T03:04:05.123456Z",
        parents=(ParentLink(id="0x" + "ab" * 32, relation="fine-tune", name="base"),),
        model=ModelArtifact(digest=manifest.root, manifest=manifest, format="pickle"),
        data=TrainingData.of(()),
        preprocessing=(
            Step(
                name="scale",
                arguments={"k": 1, "f": 0.5, "s": "x", "l": [1, 2], "d": {"a": None}},
                inputs=(ValueRef(name="x", kind="ndarray", type="ndarray", shape=(3, 4)),),
                started_at="2024-01-02T03:04:05Z",
                duration_s=0.25,
            ),
        ),
        training=Training(command=("python", "train.py"), parameters={"lr": 0.1}, exit_code=0),
        environment=Environment(
            os="Linux",
            python=PythonInfo(version="3.11.9", implementation="CPython"),
            cpu=Cpu(architecture="x86_64", count=2),
            packages=(Package(name="numpy", version="2.0.0"),),
        ),
        attachments=(Attachment(name="log", digest=digest, size=3),),
        warnings=("w",),
        payload={"notes": ["a", {"b": 1}], "n": 1234567890123},
    )


def _certificate_body_seeds() -> list[bytes]:
    from provenance.certificate import to_json

    body = _body()
    return [body.canonical_bytes(), to_json(body).encode()]


def _envelope_seeds() -> list[bytes]:
    from eth_account import Account

    from provenance.certificate import sign_certificate, to_json
    from provenance.chain.keys import anvil_dev_key

    signed = sign_certificate(_body(), Account.from_key(anvil_dev_key(0)))
    return [to_json(signed).encode(), json.dumps(signed.model_dump(mode="json")).encode()]


def _certificate(data: bytes) -> Outcome:
    from provenance.certificate import (
        SignedCertificate,
        body_of,
        parse_certificate,
        verify_certificate_signature,
    )

    def go() -> None:
        document = parse_certificate(data, "certificate")
        body_of(document).digest  # noqa: B018 - canonical bytes, size limit
        body_of(document).model_id  # noqa: B018
        if isinstance(document, SignedCertificate):
            verify_certificate_signature(document)

    return _clean(go)


# -- receipts ---------------------------------------------------------------------------------


def _receipt_seeds() -> list[bytes]:
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    from provenance.attest import Batch, OutputRecord, OutputTree, Receipt, batch_typed_data
    from provenance.chain.keys import anvil_dev_key

    account = Account.from_key(anvil_dev_key(1))
    mid, digest = b"\x01" * 32, b"\x02" * 32
    records = [
        OutputRecord(mid, digest, hashlib.sha256(b"in%d" % i).digest(), b"\x03" * 32, i, 1000)
        for i in range(1, 4)
    ]
    tree = OutputTree([r.leaf for r in records])
    batch = Batch(mid, digest, tree.root, 1, 3, 1001)
    contract = "0x" + "44" * 20
    signable = encode_typed_data(full_message=batch_typed_data(batch, 31337, contract))
    signature = bytes(account.sign_message(signable).signature)
    seeds = []
    for i, record in enumerate(records):
        receipt = Receipt(
            record=record,
            batch=batch,
            proof=tuple(tree.proof(i)),
            signature=signature,
            node=account.address,
            chain_id=31337,
            contract=contract,
            transaction="0x" + "55" * 32,
            block=7,
        )
        seeds.append(json.dumps(receipt.to_json()).encode())
    return seeds


def _receipt(data: bytes) -> Outcome:
    from provenance.attest import Receipt, verify_receipt_offline
    from provenance.errors import IntegrityError
    from provenance.untrusted import loads_json

    def go() -> None:
        parsed = loads_json(data, what="receipt", error=IntegrityError)
        verify_receipt_offline(Receipt.from_json(parsed))

    return _clean(go)


# -- CAR, dag-pb, UnixFS ----------------------------------------------------------------------


def _dag_blocks() -> tuple[bytes, dict[bytes, bytes]]:
    from provenance.storage import unixfs

    folder = _TMP / "tree"
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_bytes(b"hello " * 50)
    (folder / "sub" / "b.bin").write_bytes(bytes(range(256)) * 3)
    (folder / "empty").write_bytes(b"")
    blocks: dict[bytes, bytes] = {}
    layout = unixfs.Layout(chunk_size=100, max_links=3)
    root = unixfs.build_path(folder, blocks.__setitem__, layout=layout).cid
    return root, blocks


def _car_seeds() -> list[bytes]:
    from provenance.storage import unixfs
    from provenance.storage.car import CarWriter

    root, blocks = _dag_blocks()
    out = io.BytesIO()
    writer = CarWriter(out, [root])
    for cid, block in unixfs.walk_blocks(blocks.__getitem__, root):
        writer.add(cid, block)
    small = io.BytesIO()
    CarWriter(small, [root])
    return [out.getvalue(), small.getvalue()]


_LIMITS = Limits(max_download_bytes=1 << 20, max_entries=200, max_depth=32)


def _car(data: bytes) -> Outcome:
    import shutil

    from provenance.errors import StorageError
    from provenance.storage.car import CarReader
    from provenance.storage.unixfs import write_tree

    def go() -> None:
        reader = CarReader(io.BytesIO(data), "fuzz.car")
        blocks = dict(reader)

        def fetch(cid: bytes) -> bytes:
            if cid not in blocks:
                raise StorageError("missing block")
            return blocks[cid]

        for root in reader.roots[:2]:
            dest = _TMP / "car-out"
            try:
                write_tree(fetch, root, dest, limits=_LIMITS)
            finally:
                if dest.exists():
                    shutil.rmtree(dest) if dest.is_dir() else dest.unlink()

    return _clean(go)


def _dagpb_seeds() -> list[bytes]:
    from provenance.storage import cid as cids

    _, blocks = _dag_blocks()
    return [b for c, b in blocks.items() if cids.codec(c) == cids.DAG_PB]


def _dagpb(data: bytes) -> Outcome:
    from provenance.errors import StorageError
    from provenance.storage import cid as cids
    from provenance.storage import unixfs

    state = _STATE
    if "blocks" not in state:
        state["blocks"] = _dag_blocks()[1]
    blocks: dict[bytes, bytes] = state["blocks"]

    def fetch(cid: bytes) -> bytes:
        if cid not in blocks:
            raise StorageError("missing block")
        return blocks[cid]

    def go() -> None:
        cid = cids.dag_pb_cid(hashlib.sha256(data).digest())
        links = unixfs.sized_links(cid, data, None)
        if links and all(size is not None for _, size in links):
            unixfs.declared_size(cid, data)
            for _ in unixfs.file_content(fetch, cid, data):
                pass

    return _clean(go)


# -- docker archive ---------------------------------------------------------------------------


def _archive_seeds() -> list[bytes]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as inner:
        info = tarfile.TarInfo("app/model.pkl")
        info.size = 3
        inner.addfile(info, io.BytesIO(b"abc"))
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": ["m:1"], "Layers": ["layer/layer.tar"]}]
    ).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, body in (
            (config_name, config),
            ("layer/layer.tar", layer.getvalue()),
            ("manifest.json", manifest),
            ("repositories", b'{"m": {"1": "x"}}'),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    return [out.getvalue(), manifest]


def _archive(data: bytes) -> Outcome:
    from provenance.images import ArchiveCheck, verified_archive

    def go() -> None:
        chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
        for _ in verified_archive(chunks, None, ArchiveCheck(), what="fuzz archive"):
            pass

    return _clean(go)


# -- configuration ----------------------------------------------------------------------------


def _config_seeds() -> list[bytes]:
    return [
        b'state_dir = "state"\n'
        b'[chain]\nrpc_url = "http://127.0.0.1:8545"\nchain_id = 31337\n'
        b'keystore = "key.json"\nstate_interval = 2\n'
        b'[chain.contracts]\nModelRegistry = "0x' + b"11" * 20 + b'"\n'
        b'[ipfs]\napi = "http://127.0.0.1:5001"\ntimeout = 60.0\nbackend = "local"\n'
        b'store = "blocks"\n'
        b'[docker]\nhost = "unix:///var/run/docker.sock"\n'
        b"[limits]\nmax_download_bytes = 1000000\nmax_entries = 10\nmax_depth = 8\n",
        b"",
    ]


def _config(data: bytes) -> Outcome:
    from provenance.config import load_config

    path = _TMP / "config.toml"
    path.write_bytes(data)
    env = {"PROVENANCE_IPFS_API": "http://127.0.0.1:5001"} if len(data) % 3 == 0 else {}
    return _clean(lambda: load_config(env, cwd=_TMP, explicit=path))


# -- /predict ---------------------------------------------------------------------------------


def _predict_seeds() -> list[bytes]:
    return [
        b'{"instances": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]], "method": "predict"}',
        b'{"instances": [["a", true, null, 1]], "method": "predict_proba"}',
    ]


def _predict(data: bytes) -> Outcome:
    """What ``POST /predict`` does with a body before the model sees it (server/service.py):
    the bounded decoder, then the request model; a refusal there is a 400 or a 422."""
    from pydantic import ValidationError

    from provenance.server.service import PredictRequest
    from provenance.untrusted import loads_json

    def go() -> None:
        loads_json(data, what="the request body", max_bytes=1 << 20)
        try:
            PredictRequest.model_validate_json(data)
        except ValidationError as exc:
            raise ProvenanceError("422") from exc

    return _clean(go)


# -- explorer ---------------------------------------------------------------------------------

_IDS = ("0x" + "0a" * 32, "0x" + "0b" * 32, "0x" + "0c" * 32)


def _explorer_seeds() -> list[bytes]:
    return [
        b"/api/search?q=iris",
        b"/api/search?q=0x0a0a",
        b"/api/search?q=sha256:" + b"0a" * 32,
        *(f"/api/models/{i}".encode() for i in _IDS),
        *(f"/api/models/{i}/certificate".encode() for i in _IDS),
        *(f"/api/models/{i}/tree?format={f}".encode() for i in _IDS for f in ("json", "dot")),
        f"/api/models/{_IDS[1]}/tree?format=mermaid".encode(),
        f"/api/models/{_IDS[1]}/tree?format=svg".encode(),
    ]


def _explorer_app() -> Any:
    from fastapi.testclient import TestClient

    from provenance.certificate import Certificate
    from provenance.chain.index import LineageIndex
    from provenance.server.explorer import create_explorer_app
    from provenance.storage.local import LocalStore

    store = LocalStore(_TMP / "explorer-blocks")
    good = _body()
    hostile = Certificate.model_validate(
        good.model_dump(mode="json", exclude_none=True)
        | {"model_name": "evil\x1b[31m<svg>&\x00\u202e", "payload": [[[[{"a": "]]]"}]]]]}
    )
    index = LineageIndex(_TMP / "explorer-index.sqlite")
    for i, (model_id, body) in enumerate(zip(_IDS, (good, hostile, None), strict=True)):
        digest = body.digest if body is not None else b"\x09" * 32
        if body is not None:
            store.put_bytes(body.canonical_bytes())
        event = SimpleNamespace(
            name="ModelRegistered",
            block=i + 1,
            transaction="0x" + "66" * 32,
            args={
                "id": bytes.fromhex(model_id[2:]),
                "registrant": "0x" + "77" * 20,
                "certificateDigest": digest,
                "modelDigest": b"\x02" * 32,
                "dataCommitment": b"\x03" * 32,
                "firstParent": bytes.fromhex(_IDS[0][2:]) if i else b"\x00" * 32,
                "firstRelation": 0,
            },
        )
        index._apply(event)  # type: ignore[arg-type]
    index.db.commit()
    record = SimpleNamespace(
        status=SimpleNamespace(label="active"), registered_at=1, revoked_parent_acknowledged=False
    )
    registry = SimpleNamespace(record=lambda model_id: record)  # what details() reads
    app = create_explorer_app(registry, index, store)  # type: ignore[arg-type]
    app.state.explorer.sync_interval = 1e12  # a stub registry: never synced
    app.state.explorer._synced_at = time.monotonic()
    return TestClient(app, raise_server_exceptions=True)


# -- OCI image layouts in IPFS ----------------------------------------------------------------

_OCI_CONFIG = b'{"rootfs": {"type": "layers", "diff_ids": []}}'


def _oci_seeds() -> list[bytes]:
    config = "sha256:" + hashlib.sha256(_OCI_CONFIG).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config,
            "size": len(_OCI_CONFIG),
        },
        "layers": [],
    }
    return [json.dumps(manifest).encode(), json.dumps({**manifest, "layers": [{}]}).encode()]


def _oci_layout(data: bytes) -> Outcome:
    """The bytes as the manifest of an image layout whose index points at them (digest and
    size right), read back by ``read_layout``, which checks what the engine would get."""
    from provenance.images.oci import _built, read_layout
    from provenance.storage import cid as cids
    from provenance.storage import unixfs
    from provenance.storage.car import CarWriter
    from provenance.storage.local import LocalStore

    state = _STATE
    if "oci-store" not in state:
        state["oci-store"] = LocalStore(_TMP / "oci-blocks", limits=_LIMITS)
    store = state["oci-store"]

    def put(blob: bytes) -> tuple[str, unixfs.Built]:
        cid = store.put_bytes(blob, pin=False)
        return hashlib.sha256(blob).hexdigest(), _built(store, cid, len(blob))

    manifest, config = put(data), put(_OCI_CONFIG)
    index = {
        "schemaVersion": 2,
        "manifests": [{"digest": f"sha256:{manifest[0]}", "size": len(data)}],
    }
    _, index_node = put(json.dumps(index).encode())
    _, layout_node = put(b'{"imageLayoutVersion": "1.0.0"}')
    sha_block, sha_dir = unixfs.directory_node(sorted({manifest, config}), "blobs/sha256")
    blobs_block, blobs_dir = unixfs.directory_node([("sha256", sha_dir)], "blobs")
    root_block, root = unixfs.directory_node(
        [("blobs", blobs_dir), ("index.json", index_node), ("oci-layout", layout_node)], "layout"
    )
    car = io.BytesIO()
    writer = CarWriter(car, [root.cid])
    for block in (root_block, blobs_block, sha_block):
        writer.add(cids.block_cid(block, cids.DAG_PB), block)
    car.seek(0)
    store.import_car(car, pin=False)
    return _clean(lambda: read_layout(store, cids.to_str(root.cid), None))


def _invalid_url_errors() -> tuple[type[Exception], ...]:
    """The HTTP client's "cannot send that URL" errors: Starlette's TestClient uses httpx2 when
    it is installed (huggingface_hub brings it), else httpx."""
    import httpx

    found: list[type[Exception]] = [httpx.InvalidURL]
    try:
        import httpx2
    except ImportError:
        pass
    else:
        found.append(httpx2.InvalidURL)
    return tuple(found)


def _explorer(data: bytes) -> Outcome:
    state = _STATE
    if "client" not in state:
        state["client"] = _explorer_app()
    text = data.decode("utf-8", errors="surrogateescape")
    if not text.startswith("/"):
        text = "/api/search?q=" + text
    refused: tuple[type[Exception], ...] = (*_invalid_url_errors(), UnicodeEncodeError)
    try:
        response = state["client"].get(text)
    except refused:
        return "clean"  # the HTTP client refuses to send it: never reaches a server
    if response.status_code < 400:
        return "accepted"
    if response.status_code < 500 or response.status_code == 502:
        return "clean"
    raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")


# -- the proxy's sidecar API -------------------------------------------------------------------


def _sidecar_seeds() -> list[bytes]:
    good = "sha256:" + "ab" * 32
    return [
        json.dumps({"input_digest": good, "output_digest": good}).encode(),
        json.dumps({"input_digest": good}).encode(),
        json.dumps({"input_digest": good, "output_digest": good.upper(), "x": 1}).encode(),
        b"[]",
    ]


def _sidecar(data: bytes) -> Outcome:
    from provenance.proxy.sidecar import parse_attestation

    return _clean(lambda: parse_attestation(data))


# -- model files ------------------------------------------------------------------------------

_MODEL_SUFFIXES = (".onnx", ".safetensors", ".json", ".ubj", ".pt", ".npz", ".joblib", ".txt")


def _model_file_seeds() -> list[bytes]:
    """One small file per format, written without the frameworks (fast to start)."""
    import pickle
    import struct
    import zipfile

    def zipped(names: list[str]) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            for name in names:
                archive.writestr(name, b"\x80\x02}q\x00.")
        return out.getvalue()

    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    return [
        struct.pack("<Q", len(header)) + header + b"\0\0\x80?",
        zipped(["archive/data.pkl", "archive/data/0", "archive/version"]),
        zipped(["m/data.pkl", "m/constants.pkl", "m/code/__torch__/m.py"]),
        zipped(["w.npy", "b.npy"]),
        bytes.fromhex("0809") + b"\x3a\x04\x0a\x01\x58\x12" + b"\x42\x02\x10\x11",
        b'{"learner": {"attributes": {}}, "version": [3, 0, 0]}',
        b"{L\x00\x00\x00\x00\x00\x00\x00\x07learner{}}",
        b"tree\nversion=v4\nnum_class=1\n",
        pickle.dumps({"w": [1.0]}, protocol=5),
        bytes.fromhex("80028a0a6cfc9c46f9206aa85019") + b".",
    ]


def _model_file(data: bytes) -> Outcome:
    """The bytes as a model file under each suffix detection looks at, and as the weights of a
    Hugging Face folder; detection answers or refuses with UnsupportedModelFormat."""
    from provenance.model_formats import detect_format

    folder = _TMP / "model-file"
    folder.mkdir(exist_ok=True)
    outcomes = []
    for suffix in _MODEL_SUFFIXES:
        path = folder / f"model{suffix}"
        path.write_bytes(data)
        outcomes.append(_clean(lambda p=path: detect_format(p)))  # type: ignore[misc]
        path.unlink()
    hf = folder / "hf"
    hf.mkdir(exist_ok=True)
    (hf / "config.json").write_bytes(data if data.startswith(b"{") else b'{"model_type": "x"}')
    (hf / "model.safetensors").write_bytes(data)
    outcomes.append(_clean(lambda: detect_format(hf)))
    return "accepted" if "accepted" in outcomes else "clean"


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("certificate-body", _certificate_body_seeds, _certificate, json=True),
        Target("certificate-envelope", _envelope_seeds, _certificate, json=True),
        Target("receipt", _receipt_seeds, _receipt, json=True),
        Target("car", _car_seeds, _car),
        Target("dagpb-unixfs", _dagpb_seeds, _dagpb),
        Target("docker-archive", _archive_seeds, _archive),
        Target("config-toml", _config_seeds, _config),
        Target("predict-body", _predict_seeds, _predict, json=True),
        Target("explorer-query", _explorer_seeds, _explorer),
        Target("oci-layout", _oci_seeds, _oci_layout, json=True),
        Target("sidecar-attestation", _sidecar_seeds, _sidecar, json=True),
        Target("model-file", _model_file_seeds, _model_file),
    )
}
