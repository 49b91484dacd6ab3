"""The attesting inference service on the real stack: a model from its files or from its Docker
image (pulled through kubo, run by the stack's dockerd), predictions with receipts anchored on
anvil, refusals before start, 4xx on bad input, and `provenance serve` as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import httpx
import pytest
import rfc8785
from eth_account import Account
from eth_utils.crypto import keccak
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from web3 import Web3

from provenance.attest import Attestor, Receipt, verify_receipt_offline
from provenance.capture import track
from provenance.certificate import Certificate
from provenance.chain.attestor import AttestorContract, verify_receipt_on_chain
from provenance.chain.client import connect
from provenance.chain.deploy import Deployment
from provenance.chain.registry import Registry
from provenance.errors import ImageError, IntegrityError, PolicyError
from provenance.images import (
    DockerEngine,
    ModelServer,
    attach_image,
    build_model_image,
    push_to_ipfs,
)
from provenance.server.service import (
    ServedModel,
    create_app,
    load_served_model,
    output_bytes,
    running,
)
from provenance.stack import Stack, free_port
from provenance.storage import Kubo

from .chainutil import ADMIN, ALICE, transactor

pytestmark = pytest.mark.integration

PROVENANCE = Path(sys.executable).parent / "provenance"
X, Y = load_iris(return_X_y=True)
ROWS = X[:3].tolist()


@dataclass(frozen=True)
class Chain:
    w3: Web3
    registry: Registry  # sending as ALICE, the registrant
    attestor: AttestorContract  # sending as ALICE


@pytest.fixture(scope="module")
def chain(stack: Stack) -> Chain:
    """The stack's own deployment (the one `provenance serve` finds)."""
    w3 = connect(stack.config.chain.rpc_url)
    deployment = Deployment.read(stack.config.deployment_file)
    assert deployment is not None
    registry = Registry.from_deployment(w3, stack.config.deployment_file, transactor(w3, ALICE))
    attestor = AttestorContract(
        w3, deployment.contracts["OutputAttestor"].address, transactor(w3, ALICE)
    )
    return Chain(w3, registry, attestor)


@pytest.fixture(scope="module")
def kubo(stack: Stack) -> Iterator[Kubo]:
    with Kubo(stack.config.ipfs.api, timeout=600) as client:
        yield client


def train(
    folder: Path,
    kubo: Kubo,
    registry: Registry,
    *,
    name: str = "Iris service",
    parents: list[tuple[bytes, str, str]] | None = None,
    engine: DockerEngine | None = None,
) -> tuple[Pipeline, Certificate]:
    with track(
        name,
        output_dir=folder,
        storage=kubo,
        registry=registry,
        signer=ALICE,
        parents=parents or [],
        source_dir=folder,
    ) as run:
        model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=0.5))])
        model.fit(X, Y)
        run.log_model(model)
        if engine is not None:
            image = build_model_image(engine, folder / "model.pkl")
            attach_image(run, push_to_ipfs(engine, image.id, kubo))
    assert run.certificate is not None
    return model, run.certificate


@dataclass
class Service:
    url: str
    served: ServedModel
    attestor: Attestor
    node: str


@pytest.fixture(scope="module")
def served_files(
    chain: Chain, kubo: Kubo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Pipeline, Service, Chain]]:
    """A model served from its files in IPFS, with a node Alice authorised."""
    folder = tmp_path_factory.mktemp("serve-files")
    model, certificate = train(folder / "run", kubo, chain.registry)
    served = load_served_model(
        certificate.model_id,
        registry=chain.registry,
        storage=kubo,
        workdir=folder / "work",
        registrants=[ALICE.address],
    )
    node = Account.create()
    chain.attestor.authorize_node(
        certificate.model_id, node.address, certificate.registration(), served.image_id_bytes
    )
    attestor = Attestor(
        certificate.model_id,
        served.model_digest_bytes,
        node,
        chain.attestor,
        folder / "journal.sqlite",
        batch_size=100,
        max_age=0.5,
    )
    attestor.start()
    app = create_app(served, attestor, chain.registry, max_request_bytes=4096, status_ttl=0)
    with running(app, port=free_port()) as url:
        yield model, Service(url, served, attestor, node.address), chain
    attestor.close()


