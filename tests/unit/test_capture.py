"""The capture API (provenance.capture.track): steps, data, parameters, models, and what each
change does to the certificate digest. Storage and registry here are fakes that complement
tests/integration/test_capture.py, which uses the real kubo and anvil."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
from eth_account import Account
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from provenance.capture import Run, parse_parent, publish, track
from provenance.capture.tracker import as_selection
from provenance.certificate import (
    Certificate,
    SignedCertificate,
    Signer,
    load_certificate,
    verify_certificate_signature,
)
from provenance.chain.keys import anvil_dev_key
from provenance.chain.registry import Registered
from provenance.errors import CaptureError, CertificateError, ConfigError, IntegrityError
from provenance.hashing import format_digest, hash_file
from provenance.manifest import (
    DatasetOpening,
    FilterSelection,
    IndexSelection,
    SampleSelection,
    open_table,
    verify_opening,
)
from provenance.model_formats import SUPPORTED
from provenance.registration import Registration
from provenance.storage.cid import cid_for_digest

NOON = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
DEV = Account.from_key(anvil_dev_key(0))
UNRECOGNISED = (
    f"model format not recognised, recorded as 'files': {Path(__file__).name} is not in a "
    f"supported model format; supported: {SUPPORTED} (the model verifies, but serving it needs "
    "one of these formats)"
)
"""The warning of a model file (here: this test file) in none of the formats."""
OTHER = Account.from_key(anvil_dev_key(1))

STEP_SOURCE = """
import pandas as pd


def clean(frame: pd.DataFrame, z: float = 3.0) -> pd.DataFrame:
    numeric = frame.select_dtypes("number")
    keep = ((numeric - numeric.mean()).abs() <= z * numeric.std()).all(axis=1)
    return frame[keep]
