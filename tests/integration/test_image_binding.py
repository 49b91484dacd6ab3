"""An image built after registration, bound to the model by its registrant, against the real
anvil, kubo and dockerd; every command a CLI subprocess in its own fresh folder.

The user's path: train and certify (``track``), ``provenance register``, ``provenance image
build --certificate``, ``image push --json``, ``image bind``, then ``verify MODEL`` from another
folder and ``serve --source image``. Then the attacks: someone else binds an image to the
model (the contract refuses), an image labelled with the model's certificate but not bound is
reported unbound, a record whose layout holds another image is refused at binding and fails
verification, and serving a model without a recorded or bound image refuses.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from web3 import Web3

from provenance.bound_image import image_id_bytes, record_digest, store_record
from provenance.capture import track
from provenance.certificate import Certificate, raw_block_cid
from provenance.chain.client import connect
from provenance.chain.registry import Registry
from provenance.errors import ContractRevertError, IntegrityError, PolicyError
from provenance.images import (
    DockerEngine,
    ImageRecord,
    build_model_image,
    push_to_ipfs,
)
from provenance.server.service import load_served_model
from provenance.stack import Stack, free_port
from provenance.storage import Kubo

from .chainutil import ADMIN, MALLORY, transactor

pytestmark = pytest.mark.integration

PROVENANCE = Path(sys.executable).parent / "provenance"


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROVENANCE), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


def ok(*args: str, env: dict[str, str], cwd: Path) -> Any:
    """``provenance ARGS --json`` that must exit 0; its JSON."""
    done = cli(*args, "--json", env=env, cwd=cwd)
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-3000:])
    return json.loads(done.stdout)


def failed_report(*args: str, env: dict[str, str], cwd: Path) -> Any:
    """``provenance verify ARGS --json`` that must exit 1 (a failed check); its report."""
    done = cli("verify", *args, "--json", env=env, cwd=cwd)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["ok"] is False
    return report


def fresh(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def w3(stack: Stack) -> Web3:
    return connect(stack.config.chain.rpc_url)


@pytest.fixture(scope="module")
def engine(stack: Stack) -> Iterator[DockerEngine]:
    with DockerEngine(stack.docker_host()) as client:
        yield client


@pytest.fixture(scope="module")
def kubo(stack: Stack) -> Iterator[Kubo]:
    with Kubo(stack.config.ipfs.api, timeout=600) as client:
        yield client


def registry_as(stack: Stack, w3: Web3, account: Any) -> Registry:
    return Registry.from_deployment(w3, stack.config.deployment_file, transactor(w3, account))


@dataclass(frozen=True)
class Registered:
    """A model certified by ADMIN (the CLI's default sender on the dev chain) and registered
    through the CLI; no image recorded in its certificate."""

    certificate: Certificate
    folder: Path
    model_id: str
    rows: list[list[float]]
    predictions: list[int]


def certify_and_register(
    folder: Path, name: str, kubo: Kubo, env: dict[str, str], C: float = 1.0
) -> Registered:
    X, y = load_iris(return_X_y=True)
    with track(
        name, output_dir=folder / "run", signer=ADMIN, storage=kubo, source_dir=folder
    ) as run:
        model = LogisticRegression(C=C, max_iter=500).fit(X, y)
        run.log_model(model)
    assert run.certificate is not None
    registered = ok("register", str(folder / "run" / "certificate.json"), env=env, cwd=folder)
    assert registered["id"] == "0x" + run.certificate.model_id.hex()
    rows = X[::30].tolist()
    return Registered(
        run.certificate, folder, str(registered["id"]), rows, model.predict(rows).tolist()
    )


@pytest.fixture(scope="module")
def victim(
    stack: Stack,
    stack_config_path: Path,
    kubo: Kubo,
    base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Registered:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVENANCE_", "DOCKER_HOST"))}
    env["PROVENANCE_CONFIG"] = str(stack_config_path)  # as the cli_env fixture
    return certify_and_register(tmp_path_factory.mktemp("victim"), "Bound iris", kubo, env)


def _wait_healthy(url: str, server: subprocess.Popen[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            _, stderr = server.communicate()
            raise AssertionError(f"serve exited with {server.returncode}: {stderr[-3000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("serve did not become healthy")


def test_bind_verify_and_serve_an_image_built_after_registration(
    victim: Registered, cli_env: dict[str, str], tmp_path: Path, engine: DockerEngine
) -> None:
    work = victim.folder
    certificate = work / "run" / "certificate.json"
    built = ok(
        "image", "build", str(work / "run" / "model.pkl"), "--certificate", str(certificate),
        "--tag", "provenance/model:bound", env=cli_env, cwd=work,
    )  # fmt: skip
    image_id = built["image_id"]
    record = ok("image", "push", image_id, env=cli_env, cwd=work)
    assert record["image_id"] == image_id
    (work / "record.json").write_text(json.dumps(record))

    # before binding: verify says no image is bound
    auditor = fresh(tmp_path, "auditor")
    before = ok("verify", victim.model_id, env=cli_env, cwd=auditor)
    image_check = next(c for c in before["checks"] if c["name"] == "image")
    assert (image_check["status"], image_check["detail"]) == (
        "skip",
        f"no image is bound to model {victim.model_id} on chain",
    )

    prefix = victim.model_id[:12]
    bound = ok("image", "bind", prefix, "record.json", env=cli_env, cwd=work)
    record_sha = hashlib.sha256(ImageRecord.model_validate(record).to_bytes()).digest()
    assert bound["model_id"] == victim.model_id
    assert bound["image_id"] == image_id
    assert bound["record_digest"] == "sha256:" + record_sha.hex()
    assert bound["record_cid"] == raw_block_cid(record_sha)
    assert bound["transaction"].startswith("0x")

    # an auditor in a fresh folder: the image check passes, and the model files inside it hash
    # to the certified digest (the engine answers)
    report = ok("verify", victim.model_id, env=cli_env, cwd=fresh(tmp_path, "auditor2"))
    assert report["ok"] is True, report["first_failure"]
    checks = {c["name"]: (c["status"], c["detail"]) for c in report["checks"]}
    assert checks["image"] == (
        "pass",
        f"image {image_id} is bound to model {victim.model_id} by its registrant "
        f"{ADMIN.address} on chain (record {raw_block_cid(record_sha)}); its layout "
        f"{record['archive']} holds that image",
    )
    assert checks["image-model"] == (
        "pass",
        f"the model files inside the image hash to {victim.certificate.model.digest}",
    )
    # the image itself, as a target: certified by the binding, not by its labels
    as_image = ok("verify", image_id, env=cli_env, cwd=fresh(tmp_path, "auditor3"))
    assert as_image["ok"] is True, as_image["first_failure"]
    certified = next(c for c in as_image["checks"] if c["name"] == "image-certified")
    assert certified["detail"] == (
        f"image {image_id} is bound to model {victim.model_id} by its registrant "
        f"{ADMIN.address} on chain"
    )

    # serve it from its bound image (the certificate records no image)
    port = free_port()
    server = subprocess.Popen(
        [str(PROVENANCE), "serve", "--model-id", prefix, "--source", "image", "--port", str(port)],
        env=cli_env,
        cwd=fresh(tmp_path, "server"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, server)
        answer = httpx.post(url + "/predict", json={"instances": victim.rows}, timeout=60).json()
        assert answer["predictions"] == victim.predictions
        assert answer["model_id"] == victim.model_id
    finally:
        server.terminate()
        stdout, stderr = server.communicate(timeout=120)
    assert f"from its image {image_id} on http://127.0.0.1:{port}" in stdout, stdout
    assert "Traceback" not in stderr


def test_an_attacker_cannot_bind_an_image_to_someone_elses_model(
    stack: Stack, w3: Web3, victim: Registered, cli_env: dict[str, str], tmp_path: Path
) -> None:
    model_id = bytes.fromhex(victim.model_id[2:])
    before = registry_as(stack, w3, ADMIN).image_binding(model_id)
    # the contract is the authority: a direct transaction reverts
    with pytest.raises(ContractRevertError) as info:
        registry_as(stack, w3, MALLORY).bind_image(model_id, b"\x66" * 32, b"\x77" * 32)
    assert (info.value.error, info.value.arguments) == (
        "UnauthorizedBinder",
        {"id": victim.model_id, "account": MALLORY.address},
    )
    # the CLI says so before pushing anything
    folder = fresh(tmp_path, "mallory")
    (folder / "key.json").write_text(json.dumps(Account.encrypt(MALLORY.key, "pw", iterations=2)))
    (folder / "pw").write_text("pw")
    record = ImageRecord(
        image_id="sha256:" + "66" * 32, archive=raw_block_cid(b"\x01" * 32), size=1
    )
    (folder / "record.json").write_text(record.model_dump_json())
    done = cli(
        "image", "bind", victim.model_id, "record.json", "--keystore", "key.json",
        "--password-file", "pw", env=cli_env, cwd=folder,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: {MALLORY.address} is not the registrant of model {victim.model_id} "
        f"({ADMIN.address}): only its registrant may bind an image to it"
    )
    assert registry_as(stack, w3, ADMIN).image_binding(model_id) == before


def test_an_image_labelled_for_the_certificate_but_not_bound_is_unbound(
    stack: Stack,
    kubo: Kubo,
    engine: DockerEngine,
    base_image: str,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    model = certify_and_register(fresh(tmp_path, "model"), "Labelled iris", kubo, cli_env, C=0.7)
    # anyone holding the (public) certificate and model files builds an image naming it
    fake = build_model_image(
        engine,
        model.folder / "run" / "model.pkl",
        certificate=model.certificate,
        name="not the creator's",
    )
    report = failed_report(fake.id, env=cli_env, cwd=fresh(tmp_path, "auditor"))
    assert report["first_failure"]["name"] == "image-certified"
    assert report["first_failure"]["detail"] == (
        f"image {fake.id} is unbound: its labels name certificate "
        f"{model.certificate.digest_text}, but the registrant {ADMIN.address} bound no image "
        f"to model {model.model_id} and the certificate records none; labels are no authority "
        "(anyone can build such an image), so it is not trusted"
    )
    # once the registrant binds its own image, the attacker's is not that one
    own = build_model_image(
        engine, model.folder / "run" / "model.pkl", certificate=model.certificate
    )
    record = push_to_ipfs(engine, own.id, kubo)
    (model.folder / "record.json").write_text(record.model_dump_json(exclude_none=True))
    ok("image", "bind", model.model_id, "record.json", env=cli_env, cwd=model.folder)
    again = failed_report(fake.id, env=cli_env, cwd=fresh(tmp_path, "auditor2"))
    assert again["first_failure"]["detail"] == (
        f"image {fake.id} is not the image bound to model {model.model_id}: its registrant "
        f"{ADMIN.address} bound image {own.id}"
    )


def test_a_record_whose_layout_holds_another_image(
    stack: Stack,
    w3: Web3,
    kubo: Kubo,
    engine: DockerEngine,
    base_image: str,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    model = certify_and_register(fresh(tmp_path, "model"), "Swapped iris", kubo, cli_env, C=0.3)
    own = build_model_image(
        engine, model.folder / "run" / "model.pkl", certificate=model.certificate
    )
    other = push_to_ipfs(engine, base_image, kubo)  # a layout of another image
    lying = ImageRecord(
        image_id=own.id,
        archive=other.archive,
        size=other.size,
        model_digest=model.certificate.model.digest,
    )
    (model.folder / "record.json").write_text(lying.model_dump_json(exclude_none=True))
    message = f"the image layout {other.archive} holds image {base_image}, expected {own.id}"
    done = cli("image", "bind", model.model_id, "record.json", env=cli_env, cwd=model.folder)
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: {message}"
    # bound anyway (the registrant's own client, no checks): verification fails, serving refuses
    store_record(kubo, lying)
    model_id = bytes.fromhex(model.model_id[2:])
    registry = registry_as(stack, w3, ADMIN)
    registry.bind_image(model_id, image_id_bytes(lying), record_digest(lying))
    report = failed_report(model.model_id, env=cli_env, cwd=fresh(tmp_path, "auditor"))
    assert (report["first_failure"]["name"], report["first_failure"]["detail"]) == (
        "image",
        f"the image bound on chain: {message}",
    )
    if engine.has(own.id):
        engine.client.images.remove(own.id, force=True)  # so serving must pull it
    with pytest.raises(IntegrityError) as info:
        load_served_model(
            model_id,
            registry=registry,
            storage=kubo,
            workdir=tmp_path / "serve",
            source="image",
            engine=engine,
            registrants=[ADMIN.address],
        )
    assert str(info.value) == message


def test_serving_a_model_without_a_recorded_or_bound_image_refuses(
    stack: Stack,
    w3: Web3,
    kubo: Kubo,
    engine: DockerEngine,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    model = certify_and_register(fresh(tmp_path, "model"), "Imageless iris", kubo, cli_env, C=0.2)
    with pytest.raises(PolicyError) as info:
        load_served_model(
            bytes.fromhex(model.model_id[2:]),
            registry=registry_as(stack, w3, ADMIN),
            storage=kubo,
            workdir=tmp_path / "serve",
            source="image",
            engine=engine,
            registrants=[ADMIN.address],
        )
    assert str(info.value) == (
        f"model {model.model_id} has no image: its certificate records none and its registrant "
        "bound none on chain (provenance image bind); refusing to serve an unbound image"
    )