def test_a_prediction_comes_with_a_receipt_anchored_on_chain(
    served_files: tuple[Pipeline, Service, Chain],
) -> None:
    model, service, chain = served_files
    body = json.dumps({"instances": ROWS, "method": "predict_proba"}).encode()
    answer = httpx.post(
        service.url + "/predict?wait=true",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["predictions"] == model.predict_proba(X[:3]).tolist()
    assert got["model_id"] == "0x" + service.served.model_id.hex()
    assert got["model_digest"] == service.served.model_digest
    receipt = Receipt.from_json(got["receipt"])
    assert receipt.transaction is not None and receipt.node == service.node
    # an outsider holding the request body and the predictions checks everything
    verify_receipt_offline(
        receipt, input_data=body, output_data=rfc8785.dumps({"predictions": got["predictions"]})
    )
    facts = verify_receipt_on_chain(
        chain.w3, receipt, chain.registry.address, attestor=chain.attestor.address
    )
    assert facts["model_status"] == "active" and facts["node_still_authorised"] is True
    # the same receipt later, by sequence
    again = httpx.get(service.url + got["receipt_url"])
    assert again.status_code == 200 and again.json() == got["receipt"]
    # an altered prediction does not match the receipt
    altered = [list(reversed(p)) for p in got["predictions"]]
    with pytest.raises(IntegrityError, match="output"):
        verify_receipt_offline(receipt, output_data=output_bytes(altered))


def test_without_waiting_the_receipt_follows_within_the_batch_age(
    served_files: tuple[Pipeline, Service, Chain],
) -> None:
    model, service, _ = served_files
    answer = httpx.post(service.url + "/predict", json={"instances": ROWS})
    assert answer.status_code == 200 and answer.json()["receipt"] is None
    assert answer.json()["predictions"] == model.predict(X[:3]).tolist()
    url = service.url + answer.json()["receipt_url"]
    for _ in range(100):
        found = httpx.get(url)
        if found.status_code == 200:
            break
        assert found.status_code == 202
        assert found.json() == {
            "status": "pending",
            "sequence": answer.json()["sequence"],
            "detail": "not anchored yet",
        }
        time.sleep(0.1)
    assert found.status_code == 200
    assert found.json()["record"]["sequence"] == answer.json()["sequence"]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (
            b"[[1, 2",
            400,
            "the request body is not JSON: Expecting ',' delimiter: line 1 column 7 (char 6)",
        ),
        (b'{"rows": [[1, 2, 3, 4]]}', 422, "instances: Field required"),
        (
            b'{"instances": []}',
            422,
            "instances: List should have at least 1 item after validation, not 0",
        ),
        (
            b'{"instances": [[1, 2, 3, 4]], "method": "fit"}',
            422,
            "method: Input should be 'predict', 'predict_proba', 'predict_log_proba', 'decision_function' or 'transform'",
        ),
        (
            b'{"instances": [[1, 2, 3, 4]], "method": "transform"}',
            400,
            "the model has no method transform",
        ),
        (
            b'{"instances": [[1, 2]]}',
            400,
            "the model refused the instances: X has 2 features, but StandardScaler is expecting 4 features as input.",
        ),
        (b"[" + b"1," * 3000 + b"1]", 413, "the request has 6003 bytes; at most 4096"),
    ],
)
def test_bad_requests_get_a_clear_4xx_and_record_nothing(
    served_files: tuple[Pipeline, Service, Chain], body: bytes, status: int, error: str
) -> None:
    _, service, _ = served_files
    before = service.attestor.next_sequence
    answer = httpx.post(
        service.url + "/predict", content=body, headers={"content-type": "application/json"}
    )
    assert (answer.status_code, answer.json()) == (status, {"error": error})
    assert service.attestor.next_sequence == before