"""


def load_module(folder: Path, source: str, name: str = "prep") -> ModuleType:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fixed_run(folder: Path, **options: Any) -> Run:
    """A run whose clock and timer stand still and that captures no machine state, so equal
    content gives an equal certificate."""
    defaults: dict[str, Any] = {
        "output_dir": folder / "out",
        "environment": False,
        "source_dir": folder,  # not a git work tree
        "clock": lambda: NOON,
        "timer": lambda: 0.0,
    }
    return track("Model Beta", **(defaults | options))


def frame() -> pd.DataFrame:
    return pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 50.0], "y": ["a", "b", "a", "b", "a"]})


def scenario(
    folder: Path,
    *,
    param: float = 0.5,
    source: str = STEP_SOURCE,
    data: pd.DataFrame | None = None,
    model_bytes: bytes = b"weights",
) -> Certificate:
    module = load_module(folder / "code", source)
    (folder / "model.bin").write_bytes(model_bytes)
    with fixed_run(folder, parents=[("0x" + "ab" * 32, "fine-tune")]) as run:
        raw = frame() if data is None else data
        run.log_dataset(raw, role="train", name="raw")
        run.step(module.clean)(raw, z=1.5)
        run.log_params(C=param, layers=[8, 4])
        run.log_seeds(numpy=0)
        run.log_metrics(accuracy=0.9)
        run.log_model(folder / "model.bin")
    assert run.certificate is not None
    return run.certificate


def test_equal_content_gives_an_equal_certificate_and_each_change_a_different_one(
    tmp_path: Path,
) -> None:
    base = scenario(tmp_path / "a")
    assert scenario(tmp_path / "b").digest == base.digest
    changed = {
        "parameter": scenario(tmp_path / "c", param=0.6),
        "source line": scenario(tmp_path / "d", source=STEP_SOURCE.replace("<= z *", "< z *")),
        "row": scenario(tmp_path / "e", data=frame().assign(y=["a", "b", "a", "b", "b"])),
        "row order": scenario(tmp_path / "f", data=frame().iloc[[1, 0, 2, 3, 4]]),
        "file": scenario(tmp_path / "g", model_bytes=b"weightz"),
    }
    for what, cert in changed.items():
        assert cert.digest != base.digest, what
    assert len({c.digest for c in changed.values()}) == len(changed)
    # and the part that changed is the one expected
    assert changed["parameter"].training.parameters["C"] == 0.6
    assert (
        changed["source line"].preprocessing[0].source_digest != base.preprocessing[0].source_digest
    )
    assert changed["row"].data.commitment != base.data.commitment
    assert changed["row order"].data.commitment != base.data.commitment
    assert changed["file"].model.digest != base.model.digest


def test_a_step_records_name_source_arguments_data_libraries_and_duration(tmp_path: Path) -> None:
    module = load_module(tmp_path / "code", STEP_SOURCE)
    ticks = iter([10.0, 10.25])
    with fixed_run(tmp_path, timer=lambda: next(ticks)) as run:
        raw = frame()
        cleaned = run.step(module.clean)(raw, z=1.5)
        run.log_model(tmp_path / "code" / "prep.py")
    assert cleaned.equals(module.clean(raw, z=1.5))
    assert run.certificate is not None
    (step,) = run.certificate.preprocessing
    assert step.name == "prep:clean"
    assert step.source_digest == format_digest(
        hashlib.sha256(STEP_SOURCE.split("\n\n\n", 1)[1].encode()).digest()
    )
    assert step.arguments == {"z": 1.5}
    assert [(i.name, i.kind, i.rows) for i in step.inputs] == [("frame", "table", 5)]
    assert step.inputs[0].digest == open_table(raw).manifest().digest
    assert [(o.name, o.kind, o.rows) for o in step.outputs] == [("return", "table", 4)]
    assert step.outputs[0].digest == open_table(cleaned).manifest().digest
    assert step.libraries == {"pandas": pd.__version__}
    assert step.duration_s == 0.25 and step.started_at == "2024-05-01T12:00:00.000000Z"


def test_step_inputs_are_digested_before_the_call_and_outputs_after(tmp_path: Path) -> None:
    def scale(array: np.ndarray, blob: bytes, factor: int = 2) -> tuple[np.ndarray, bytes]:
        array *= factor  # mutates its input in place
        return array, blob[::-1]

    original = np.arange(4, dtype=np.int64)
    before = original.copy()
    with fixed_run(tmp_path) as run:
        run.step(scale)(original, b"abc", factor=3)
        run.log_model(Path(__file__))
    assert run.certificate is not None
    (step,) = run.certificate.preprocessing
    array_in, blob_in = step.inputs
    assert array_in.kind == "ndarray" and array_in.shape == (4,) and array_in.dtype == "int64"
    h = hashlib.sha256(b"ndarray\x00" + b"<i8\x00" + b"[4]\x00" + before.tobytes())
    assert array_in.digest == format_digest(h.digest())
    assert blob_in.digest == format_digest(hashlib.sha256(b"abc").digest())
    assert [o.name for o in step.outputs] == ["0", "1"]
    assert step.outputs[0].digest != array_in.digest  # the array changed
    assert step.outputs[1].digest == format_digest(hashlib.sha256(b"cba").digest())
    assert step.arguments == {"factor": 3}


class Unpicklable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")

    def __reduce__(self) -> Any:
        raise TypeError("no pickle for you")


def test_unserialisable_parameters_and_arguments_do_not_crash_capture(tmp_path: Path) -> None:
    def fit(model: object, callback: Callable[[str], int], n: int = 10**30) -> int:
        return 1

    lock = threading.Lock()
    with fixed_run(tmp_path) as run:
        run.log_params(lr=0.1, callback=lambda e: e, lock=lock, odd=Unpicklable(), nan=float("nan"))
        run.step(fit)(Unpicklable(), callback=len)
        run.log_metrics(loss=np.float32(0.5), curve=np.array([1, 2]))
        run.log_model(Path(__file__))
    assert run.certificate is not None
    training = run.certificate.training
    assert training.parameters == {"lr": 0.1}
    opaque = training.opaque_parameters
    assert opaque["callback"].type == "builtins.function" and opaque["callback"].digest is None
    assert opaque["lock"].type == "_thread.lock" and opaque["lock"].digest is None
    assert opaque["odd"].repr == "<repr failed: RuntimeError>" and opaque["odd"].digest is None
    assert opaque["nan"].repr == "nan"
    assert opaque["nan"].digest == format_digest(
        hashlib.sha256(pickle.dumps(float("nan"), protocol=5)).digest()
    )
    (step,) = run.certificate.preprocessing
    assert step.arguments == {}
    assert set(step.opaque_arguments) == {"model", "callback", "n"}  # 10**30 is beyond JSON-safe
    assert step.opaque_arguments["callback"].repr == "<built-in function len>"
    assert training.metrics == {"loss": 0.5, "curve": "array([1, 2])"}
    assert run.certificate.warnings == (
        "metric curve is not JSON (numpy.ndarray); recorded as its repr",
        UNRECOGNISED,
    )


def test_scikit_learn_models_are_described_and_pickled(tmp_path: Path) -> None:
    iris = load_iris(as_frame=True)
    X = iris.data.assign(kind=np.where(iris.target > 0, "b", "a"))
    pipe = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["sepal length (cm)", "petal length (cm)"]),
                        ("cat", OneHotEncoder(), ["kind"]),
                    ],
                    remainder="drop",
                ),
            ),
            ("clf", LogisticRegression(C=0.25, max_iter=300)),
        ]
    ).fit(X, iris.target)
    with fixed_run(tmp_path) as run:
        artifact = run.log_model(pipe)
    assert artifact.format == "pickle-5" and artifact.framework is not None
    assert artifact.framework.name == "scikit-learn"
    path = tmp_path / "out" / "model.pkl"
    with open(path, "rb") as f:
        loaded = pickle.load(f)
    assert (loaded.predict(X) == pipe.predict(X)).all()
    assert artifact.manifest.files[0].path == "model.pkl"
    assert artifact.manifest.files[0].digest == str(hash_file(path))
    root = artifact.estimator
    assert root is not None and root.type == "sklearn.pipeline.Pipeline"
    assert root.params["steps"] == ["prep", "clf"]
    prep, clf = root.steps
    assert (prep.name, clf.name) == ("steps.prep", "steps.clf")
    assert clf.params["C"] == 0.25 and clf.params["max_iter"] == 300
    assert prep.params["transformers"] == [
        ["num", ["sepal length (cm)", "petal length (cm)"]],
        ["cat", ["kind"]],
    ]
    assert [s.name for s in prep.steps] == ["transformers.num", "transformers.cat"]
    assert prep.steps[0].type == "sklearn.preprocessing._data.StandardScaler"


class FakeStore:
    """Stores bytes by their real CID; paths get a recognisable fake one."""

    def __init__(self, cid_override: str | None = None) -> None:
        self.blobs: dict[str, bytes] = {}
        self.paths: list[Path] = []
        self.cid_override = cid_override

    def put_bytes(self, data: bytes, *, pin: bool = True, confidential: bool = False) -> str:
        cid = self.cid_override or cid_for_digest(hashlib.sha256(data).digest())
        self.blobs[cid] = data
        return cid

    def put_path(self, path: Path, *, pin: bool = True, confidential: bool = False) -> str:
        self.paths.append(path)
        return f"bafyfake{len(self.paths)}"


class FakeRegistry:
    """Registers as ``sender``; the id binds the registrant, as on chain."""

    def __init__(self, wrong_id: bool = False, sender: str = DEV.address) -> None:
        self.registrations: list[Registration] = []
        self.relayed: list[tuple[str, Registration]] = []
        self.wrong_id = wrong_id
        self.sender = sender

    def register(self, registration: Registration) -> Registered:
        self.registrations.append(registration)
        return self._done(registration, self.sender)

    def register_signed(self, account: Signer, registration: Registration) -> Registered:
        self.relayed.append((str(account.address), registration))
        return self._done(registration, str(account.address))

    def _done(self, registration: Registration, registrant: str) -> Registered:
        mid = b"\x00" * 32 if self.wrong_id else registration.model_id_for(registrant)
        return Registered(mid, registrant, "0x" + "11" * 32, 7)


def test_on_exit_the_certificate_is_stored_signed_written_and_registered(tmp_path: Path) -> None:
    store, registry = FakeStore(), FakeRegistry()
    csv = tmp_path / "train.csv"
    load_iris(as_frame=True).frame.to_csv(csv, index=False)
    with fixed_run(tmp_path, signer=DEV, storage=store, registry=registry) as run:
        run.log_dataset(csv, store=True, subset=SampleSelection(seed=1, fraction=0.8))
        run.attach("log", b"epoch 1 loss 0.3\n", "text/plain")
        run.log_model(csv)
    cert = run.certificate
    assert cert is not None and run.signed is not None and run.path is not None
    assert cert.creator == DEV.address
    verify_certificate_signature(run.signed)
    assert store.blobs[cert.cid] == cert.canonical_bytes() and run.cid == cert.cid
    assert run.envelope_cid is not None
    assert json.loads(store.blobs[run.envelope_cid])["signature"] == run.signed.signature
    assert cert.model.url == "ipfs://bafyfake2" and cert.data.url == "ipfs://bafyfake1"
    assert cert.data.datasets[0].url == "ipfs://bafyfake1"
    assert cert.attachments[0].url is not None and cert.attachments[0].url.startswith(
        "ipfs://bafkrei"
    )
    assert registry.registrations == [cert.registration()]
    assert run.registered is not None and run.registered.id == cert.model_id
    on_disk = load_certificate(run.path)
    assert isinstance(on_disk, SignedCertificate) and on_disk == run.signed


def test_a_registry_sending_as_someone_else_relays_the_signers_registration(
    tmp_path: Path,
) -> None:
    """The id binds the registrant, so the signer (the creator) must be it: when the registry
    sends as another account, the signer's EIP-712 registration is relayed (registerFor)."""
    relayer = FakeRegistry(sender=OTHER.address)
    with fixed_run(tmp_path, signer=DEV, storage=FakeStore(), registry=relayer) as run:
        run.log_model(Path(__file__))
    cert = run.certificate
    assert cert is not None and run.registered is not None
    assert relayer.registrations == [] and relayer.relayed == [(DEV.address, cert.registration())]
    assert run.registered.registrant == DEV.address and run.registered.id == cert.model_id
    # an unsigned certificate (no creator) is registered by the sender, under the sender's id
    plain = FakeRegistry(sender=OTHER.address)
    with fixed_run(tmp_path / "plain", storage=FakeStore(), registry=plain) as run:
        run.log_model(Path(__file__))
    cert = run.certificate
    assert cert is not None and cert.creator is None and run.registered is not None
    assert plain.relayed == [] and run.registered.id == cert.model_id_for(OTHER.address)


