"""`provenance proxy` on the real stack in front of an inference server that is not Python
(tests/integration/upstreams/predictor.js, node's own http module): each 2xx answer attested
and anchored on anvil, its receipt checked by `provenance verify-output` as a client would
(the raw request and answer bytes), everything else passed on unattested, bounds both ways,
the sidecar API, and the refusals before start."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from eth_utils.crypto import keccak
from sklearn.linear_model import LogisticRegression

from provenance.capture import track
from provenance.chain.attestor import AttestorContract
from provenance.chain.client import connect
from provenance.chain.deploy import Deployment
from provenance.chain.registry import Registry
from provenance.stack import Stack, free_port
from provenance.storage import Kubo

from .chainutil import ADMIN, ALICE, transactor

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("node") is None, reason="needs node for the upstream"),
]

PROVENANCE = Path(sys.executable).parent / "provenance"
UPSTREAM = Path(__file__).resolve().parent / "upstreams" / "predictor.js"
TOKEN = "sidecar-token-0123456789"
ROWS = {"instances": [[1.0, 2.0], [3.5, 4.0]]}


@dataclass(frozen=True)
class Chain:
    registry: Registry  # sending as ALICE, the registrant
    attestor: AttestorContract


@pytest.fixture(scope="module")
def chain(stack: Stack) -> Chain:
    w3 = connect(stack.config.chain.rpc_url)
    deployment = Deployment.read(stack.config.deployment_file)
    assert deployment is not None
    registry = Registry.from_deployment(w3, stack.config.deployment_file, transactor(w3, ALICE))
    attestor = AttestorContract(
        w3, deployment.contracts["OutputAttestor"].address, transactor(w3, ALICE)
    )
    # the proxy sends as the stack's dev account 0: Alice approves it as her operator, so it
    # may authorise the proxy's node key for her models
    if not attestor.is_operator(ALICE.address, ADMIN.address):
        attestor.set_operator(ADMIN.address)
    return Chain(registry, attestor)


@pytest.fixture(scope="module")
def kubo(stack: Stack) -> Iterator[Kubo]:
    with Kubo(stack.config.ipfs.api, timeout=600) as client:
        yield client


def register(chain: Chain, kubo: Kubo, folder: Path, name: str) -> str:
    """A tiny certified model registered by Alice; its id (0x hex)."""
    with track(
        name,
        output_dir=folder,
        storage=kubo,
        registry=chain.registry,
        signer=ALICE,
        source_dir=folder,
    ) as run:
        run.log_model(LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]))
    assert run.certificate is not None
    return "0x" + run.certificate.model_id.hex()


@contextlib.contextmanager
def node_upstream() -> Iterator[str]:
    process = subprocess.Popen(
        ["node", str(UPSTREAM), "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on "), line + process.communicate()[1]
        yield f"http://127.0.0.1:{int(line.split()[-1])}"
    finally:
        process.terminate()
        process.communicate(timeout=30)


@dataclass
class Proxy:
    url: str
    model_id: str
    process: subprocess.Popen[str]


@contextlib.contextmanager
def proxy(cli_env: dict[str, str], model_id: str, *args: str) -> Iterator[Proxy]:
    """`provenance proxy` as a subprocess, once its health check answers 200; stopped with
    SIGTERM, and it must then exit 0 with every recorded output anchored."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            *(str(PROVENANCE), "proxy", "--model-id", model_id, "--port", str(port)),
            *("--max-age", "0.3", "--trust", ALICE.address, *args),
        ],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(600):
            assert process.poll() is None, process.communicate()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/_provenance/healthz").status_code == 200:
                    break
            time.sleep(0.1)
        yield Proxy(url, model_id, process)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert f"attesting model {model_id}" in out
    assert "every recorded output is anchored" in err


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with node_upstream() as url:
        yield url


@pytest.fixture(scope="module")
def proxied(
    chain: Chain,
    kubo: Kubo,
    upstream: str,
    stack_config_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proxy]:
    """One proxy in front of the node upstream, with a sidecar token and tight bounds."""
    folder = tmp_path_factory.mktemp("proxy")
    model_id = register(chain, kubo, folder / "run", "Behind a proxy")
    (folder / "token").write_text(TOKEN + "\n")
    env = _env(stack_config_path)
    with proxy(
        env,
        model_id,
        *("--upstream", upstream, "--token-file", str(folder / "token")),
        *("--max-request-bytes", "4096", "--max-response-bytes", "65536", "--timeout", "2"),
    ) as running:
        yield running