def test_health_receipts_and_the_openapi_schema(
    served_files: tuple[Pipeline, Service, Chain],
) -> None:
    _, service, _ = served_files
    health = httpx.get(service.url + "/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["source"] == "artifacts"
    assert health.json()["node"] == service.node and health.json()["image_id"] is None
    assert health.json()["error"] is None
    anchoring = health.json()["anchoring"]
    assert anchoring["running"] is True and anchoring["failures"] == 0
    assert set(anchoring) == {
        "running",
        "backlog",
        "backlog_age",
        "failures",
        "last_error",
        "last_success",
    }
    missing = httpx.get(service.url + "/receipts/999999")
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "no output with sequence 999999 from this node"},
    )
    schema = httpx.get(service.url + "/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["required"] == ["instances"]
    assert set(schema["paths"]) == {"/healthz", "/predict", "/receipts/{sequence}"}


def test_a_model_revoked_while_served_stops_answering(
    chain: Chain, kubo: Kubo, tmp_path: Path
) -> None:
    _, certificate = train(tmp_path / "run", kubo, chain.registry, name="Revoked while served")
    served = load_served_model(
        certificate.model_id,
        registry=chain.registry,
        storage=kubo,
        workdir=tmp_path / "work",
        registrants=[ALICE.address],
    )
    node = Account.create()
    attestor = Attestor(
        certificate.model_id,
        served.model_digest_bytes,
        node,
        chain.attestor,
        tmp_path / "journal.sqlite",
    )
    attestor.start()
    app = create_app(served, attestor, chain.registry, status_ttl=0)
    with running(app, port=free_port()) as url:
        assert httpx.get(url + "/healthz").status_code == 200
        chain.registry.revoke(certificate.model_id, keccak(text="found poisoned"))
        health = httpx.get(url + "/healthz")
        assert (health.status_code, health.json()["status"]) == (503, "revoked")
        answer = httpx.post(url + "/predict", json={"instances": ROWS})
        assert (answer.status_code, answer.json()) == (
            503,
            {"error": f"model 0x{certificate.model_id.hex()} is revoked on chain; not serving"},
        )
    attestor.close()


def test_it_refuses_to_start_a_revoked_a_tainted_or_a_mismatched_model(
    chain: Chain, kubo: Kubo, tmp_path: Path
) -> None:
    _, parent = train(tmp_path / "parent", kubo, chain.registry, name="Parent")
    _, child = train(
        tmp_path / "child",
        kubo,
        chain.registry,
        name="Child",
        parents=[(parent.model_id, "fine-tune", "Parent")],
    )
    chain.registry.revoke(parent.model_id, keccak(text="poisoned"))

    def load(cert: Certificate) -> ServedModel:
        return load_served_model(
            cert.model_id,
            registry=chain.registry,
            storage=kubo,
            workdir=tmp_path / "w",
            registrants=[ALICE.address],
        )

    with pytest.raises(PolicyError) as info:
        load(parent)
    assert str(info.value) == f"model 0x{parent.model_id.hex()} is revoked; refusing to serve it"
    with pytest.raises(PolicyError) as info:
        load(child)
    assert str(info.value) == (
        f"model 0x{child.model_id.hex()} descends from a revoked model (tainted); "
        "refusing to serve it"
    )
    ghost = os.urandom(32)
    with pytest.raises(PolicyError) as info:
        load_served_model(
            ghost, registry=chain.registry, storage=kubo, workdir=tmp_path / "w", registrants=[]
        )
    assert str(info.value) == f"model 0x{ghost.hex()} is not registered; refusing to serve it"

    # a certificate whose stored model file is not the certified one: the attacker swapped the
    # file the URL points to (a new CID, so a new certificate, registered as such)
    _, honest = train(tmp_path / "honest", kubo, chain.registry, name="Honest")
    impostor = Pipeline([("clf", LogisticRegression(C=0.01))]).fit(X, Y)
    (tmp_path / "evil").mkdir()
    evil_file = tmp_path / "evil" / "model.pkl"
    import pickle

    evil_file.write_bytes(pickle.dumps(impostor, protocol=5))
    swapped = honest.model_copy(
        update={
            "model": honest.model.model_copy(update={"url": "ipfs://" + kubo.put_path(evil_file)})
        }
    )
    kubo.put_bytes(swapped.canonical_bytes())
    chain.registry.register(swapped.registration())
    with pytest.raises(IntegrityError) as info:
        load(swapped)
    entry = honest.model.manifest.files[0]
    assert str(info.value).startswith(f"{tmp_path / 'w' / 'model.pkl'}: model.pkl has ")
    assert str(info.value).endswith(f"the manifest says {entry.size} bytes and {entry.digest}")


@pytest.fixture(scope="module")
def engine(stack: Stack) -> Iterator[DockerEngine]:
    with DockerEngine(stack.docker_host()) as client:
        yield client


def test_provenance_serve_runs_the_model_image_and_attests(
    chain: Chain,
    kubo: Kubo,
    engine: DockerEngine,
    base_image: str,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    model, certificate = train(
        tmp_path / "run", kubo, chain.registry, name="Iris in its image", engine=engine
    )
    port = free_port()
    env = dict(cli_env)
    # the service sends as the stack's dev account 0; Alice registered the model and approves it
    # as her operator, so it may authorise the service's node key
    if not chain.attestor.is_operator(ALICE.address, ADMIN.address):
        chain.attestor.set_operator(ADMIN.address)
    mid = "0x" + certificate.model_id.hex()
    process = subprocess.Popen(
        [
            *(str(PROVENANCE), "serve", "--model-id", mid, "--port", str(port)),
            *("--max-age", "0.5", "--trust", ALICE.address),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    container = None
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            if process.poll() is not None:
                break
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        assert process.poll() is None, process.communicate()
        health = httpx.get(url + "/healthz").json()
        assert health["source"] == "image" and health["image_id"].startswith("sha256:")
        # the model runs in its image with no network: it answers on a Unix socket only
        (container,) = engine.client.containers.list(filters={"ancestor": health["image_id"]})
        assert container.attrs["HostConfig"]["NetworkMode"] == "none"
        assert [m["Destination"] for m in container.attrs["Mounts"]] == ["/run/provenance"]
        # the socket's folder is reachable by us alone: no local user can swap the socket
        home = Path(container.attrs["Mounts"][0]["Source"]).parent
        assert (home.stat().st_mode & 0o777, home.stat().st_uid) == (0o700, os.geteuid())
        (tmp_path / "x.json").write_text(json.dumps({"instances": ROWS}))
        answer = httpx.post(
            url + "/predict?wait=true",
            content=(tmp_path / "x.json").read_bytes(),
            headers={"content-type": "application/json"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == model.predict(X[:3]).tolist()
        receipt = Receipt.from_json(answer.json()["receipt"])
        (tmp_path / "answer.json").write_text(answer.text)

        def verify_output(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(PROVENANCE), "verify-output", str(tmp_path / "answer.json"), *args],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )

        check = verify_output("--input", str(tmp_path / "x.json"), "--json")
        assert check.returncode == 0, check.stderr
        report = json.loads(check.stdout)
        assert report["ok"] is True
        assert report["checks"][0]["detail"].startswith(
            "the input and output match(es) its digests"  # the output: the answer's predictions
        )
        # a prediction changed after the fact is caught
        forged = answer.json()
        forged["predictions"][0] = (forged["predictions"][0] + 1) % 3
        (tmp_path / "answer.json").write_text(json.dumps(forged))
        check = verify_output()
        assert check.returncode == 1
        assert check.stderr.startswith("error: receipt: the output does not match")
        assert receipt.node == health["node"]
    finally:
        process.send_signal(signal.SIGTERM)  # what a service manager sends
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "authorised node" in out and "serving Iris in its image" in out
    assert "every recorded output is anchored" in err
    assert container is not None
    with pytest.raises(docker.errors.NotFound):  # the shutdown hook stopped the model
        engine.client.containers.get(container.id)
    assert not home.exists()


def test_a_swapped_model_socket_is_refused(
    chain: Chain, kubo: Kubo, engine: DockerEngine, base_image: str, tmp_path: Path
) -> None:
    model, certificate = train(
        tmp_path / "run", kubo, chain.registry, name="Iris behind a socket", engine=engine
    )
    served = load_served_model(
        certificate.model_id,
        registry=chain.registry,
        storage=kubo,
        workdir=tmp_path / "work",
        source="image",
        engine=engine,
        registrants=[ALICE.address],
    )
    try:
        assert served.predictor(ROWS, "predict") == model.predict(X[:3]).tolist()
        server = served.close.__self__  # type: ignore[attr-defined]
        assert isinstance(server, ModelServer)
        with pytest.raises(ImageError) as info:  # another process behind the socket
            server.check_peer(os.getpid())
        assert str(info.value).startswith(f"the model socket {server.socket} is served by process ")
        assert str(info.value).endswith(
            f"not by the model's container (process {os.getpid()}); refusing it"
        )
        # someone replaces the socket with their own
        server.socket.rename(server.folder / "real.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as fake:
            fake.bind(str(server.socket))
            fake.listen(1)
            with pytest.raises(ImageError) as info:
                served.predictor(ROWS, "predict")
            assert str(info.value) == (
                f"the model socket {server.socket} is not the one checked at start; refusing it"
            )
        server.socket.unlink()
        (server.folder / "real.sock").rename(server.socket)
        assert served.predictor(ROWS, "predict") == model.predict(X[:3]).tolist()
        # the private folder opened to others
        server.home.chmod(0o755)
        with pytest.raises(ImageError) as info:
            served.predictor(ROWS, "predict")
        assert str(info.value) == (
            f"the model socket folder {server.home} is not private (mode drwxr-xr-x, owner uid "
            f"{os.geteuid()}); refusing its socket"
        )
    finally:
        served.close()


def test_provenance_serve_refuses_a_revoked_model(
    chain: Chain, kubo: Kubo, cli_env: dict[str, str], tmp_path: Path
) -> None:
    _, certificate = train(tmp_path / "run", kubo, chain.registry, name="Revoked before")
    chain.registry.revoke(certificate.model_id, keccak(text="bad"))
    done = subprocess.run(
        [str(PROVENANCE), "serve", "--model-id", "0x" + certificate.model_id.hex()],
        env=cli_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: model 0x{certificate.model_id.hex()} is revoked; refusing to serve it"
    )


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        (
            {"content-type": "application/x-www-form-urlencoded"},
            "application/x-www-form-urlencoded",
        ),
        ({"content-type": "text/plain"}, "text/plain"),
        ({}, "untyped"),
    ],
)
def test_predict_takes_json_only_so_a_cross_site_form_spends_no_gas(
    served_files: tuple[Pipeline, Service, Chain], headers: dict[str, str], kind: str
) -> None:
    _, service, _ = served_files
    before = service.attestor.next_sequence
    answer = httpx.post(
        service.url + "/predict",
        content=json.dumps({"instances": ROWS}).encode(),
        headers=headers,
    )
    assert (answer.status_code, answer.json()) == (
        415,
        {"error": f"the request must be sent as application/json, not {kind}"},
    )
    assert service.attestor.next_sequence == before
    charset = httpx.post(
        service.url + "/predict",
        content=json.dumps({"instances": ROWS}).encode(),
        headers={"content-type": "Application/JSON; charset=utf-8"},
    )
    assert charset.status_code == 200, charset.text


def fresh_attestor(served: ServedModel, chain: Chain, folder: Path) -> Attestor:
    """An attestor of its own (an app closes its attestor when it stops)."""
    attestor = Attestor(
        served.model_id,
        served.model_digest_bytes,
        Account.create(),
        chain.attestor,
        folder / f"journal-{os.urandom(4).hex()}.sqlite",
        max_age=0.5,
    )
    attestor.start()
    return attestor


def test_predictions_json_cannot_carry_give_a_clean_500_and_record_nothing(
    served_files: tuple[Pipeline, Service, Chain], tmp_path: Path
) -> None:
    _, service, chain = served_files
    odd = ServedModel(
        service.served.model_id,
        service.served.certificate,
        "artifacts",
        lambda rows, method: [float("nan"), float("-inf")],
    )
    attestor = fresh_attestor(odd, chain, tmp_path)
    with running(create_app(odd, attestor, chain.registry), port=free_port()) as url:
        answer = httpx.post(url + "/predict", json={"instances": ROWS})
        assert (answer.status_code, answer.json()) == (
            500,
            {
                "error": "the model answered values JSON cannot carry (nan is not representable "
                "in JCS); nothing was recorded"
            },
        )
        assert attestor.next_sequence == 0 and attestor.pending() == 0


def test_with_the_chain_unreachable_predict_and_healthz_answer_503_json(
    served_files: tuple[Pipeline, Service, Chain], tmp_path: Path
) -> None:
    _, service, chain = served_files
    dead_url = f"http://127.0.0.1:{free_port()}"
    dead = Registry(Web3(Web3.HTTPProvider(dead_url)), chain.registry.address, None)
    attestor = fresh_attestor(service.served, chain, tmp_path)
    app = create_app(service.served, attestor, dead, status_ttl=0)
    with running(app, port=free_port()) as url:
        answer = httpx.post(url + "/predict", json={"instances": ROWS})
        assert answer.status_code == 503
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"].startswith(
            f"ModelRegistry at {chain.registry.address}: the chain RPC failed: "
        )
        assert attestor.next_sequence == 0  # not served, not recorded
        health = httpx.get(url + "/healthz")
        assert health.status_code == 503
        assert health.json()["status"] == "unknown"
        assert health.json()["error"].startswith(
            "the model's state on chain cannot be read: ModelRegistry at "
        )


def test_a_stopped_anchoring_loop_or_an_old_backlog_fails_the_health_check(
    served_files: tuple[Pipeline, Service, Chain], tmp_path: Path
) -> None:
    _, service, chain = served_files
    attestor = Attestor(
        service.served.model_id,
        service.served.model_digest_bytes,
        Account.create(),
        chain.attestor,
        tmp_path / "journal.sqlite",
    )
    app = create_app(service.served, attestor, chain.registry, status_ttl=0, max_backlog=2)
    with running(app, port=free_port()) as url:
        health = httpx.get(url + "/healthz")  # never started
        assert (health.status_code, health.json()["error"]) == (
            503,
            "the anchoring loop is not running",
        )
        attestor.max_age = 3600.0  # nothing is due: the backlog grows
        attestor.start()
        for _ in range(3):
            answer = httpx.post(url + "/predict", json={"instances": ROWS})
            assert answer.status_code == 200
        health = httpx.get(url + "/healthz")
        assert health.status_code == 503
        assert health.json()["error"].startswith("3 outputs wait to be anchored, the oldest for ")
        assert health.json()["error"].endswith("(at most 2 and 60 s)")
        assert health.json()["anchoring"]["backlog"] == 3


def test_a_restart_reuses_a_verified_model_file_and_replaces_a_bad_one(
    chain: Chain, kubo: Kubo, tmp_path: Path
) -> None:
    model, certificate = train(tmp_path / "run", kubo, chain.registry, name="Restarted")
    work = tmp_path / "work"

    def load() -> ServedModel:
        return load_served_model(
            certificate.model_id,
            registry=chain.registry,
            storage=kubo,
            workdir=work,
            registrants=[ALICE.address],
        )

    load()
    target = work / "model.pkl"
    first = target.stat()
    load()  # a crash left the verified file: reused, not fetched again
    assert target.stat().st_ino == first.st_ino
    # a tampered (or half-written) leftover and an interrupted fetch are never trusted
    target.write_bytes(b"not the model")
    (work / ".incoming-x").mkdir()
    (work / ".incoming-x" / "model.pkl").write_bytes(b"half")
    served = load()
    assert served.predictor(ROWS, "predict") == model.predict(X[:3]).tolist()
    assert sorted(p.name for p in work.iterdir()) == ["model.pkl"]
    assert target.read_bytes() == (tmp_path / "run" / "model.pkl").read_bytes()
    assert (work.stat().st_mode & 0o777) == 0o700


def test_provenance_serve_starts_again_after_a_crash(
    chain: Chain, kubo: Kubo, stack: Stack, cli_env: dict[str, str], tmp_path: Path
) -> None:
    model, certificate = train(tmp_path / "run", kubo, chain.registry, name="Crashes and restarts")
    if not chain.attestor.is_operator(ALICE.address, ADMIN.address):
        chain.attestor.set_operator(ADMIN.address)
    mid = "0x" + certificate.model_id.hex()
    model_file = stack.state_dir / "serve" / mid / "model.pkl"

    def start() -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = subprocess.Popen(
            [
                str(PROVENANCE),
                "serve",
                "--model-id",
                mid,
                "--source",
                "artifacts",
                "--port",
                str(port),
                "--max-age",
                "0.3",
                "--trust",
                ALICE.address,
            ],
            env=cli_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(600):
            assert process.poll() is None, process.communicate()
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    return process, url
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("serve did not start")

    process, url = start()
    first = httpx.post(url + "/predict", json={"instances": ROWS}).json()
    process.kill()  # a crash: no shutdown hook
    process.communicate(timeout=30)
    model_file.write_bytes(b"tampered while it was down")
    process, url = start()
    try:
        answer = httpx.post(url + "/predict?wait=true", json={"instances": ROWS})
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == model.predict(X[:3]).tolist()
        assert answer.json()["sequence"] == first["sequence"] + 1  # the journal goes on
        assert httpx.get(f"{url}/receipts/{first['sequence']}").status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    assert process.returncode == 0
    assert model_file.read_bytes() == (tmp_path / "run" / "model.pkl").read_bytes()