def test_storage_or_registry_disagreeing_with_the_certificate_is_an_error(tmp_path: Path) -> None:
    stored = fixed_run(tmp_path, storage=FakeStore("bafkreiwrong"))
    expected = r"^storage returned CID bafkreiwrong for the certificate, expected bafkrei"
    with pytest.raises(IntegrityError, match=expected), stored as run:
        run.log_model(Path(__file__))
    registered = fixed_run(tmp_path, storage=FakeStore(), registry=FakeRegistry(wrong_id=True))
    with (
        pytest.raises(IntegrityError, match=r"^the registry returned id 0x0000"),
        registered as run,
    ):
        run.log_model(Path(__file__))


def test_a_failing_block_builds_nothing(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError), fixed_run(tmp_path) as run:
        run.log_model(Path(__file__))
        _ = 1 / 0
    assert run.certificate is None and not (tmp_path / "out" / "certificate.json").exists()
    with pytest.raises(CertificateError) as exc, fixed_run(tmp_path):
        pass
    assert str(exc.value) == "no model was logged: call run.log_model(...) before the run ends"


def test_capture_failures_are_warnings_or_errors_when_strict(tmp_path: Path) -> None:
    def read(path: Path) -> int:
        return 0

    missing = tmp_path / "missing.csv"
    with fixed_run(tmp_path) as run:
        run.step(read)(missing)
        run.log_model(Path(__file__))
    assert run.certificate is not None
    expected = f"step {__name__}:test_capture_failures_are_warnings_or_errors_when_strict.<locals>.read: input path not digested: cannot read {missing}: No such file or directory"
    assert run.certificate.warnings == (expected, UNRECOGNISED)
    with pytest.raises(CaptureError) as exc, fixed_run(tmp_path, strict=True) as strict:
        strict.step(read)(missing)
    assert str(exc.value) == expected