def _env(stack_config_path: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVENANCE_", "DOCKER_HOST"))}
    env["PROVENANCE_CONFIG"] = str(stack_config_path)
    return env


def verify_output(
    cli_env: dict[str, str], receipt: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROVENANCE), "verify-output", str(receipt), *args],
        env=cli_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def receipt_of(url: str) -> dict[str, object]:
    """The receipt at ``url`` once its batch is anchored (202 until then)."""
    for _ in range(600):
        answer = httpx.get(url)
        if answer.status_code == 200:
            return dict(answer.json())
        assert answer.status_code == 202, answer.text
        time.sleep(0.1)
    raise AssertionError(f"{url} stayed pending")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- attested answers ---------------------------------------------------------------------------


def test_a_json_answer_passes_unchanged_and_its_receipt_verifies(
    proxied: Proxy, upstream: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    body = json.dumps(ROWS).encode()
    headers = {"content-type": "application/json"}
    direct = httpx.post(upstream + "/v1/predict", content=body, headers=headers)
    answer = httpx.post(proxied.url + "/v1/predict?wait=true", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.content == direct.content == b'{"predictions":[3,7.5]}'
    assert answer.headers["content-type"] == "application/json"
    sequence = int(answer.headers["x-provenance-sequence"])
    receipt_url = answer.headers["x-provenance-receipt"]
    assert receipt_url == f"{proxied.url}/_provenance/receipts/{sequence}"
    assert answer.headers["x-provenance-input-digest"] == sha(body)
    assert answer.headers["x-provenance-output-digest"] == sha(answer.content)
    # ?wait=true: anchored before the answer left, so its receipt answers 200 at once
    receipt = httpx.get(receipt_url)
    assert receipt.status_code == 200, receipt.text
    assert receipt.json()["record"]["sequence"] == sequence
    (tmp_path / "receipt.json").write_text(receipt.text)
    (tmp_path / "req.bin").write_bytes(body)
    (tmp_path / "resp.bin").write_bytes(answer.content)
    check = verify_output(
        cli_env,
        tmp_path / "receipt.json",
        *("--input-file", str(tmp_path / "req.bin"), "--output-file", str(tmp_path / "resp.bin")),
        *("--model-id", proxied.model_id, "--trust", ALICE.address),
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "verified: every required check passed" in check.stdout
    # the client's stored answer, edited afterwards: the receipt no longer covers it
    (tmp_path / "resp.bin").write_bytes(answer.content.replace(b"7.5", b"8.5"))
    check = verify_output(
        cli_env, tmp_path / "receipt.json", "--output-file", str(tmp_path / "resp.bin")
    )
    assert check.returncode == 1
    assert check.stderr == (
        "error: receipt: the output does not match the receipt's output digest "
        f"0x{hashlib.sha256(answer.content).hexdigest()}\n"
    )


def test_a_binary_answer_is_attested_by_its_bytes_and_its_receipt_follows(
    proxied: Proxy, cli_env: dict[str, str], tmp_path: Path
) -> None:
    body = bytes(range(256)) * 4
    answer = httpx.post(
        proxied.url + "/v1/embed",
        content=body,
        headers={"content-type": "application/octet-stream"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.content == bytes(b ^ 0xFF for b in body)
    assert answer.headers["content-type"] == "application/octet-stream"
    receipt = receipt_of(answer.headers["x-provenance-receipt"])  # anchored within --max-age
    (tmp_path / "receipt.json").write_text(json.dumps(receipt))
    check = verify_output(
        cli_env,
        tmp_path / "receipt.json",
        *("--input-digest", sha(body), "--output-digest", sha(answer.content)),
        "--json",
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["ok"] is True


def test_a_streamed_answer_is_buffered_and_attested_whole(proxied: Proxy) -> None:
    answer = httpx.get(proxied.url + "/v1/stream")
    assert answer.status_code == 200
    assert answer.content == b'{"tokens": ["a", "b", "c"]}'
    assert answer.headers["content-length"] == str(len(answer.content))
    assert "transfer-encoding" not in answer.headers
    assert answer.headers["x-provenance-output-digest"] == sha(answer.content)
    assert answer.headers["x-provenance-input-digest"] == sha(b"")


def test_an_answer_that_drifts_after_the_fact_does_not_verify(
    proxied: Proxy, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """The same request twice, two different answers: each is attested as it was sent, and the
    first receipt does not cover the second answer."""
    body = json.dumps(ROWS).encode()
    first = httpx.post(proxied.url + "/v1/drifting?wait=true", content=body)
    second = httpx.post(proxied.url + "/v1/drifting?wait=true", content=body)
    assert first.status_code == second.status_code == 200
    assert first.content != second.content
    assert first.headers["x-provenance-input-digest"] == second.headers["x-provenance-input-digest"]
    (tmp_path / "receipt.json").write_text(httpx.get(first.headers["x-provenance-receipt"]).text)
    (tmp_path / "second.bin").write_bytes(second.content)
    check = verify_output(
        cli_env, tmp_path / "receipt.json", "--output-file", str(tmp_path / "second.bin")
    )
    assert check.returncode == 1
    assert check.stderr == (
        "error: receipt: the output does not match the receipt's output digest "
        f"0x{hashlib.sha256(first.content).hexdigest()}\n"
    )


def test_the_wait_parameter_and_provenance_headers_stay_with_the_proxy(proxied: Proxy) -> None:
    """A client forging X-Provenance-Sequence: the upstream never sees it, and the answer's
    sequence is the proxy's own."""
    answer = httpx.get(
        proxied.url + "/v1/headers?a=1&wait=true&b=x%20y",
        headers={"x-provenance-sequence": "424242", "x-provenance-receipt": "http://evil/r"},
    )
    assert answer.status_code == 200, answer.text
    seen = answer.json()
    assert seen["url"] == "/v1/headers?a=1&b=x%20y"
    assert not [h for h in seen["headers"] if h.startswith("x-provenance-")]
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert "accept-encoding" in seen["headers"]  # the client's own, passed on
    assert answer.headers["x-provenance-sequence"] != "424242"
    assert answer.headers["x-provenance-receipt"].startswith(proxied.url + "/_provenance/")
    assert httpx.get(answer.headers["x-provenance-receipt"]).status_code == 200


def test_an_upstream_forging_provenance_headers_is_overruled(proxied: Proxy) -> None:
    answer = httpx.post(proxied.url + "/v1/forge")
    assert answer.status_code == 200
    assert answer.headers.get_list("x-provenance-sequence") != ["999999"]
    assert len(answer.headers.get_list("x-provenance-sequence")) == 1
    assert answer.headers["x-provenance-receipt"].startswith(proxied.url + "/_provenance/")


# -- passed on unattested -------------------------------------------------------------------


def test_an_upstream_error_passes_unattested(proxied: Proxy) -> None:
    before = int(httpx.post(proxied.url + "/v1/forge").headers["x-provenance-sequence"])
    failed = httpx.post(proxied.url + "/v1/fail")
    missing = httpx.get(proxied.url + "/v1/nothing-here")
    assert (failed.status_code, failed.json()) == (500, {"error": "boom"})
    assert (missing.status_code, missing.json()) == (404, {"error": "not found"})
    for answer in (failed, missing):
        assert not [h for h in answer.headers if h.startswith("x-provenance-")]
    after = int(httpx.post(proxied.url + "/v1/forge").headers["x-provenance-sequence"])
    assert after == before + 1  # nothing was recorded in between


def test_bodies_beyond_the_bounds_are_refused_unattested(proxied: Proxy) -> None:
    big = httpx.post(proxied.url + "/v1/embed", content=b"x" * 5000)
    assert big.status_code == 413
    assert big.text == '{"error": "the request has 5000 bytes; at most 4096"}'

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield from (b"y" * 1000 for _ in range(5))

    streamed = httpx.post(proxied.url + "/v1/embed", content=chunks())
    assert streamed.status_code == 413
    assert streamed.json() == {"error": "the request has more than 4096 bytes"}
    huge = httpx.get(proxied.url + "/v1/bytes?n=70000")
    assert huge.status_code == 502
    assert huge.json() == {
        "error": "the upstream's answer has 70000 bytes; the proxy passes on at most 65536"
    }
    assert httpx.get(proxied.url + "/v1/bytes?n=65536").status_code == 200
    slow = httpx.get(proxied.url + "/v1/slow?ms=5000", timeout=30)
    assert slow.status_code == 504
    assert slow.json()["error"].startswith(f"the upstream {_upstream_of(proxied)} did not answer")
    for answer in (big, streamed, huge, slow):
        assert "\n" not in answer.text
        assert not [h for h in answer.headers if h.startswith("x-provenance-")]


def _upstream_of(proxied: Proxy) -> str:
    return str(httpx.get(proxied.url + "/_provenance/healthz").json()["upstream"])


def test_an_upstream_that_is_down_is_a_502_in_one_line(
    chain: Chain, kubo: Kubo, cli_env: dict[str, str], tmp_path: Path
) -> None:
    model_id = register(chain, kubo, tmp_path / "run", "Upstream down")
    nothing = f"http://127.0.0.1:{free_port()}"
    with proxy(cli_env, model_id, "--upstream", nothing) as running:
        answer = httpx.post(running.url + "/v1/predict", json=ROWS)
        assert answer.status_code == 502
        assert answer.json()["error"].startswith(f"the upstream {nothing} failed: ")
        assert "\n" not in answer.text
        assert "x-provenance-sequence" not in answer.headers
        health = httpx.get(running.url + "/_provenance/healthz").json()
        assert (health["pending"], health["sidecar"]) == (0, False)
        # no token given: the sidecar API is off
        off = httpx.post(
            running.url + "/_provenance/v1/attestations",
            json={"input_digest": sha(b"a"), "output_digest": sha(b"b")},
        )
        assert off.status_code == 404
        assert off.json() == {
            "error": "the sidecar API is off: start the proxy with --token-file or a token variable"
        }


# -- the sidecar ----------------------------------------------------------------------------


def test_the_sidecar_attests_digests_it_is_given_with_the_token(
    proxied: Proxy, cli_env: dict[str, str], tmp_path: Path
) -> None:
    url = proxied.url + "/_provenance/v1/attestations"
    request, answer = b'{"prompt": "hi"}', b'{"text": "hello"}'
    body = {"input_digest": sha(request), "output_digest": sha(answer)}
    auth = {"authorization": f"Bearer {TOKEN}"}
    done = httpx.post(url + "?wait=true", json=body, headers=auth)
    assert done.status_code == 200, done.text
    sequence = done.json()["sequence"]
    assert done.json()["receipt_url"] == f"{proxied.url}/_provenance/receipts/{sequence}"
    receipt = httpx.get(done.json()["receipt_url"])
    assert receipt.status_code == 200
    (tmp_path / "receipt.json").write_text(receipt.text)
    (tmp_path / "answer.bin").write_bytes(answer)
    check = verify_output(
        cli_env,
        tmp_path / "receipt.json",
        *("--output-file", str(tmp_path / "answer.bin"), "--model-id", proxied.model_id),
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # replayed: a second record of the same pair (a model may answer the same input twice);
    # it attests nothing that was not attested already
    again = httpx.post(url, json=body, headers=auth)
    assert again.status_code == 200 and again.json()["sequence"] > sequence
    replayed = receipt_of(again.json()["receipt_url"])
    assert replayed["record"]["output_digest"] == receipt.json()["record"]["output_digest"]  # type: ignore[index]


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", f"Bearer {TOKEN}x"]
)
def test_the_sidecar_refuses_without_the_token(proxied: Proxy, authorization: str | None) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    done = httpx.post(
        proxied.url + "/_provenance/v1/attestations",
        json={"input_digest": sha(b"a"), "output_digest": sha(b"b")},
        headers=headers,
    )
    assert done.status_code == 401
    assert done.json() == {"error": "a valid Authorization: Bearer token is required"}
    assert done.headers["www-authenticate"] == 'Bearer realm="provenance"'


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (
            {"input_digest": "sha256:1234", "output_digest": "sha256:" + "0" * 64},
            400,
            "input_digest 'sha256:1234' is not of the form sha256:<64 lower-case hex digits>",
        ),
        ({"input_digest": "sha256:" + "0" * 64}, 400, "output_digest missing"),
        (
            {"input_digest": "sha256:" + "0" * 64, "output_digest": "sha256:" + "0" * 64, "n": 1},
            400,
            "unknown field(s): n",
        ),
    ],
)
def test_the_sidecar_refuses_malformed_digests_with_the_reason(
    proxied: Proxy, body: dict[str, object], status: int, reason: str
) -> None:
    done = httpx.post(
        proxied.url + "/_provenance/v1/attestations",
        json=body,
        headers={"authorization": f"Bearer {TOKEN}"},
    )
    assert (done.status_code, done.json()) == (status, {"error": reason})


def test_a_sidecar_alone_and_a_receipt_of_another_model(
    chain: Chain,
    kubo: Kubo,
    proxied: Proxy,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    model_id = register(chain, kubo, tmp_path / "run", "Sidecar only")
    env = dict(cli_env, PROVENANCE_PROXY_TOKEN=TOKEN)
    with proxy(env, model_id, "--sidecar-only") as sidecar:
        assert httpx.get(sidecar.url + "/v1/predict").json() == {
            "error": "no such path '/v1/predict': this sidecar has no upstream"
        }
        done = httpx.post(
            sidecar.url + "/_provenance/v1/attestations?wait=true",
            json={"input_digest": sha(b"in"), "output_digest": sha(b"out")},
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        assert done.status_code == 200, done.text
        (tmp_path / "receipt.json").write_text(httpx.get(done.json()["receipt_url"]).text)
    (tmp_path / "out.bin").write_bytes(b"out")
    mine = verify_output(
        cli_env,
        tmp_path / "receipt.json",
        *("--output-file", str(tmp_path / "out.bin"), "--model-id", model_id),
    )
    assert mine.returncode == 0, mine.stdout + mine.stderr
    theirs = verify_output(
        cli_env,
        tmp_path / "receipt.json",
        *("--output-file", str(tmp_path / "out.bin"), "--model-id", proxied.model_id),
    )
    assert theirs.returncode == 1
    assert theirs.stderr == (
        f"error: receipt: the receipt is for model {model_id}, not the expected "
        f"{proxied.model_id}\n"
    )


# -- refusals before start --------------------------------------------------------------------


def test_the_proxy_refuses_a_revoked_or_unauthorised_model_before_it_listens(
    chain: Chain, kubo: Kubo, upstream: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    def start(model_id: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PROVENANCE), "proxy", "--model-id", model_id, "--upstream", upstream, *args],
            env=cli_env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    unauthorised = register(chain, kubo, tmp_path / "a", "Never authorised")
    done = start(unauthorised, "--trust", ALICE.address, "--no-authorize")
    assert done.returncode == 1
    node = done.stderr.split("node ", 1)[1].split(" ", 1)[0]
    assert done.stderr == (
        f"error: node {node} is not authorised for model {unauthorised}; the registrant (or "
        "its operator) must authorise it, or run with --authorize\n"
    )
    untrusted = start(unauthorised)
    assert untrusted.returncode == 1
    assert untrusted.stderr.startswith(
        f"error: model {unauthorised} is registered by {ALICE.address}, who is not trusted"
    )
    revoked = register(chain, kubo, tmp_path / "b", "Revoked before the proxy")
    chain.registry.revoke(bytes.fromhex(revoked[2:]), keccak(text="bad"))
    done = start(revoked, "--trust", ALICE.address)
    assert done.returncode == 1
    assert done.stderr == f"error: model {revoked} is revoked; refusing to serve it\n"
    both = start(revoked, "--sidecar-only")
    assert (both.returncode, both.stderr) == (
        1,
        "error: give --upstream URL, or --sidecar-only (not both)\n",
    )


# -- what the proxy's own HTTP client adds: nothing --------------------------------------------


def test_the_upstream_sees_only_the_clients_headers_and_no_other_clients_cookie(
    chain: Chain, kubo: Kubo, upstream: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A bare request (no Accept, User-Agent, body or Content-Type) reaches the upstream with
    nothing the proxy's HTTP client would add by itself, and a cookie the upstream set for one
    client is passed to that client, never kept and replayed by the proxy for the next (the
    upstream named by host name: HTTP clients keep no cookies of bare IP addresses)."""
    model_id = register(chain, kubo, tmp_path / "run", "Cookies stay with their client")
    named = upstream.replace("127.0.0.1", "localhost")
    with proxy(cli_env, model_id, "--upstream", named) as running:
        login = httpx.post(running.url + "/v1/login")
        assert login.status_code == 200
        assert login.headers["set-cookie"] == "session=alice; Path=/"
        host = running.url.removeprefix("http://")
        with socket.create_connection(("127.0.0.1", int(host.split(":")[1]))) as raw:
            raw.sendall(f"GET /v1/headers HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head, _, body = raw.recv(65536).partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(body) < length:
                body += raw.recv(65536)
    assert head.startswith(b"HTTP/1.1 200 "), head
    seen = json.loads(body)["headers"]
    assert sorted(seen) == ["host", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"]
    assert seen["host"] == named.removeprefix("http://")
    assert seen["x-forwarded-host"] == host