def test_confidential_datasets_leave_an_opening_with_the_owner(tmp_path: Path) -> None:
    csv = tmp_path / "patients.csv"
    csv.write_text("age,outcome\n51,1\n62,0\n")
    with fixed_run(tmp_path) as run:
        record = run.log_dataset(csv, confidential=True)
        run.log_model(csv)
    assert record.confidential and record.manifest is None
    opening = DatasetOpening.model_validate_json(
        (tmp_path / "out" / "openings" / "patients.csv-train.json").read_text()
    )
    verify_opening(record, opening)
    assert "age" not in (run.path.read_text() if run.path else "")
    with pytest.raises(
        CertificateError, match=r"^dataset patients.csv is confidential: it cannot be stored$"
    ):
        fixed_run(tmp_path).log_dataset(csv, confidential=True, store=True)


def test_parents_and_subset_specs() -> None:
    alpha = bytes(range(32))
    assert parse_parent((alpha, "transfer")).id == "0x" + alpha.hex()
    assert parse_parent(("0x" + "AB" * 32, "distill", "Alpha")).name == "Alpha"
    assert parse_parent("0x" + "ab" * 32).relation == "fine-tune"
    assert parse_parent("0x" + "ab" * 32 + ":online_update").relation == "online-update"
    with pytest.raises(CertificateError, match=r"^parent id '0x12' is not 0x and 64 hex digits"):
        parse_parent("0x12:merge")
    assert as_selection([3, 4, 5, 9]) == IndexSelection(ranges=((3, 6), (9, 10)))
    assert as_selection(pd.Index([2, 1])) == IndexSelection(ranges=((2, 3), (1, 2)))
    assert as_selection("x > 1") == FilterSelection(expression="x > 1")
    assert as_selection({"kind": "sample", "seed": 1, "fraction": 0.5}) == SampleSelection(
        seed=1, fraction=0.5
    )
    with pytest.raises(
        CertificateError,
        match=r"^a subset is a selection, a filter expression or row positions, not float$",
    ):
        as_selection(0.5)


def test_a_pandas_index_selects_rows_of_a_frame_by_label(tmp_path: Path) -> None:
    data = frame().set_axis([10, 20, 30, 40, 50])
    train = data.sample(n=3, random_state=0)
    with fixed_run(tmp_path) as run:
        record = run.log_dataset(data, subset=train.index)
        run.log_model(Path(__file__))
    assert record.subset is not None and record.manifest is not None
    positions = [int(p) for p in data.index.get_indexer(train.index)]
    assert record.subset.selection == IndexSelection.of(positions)
    assert record.manifest.root == open_table(train).manifest().root  # the rows trained on
    with pytest.raises(
        CertificateError, match=r"^the subset names rows that are not in the dataset's index$"
    ):
        fixed_run(tmp_path).log_dataset(data, subset=pd.Index([99]))


def test_a_registry_without_storage_is_refused_before_the_run(tmp_path: Path) -> None:
    """Before: track(registry=...) without storage registered a certificate nobody could fetch,
    so the model could never be verified by its id."""
    registry = FakeRegistry()
    with pytest.raises(ConfigError) as refused:
        fixed_run(tmp_path, signer=DEV, registry=registry)
    assert str(refused.value) == (
        "registering a certificate that is stored nowhere: nobody could fetch it, so the model "
        "could never be verified by its id; pass session= (or storage=) as well"
    )
    assert registry.registrations == [] and registry.relayed == []
    with pytest.raises(ConfigError, match=r"^registering a certificate that is stored nowhere"):
        publish(_built(tmp_path), registry=registry)


def _built(folder: Path) -> Any:
    run = fixed_run(folder)
    run.log_model(Path(__file__))
    return run.build()


def test_storing_a_dataset_without_storage_is_an_error_not_silence(tmp_path: Path) -> None:
    """Before: log_dataset(store=True) without storage recorded no URL and said nothing."""
    csv = tmp_path / "train.csv"
    csv.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(ConfigError) as refused, fixed_run(tmp_path) as run:
        run.log_dataset(csv, store=True)
    assert str(refused.value) == (
        "storing dataset train.csv needs storage: pass session= or storage= to track()"
    )


class FakeSession:
    """What track() takes from a Session: signer, storage, a registry sending as the signer."""

    def __init__(self) -> None:
        self.signer = DEV
        self.storage = FakeStore()
        self.registry = FakeRegistry()
        self.asked_for: list[object] = []

    def registry_for(self, account: object = None) -> FakeRegistry:
        self.asked_for.append(account)
        return self.registry


def test_track_with_a_session_signs_stores_the_model_and_registers(tmp_path: Path) -> None:
    session = FakeSession()
    with fixed_run(tmp_path, session=session) as run:
        run.log_model(Path(__file__))
    cert = run.certificate
    assert cert is not None and run.signed is not None and run.registered is not None
    assert cert.creator == DEV.address and session.asked_for == [DEV]
    assert session.storage.paths == [Path(__file__)] and cert.model.url == "ipfs://bafyfake1"
    assert session.storage.blobs[cert.cid] == cert.canonical_bytes()
    assert session.registry.registrations == [cert.registration()]
    assert run.registered.id == cert.model_id
    # register=False only stores
    quiet = FakeSession()
    with fixed_run(tmp_path / "quiet", session=quiet, register=False) as run:
        run.log_model(Path(__file__))
    assert run.registered is None and quiet.registry.registrations == []
    assert run.certificate is not None and run.certificate.cid in quiet.storage.blobs


def test_publish_checks_model_files_and_data_against_the_certificate(tmp_path: Path) -> None:
    csv = tmp_path / "train.csv"
    csv.write_text("a,b\n1,2\n3,4\n")
    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\n5,6\n")
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    run = fixed_run(tmp_path, signer=DEV)
    run.log_dataset(csv)
    run.log_dataset(secret, confidential=True)
    run.log_model(model)
    body = run.build()
    store = FakeStore()
    with pytest.raises(IntegrityError) as wrong:
        publish(body, storage=store, model_files=csv)
    assert str(wrong.value).endswith(
        f"the certificate records {body.model.digest}: not the certified model"
    )
    with pytest.raises(ConfigError, match=r"^dataset 'secret.csv' is confidential: it is never"):
        publish(body, storage=store, data=[secret])
    other = tmp_path / "other.csv"
    other.write_text("a,b\n9,9\n")
    with pytest.raises(IntegrityError, match=r"other.csv is none of the certificate's public"):
        publish(body, storage=store, data=[other])
    assert store.paths == [] and store.blobs == {}
    done = publish(body, storage=store, signer=DEV, model_files=model, data=[csv])
    assert done.model_cid == "bafyfake1" and done.data_cids == {"train.csv": "bafyfake2"}
    assert done.certificate.model.url == "ipfs://bafyfake1" and done.signed is not None
    assert store.blobs[done.cid] == done.certificate.canonical_bytes()
    # a signed certificate keeps its body: the model is stored, the digest unchanged
    again = publish(done.signed, storage=FakeStore(), model_files=model)
    assert again.certificate == done.certificate and again.model_cid == "bafyfake1"
