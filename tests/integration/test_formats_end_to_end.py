"""Each model format end to end on the real stack (anvil, kubo, dockerd), as a user runs it
(issue 16): captured with track() or the framework's helper, registered with `provenance
register`, an image built from the certificate after registration, pushed, bound on chain by
the registrant, `provenance verify MODEL` passing with its image checks, served, and an answer
verified by `provenance verify-output`; the same answer with one prediction changed fails with
the exact reason. Every command is a CLI subprocess in a fresh folder with the stack's config.

Servable formats (a scikit-learn pickle, ONNX, TorchScript, XGBoost, LightGBM) are served by
`provenance serve --source auto`, which must pick the bound image. Weights without their code
(a PyTorch state dict, safetensors, numpy .npz, a Hugging Face folder) get an image of the
user's own Dockerfile, and are served by the user's own server (a stdlib HTTP script loading the
weights with the format's library, as a host process) behind `provenance proxy`, whose receipt
`verify-output --input-file --output-file` checks against the raw bytes.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from provenance.capture import log_booster, log_module, track
from provenance.capture.tracker import Run
from provenance.images import TORCH_IMAGE, DockerEngine, run_prediction
from provenance.stack import Stack, free_port
from provenance.storage import Kubo
from tests.model_builders import X20, Y20, onnx_linear

from .chainutil import ADMIN

pytestmark = pytest.mark.integration

PROVENANCE = Path(sys.executable).parent / "provenance"
ROWS = X20[:3].tolist()
TOKENS = [[1, 5, 7, 2], [1, 9, 3, 2]]
"""Token ids for the Hugging Face model (its other formats take ROWS, four features)."""


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROVENANCE), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900
    )


def ok(*args: str, env: dict[str, str], cwd: Path) -> Any:
    """``provenance ARGS --json`` that must exit 0; its JSON."""
    done = cli(*args, "--json", env=env, cwd=cwd)
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-3000:])
    return json.loads(done.stdout)


def fresh(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def kubo(stack: Stack) -> Iterator[Kubo]:
    with Kubo(stack.config.ipfs.api, timeout=600) as client:
        yield client


@pytest.fixture(scope="module")
def engine(stack: Stack) -> Iterator[DockerEngine]:
    with DockerEngine(stack.docker_host()) as client:
        yield client


@pytest.fixture(scope="module")
def bases(engine: DockerEngine, base_image: str) -> None:
    """Both bases in the engine, each loaded at most once for the module (the torch base's
    root file system is built here when this checkout has none, as the CLI would)."""
    from provenance.images import default_rootfs, ensure_base_image, make_rootfs

    prefix = Path(sys.prefix)
    rootfs = default_rootfs(prefix, TORCH_IMAGE)
    if not engine.has(TORCH_IMAGE) and not rootfs.is_file():
        rootfs = make_rootfs(prefix, TORCH_IMAGE)
    ensure_base_image(engine, rootfs, TORCH_IMAGE)


# ---------------------------------------------------------------- capture, register
@dataclass(frozen=True)
class Registered:
    folder: Path  # the trainer's folder; the run's output in folder / "run"
    model: Path  # the model file or folder, in folder / "run"
    model_id: str
    model_digest: str


def capture_and_register(
    name: str, folder: Path, kubo: Kubo, env: dict[str, str], log: Callable[[Run], Path]
) -> Registered:
    """Capture with track() (signed by ADMIN, the CLI's default sender on the dev chain, so it
    is the registrant), then `provenance register` the certificate."""
    (folder / "run").mkdir()
    with track(
        name, output_dir=folder / "run", signer=ADMIN, storage=kubo, source_dir=folder
    ) as run:
        model = log(run)
    assert run.certificate is not None
    registered = ok("register", "run/certificate.json", env=env, cwd=folder)
    assert registered["id"] == "0x" + run.certificate.model_id.hex()
    return Registered(folder, model, registered["id"], run.certificate.model.digest)


def image_push_bind_verify(
    registered: Registered, build_args: list[str], env: dict[str, str], tmp_path: Path
) -> str:
    """`image build ... --certificate` (after registration), `image push`, `image bind`, then
    `verify MODEL` from a fresh folder passes with the image checks; the image id."""
    work = registered.folder
    built = ok(
        "image", "build", *build_args, "--certificate", "run/certificate.json", env=env, cwd=work
    )
    image_id = str(built["image_id"])
    record = ok("image", "push", image_id, env=env, cwd=work)
    (work / "record.json").write_text(json.dumps(record), encoding="utf-8")
    bound = ok("image", "bind", registered.model_id, "record.json", env=env, cwd=work)
    assert (bound["model_id"], bound["image_id"]) == (registered.model_id, image_id)

    report = ok("verify", registered.model_id, env=env, cwd=fresh(tmp_path, "auditor"))
    assert report["ok"] is True, report["first_failure"]
    checks = {c["name"]: (c["status"], c["detail"]) for c in report["checks"]}
    assert checks["image"][0] == "pass", checks["image"]
    assert checks["image"][1].startswith(
        f"image {image_id} is bound to model {registered.model_id} by its registrant "
        f"{ADMIN.address} on chain"
    )
    assert checks["image-model"] == (
        "pass",
        f"the model files inside the image hash to {registered.model_digest}",
    )
    return image_id


@dataclass
class Server:
    url: str
    stdout: str = ""  # once it stopped


@contextlib.contextmanager
def running(args: list[str], env: dict[str, str], cwd: Path, health: str) -> Iterator[Server]:
    """A `provenance` server (serve or proxy) on a free port once ``health`` answers 200.
    Stopped with SIGINT afterwards: it must exit 0, without a traceback."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Server(url)
    process = subprocess.Popen(
        [str(PROVENANCE), *args, "--port", str(port), "--max-age", "0.3"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None:
                out, err = process.communicate()
                raise AssertionError(f"{args[0]} exited {process.returncode}: {out}{err[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + health, timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"{args[0]} did not become healthy"
            time.sleep(0.2)
        yield server
    finally:
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
    assert process.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    server.stdout = out


# ---------------------------------------------------------------- servable formats
def sklearn_pickle(run: Run) -> tuple[Path, list[Any]]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=500).fit(X20, Y20)
    artifact = run.log_model(model)
    return run.output_dir / artifact.manifest.files[0].path, model.predict(ROWS).tolist()


def onnx(run: Run) -> tuple[Path, list[Any]]:
    import onnxruntime

    path = onnx_linear(run.output_dir)[0]
    run.log_model(path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rows = np.asarray(ROWS, dtype=np.float32)
    return path, list(session.run(None, {"x": rows})[0].tolist())


def torchscript(run: Run) -> tuple[Path, list[Any]]:
    import torch

    torch.manual_seed(16)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Softmax(dim=-1)).eval()
    log_module(run, net, format="torchscript")
    with torch.no_grad():
        return run.output_dir / "model.torchscript.pt", list(net(torch.tensor(ROWS)).tolist())


def xgboost(run: Run) -> tuple[Path, list[Any]]:
    import xgboost as xgb

    params = {"objective": "binary:logistic", "max_depth": 2, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(X20, label=Y20), num_boost_round=4)
    log_booster(run, booster, params=params, data=X20)
    expected = booster.predict(xgb.DMatrix(np.asarray(ROWS, dtype=np.float32))).tolist()
    return run.output_dir / "model.ubj", expected


def lightgbm(run: Run) -> tuple[Path, list[Any]]:
    import lightgbm as lgb

    params = {"objective": "binary", "min_data_in_leaf": 2, "min_data_in_bin": 1}
    params |= {"num_threads": 1, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(X20, label=Y20), num_boost_round=4)
    log_booster(run, booster, params=params, data=X20)
    return run.output_dir / "model.txt", np.asarray(booster.predict(np.asarray(ROWS))).tolist()


SERVABLE: dict[str, Callable[[Run], tuple[Path, list[Any]]]] = {
    "sklearn": sklearn_pickle,
    "onnx": onnx,
    "torchscript": torchscript,
    "xgboost": xgboost,
    "lightgbm": lightgbm,
}
"""Format: capture (saves and logs the model; its path and the library's own predictions)."""


@pytest.mark.parametrize("fmt", sorted(SERVABLE))
def test_a_servable_format_from_capture_to_a_verified_answer_of_its_bound_image(
    fmt: str, kubo: Kubo, bases: None, cli_env: dict[str, str], tmp_path: Path
) -> None:
    expected: list[Any] = []

    def log(run: Run) -> Path:
        path, predictions = SERVABLE[fmt](run)
        expected.extend(predictions)
        return path

    registered = capture_and_register(
        f"End to end {fmt}", fresh(tmp_path, "trainer"), kubo, cli_env, log
    )
    model = registered.model.relative_to(registered.folder).as_posix()
    image_id = image_push_bind_verify(registered, [model], cli_env, tmp_path)

    serve = ["serve", "--model-id", registered.model_id, "--source", "auto"]
    with running(serve, cli_env, fresh(tmp_path, "server"), "/healthz") as server:
        url = server.url
        health = httpx.get(url + "/healthz", timeout=10).json()
        assert (health["source"], health["model_digest"]) == ("image", registered.model_digest)
        request = json.dumps({"instances": ROWS}).encode()
        answer = httpx.post(
            url + "/predict?wait=true",
            content=request,
            headers={"content-type": "application/json"},
            timeout=300,
        )
        assert answer.status_code == 200, answer.text
    assert f"from its image {image_id} on {url}" in server.stdout
    got = answer.json()
    assert got["model_id"] == registered.model_id
    if fmt == "torchscript":  # Debian's torch in the image: equal to the last bit or nearly
        np.testing.assert_allclose(got["predictions"], expected, rtol=1e-6, atol=0)
    else:
        assert got["predictions"] == expected

    client = fresh(tmp_path, "client")
    (client / "answer.json").write_text(answer.text, encoding="utf-8")
    (client / "request.json").write_bytes(request)
    checked = cli(
        "verify-output", "answer.json", "--input", "request.json",
        "--model-id", registered.model_id, env=cli_env, cwd=client,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "verified: every required check passed" in checked.stdout

    forged = answer.json()
    first = forged["predictions"]
    while isinstance(first[0], list):  # rows of outputs, or one output per row
        first = first[0]
    first[0] = first[0] + 1
    (client / "forged.json").write_text(json.dumps(forged), encoding="utf-8")
    caught = cli("verify-output", "forged.json", env=cli_env, cwd=client)
    assert caught.returncode == 1
    assert caught.stderr == (
        "error: receipt: the output does not match the receipt's output digest "
        f"0x{got['output_digest'].removeprefix('sha256:')}\n"
    )


# ---------------------------------------------------------------- weights without code
UPSTREAM_PY = '''\
"""The user's own inference server for weights without code (stdlib HTTP; the weights loaded
with the format's own library): --port N answers POST /predict {"instances": rows};
--input FILE answers once on stdout (the model image protocol)."""
import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


def load(fmt, path):
    if fmt == "npz":
        import numpy as np

        with np.load(path, allow_pickle=False) as arrays:
            w, b = arrays["w"], arrays["b"]
        return lambda rows: (np.asarray(rows, dtype=np.float32) @ w + b).tolist()
    import torch

    if fmt == "huggingface":
        from transformers import AutoModel

        model = AutoModel.from_pretrained(path).eval()

        def hidden(rows):  # the first token's last hidden state
            with torch.no_grad():
                return model(input_ids=torch.tensor(rows)).last_hidden_state[:, 0].tolist()

        return hidden
    if fmt == "safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, weights_only=True)
    layer = torch.nn.Linear(4, 2)
    layer.load_state_dict(state)

    def linear(rows):
        with torch.no_grad():
            return layer(torch.tensor(rows, dtype=torch.float32)).tolist()

    return linear


parser = argparse.ArgumentParser()
parser.add_argument("--format", required=True)
parser.add_argument("--model", required=True)
parser.add_argument("--port", type=int)
parser.add_argument("--input")
parser.add_argument("--method", default="predict")
args = parser.parse_args()
predict = load(args.format, args.model)
if args.input:
    body = json.load(open(args.input))
    rows = body if isinstance(body, list) else body["instances"]
    print(json.dumps({"predictions": predict(rows)}))
    sys.exit(0)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        size = int(self.headers["content-length"])
        answer = json.dumps({"predictions": predict(json.loads(self.rfile.read(size))["instances"])})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", args.port), Handler)
print(f"listening on {server.server_port}", flush=True)
server.serve_forever()
'''


def linear_layer() -> Any:
    import torch

    torch.manual_seed(16)
    return torch.nn.Linear(4, 2)


def state_dict(run: Run) -> Path:
    log_module(run, linear_layer(), format="pytorch")
    return run.output_dir / "model.pt"


def safetensors(run: Run) -> Path:
    log_module(run, linear_layer())
    return run.output_dir / "model.safetensors"


def npz(run: Run) -> Path:
    weights = np.random.default_rng(16).normal(size=(4, 2)).astype(np.float32)
    path = run.output_dir / "model.npz"
    np.savez(path, w=weights, b=np.array([0.5, -0.25], dtype=np.float32))
    run.log_model(path)
    return path


def huggingface(run: Run) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(16)
    config = BertConfig(
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=8,
        vocab_size=12,
        max_position_embeddings=8,
    )
    folder = run.output_dir / "bert"
    BertModel(config).save_pretrained(folder)
    run.log_model(folder)
    return folder


@dataclass(frozen=True)
class WeightsOnly:
    capture: Callable[[Run], Path]
    rows: list[list[Any]]
    runs_in_image: bool
    """Whether the image's base has the format's library (every image is FROM Debian's torch
    image: numpy and torch, not safetensors or transformers); then its answer is checked too."""


WEIGHTS_ONLY: dict[str, WeightsOnly] = {
    "pytorch": WeightsOnly(state_dict, ROWS, True),
    "safetensors": WeightsOnly(safetensors, ROWS, False),
    "npz": WeightsOnly(npz, ROWS, True),
    "huggingface": WeightsOnly(huggingface, TOKENS, False),
}


@contextlib.contextmanager
def own_upstream(fmt: str, folder: Path, model: Path) -> Iterator[str]:
    """The user's server as a host process (this environment's python has every library)."""
    process = subprocess.Popen(
        [sys.executable, folder / "upstream.py", "--format", fmt, "--model", model, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on "), line + process.communicate()[1]
        yield f"http://127.0.0.1:{int(line.split()[-1])}"
    finally:
        process.terminate()
        process.communicate(timeout=60)


@pytest.mark.parametrize("fmt", sorted(WEIGHTS_ONLY))
def test_weights_without_code_from_capture_to_a_verified_answer_behind_the_proxy(
    fmt: str,
    kubo: Kubo,
    engine: DockerEngine,
    bases: None,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    case = WEIGHTS_ONLY[fmt]
    trainer = fresh(tmp_path, "trainer")
    registered = capture_and_register(f"End to end {fmt}", trainer, kubo, cli_env, case.capture)
    model = registered.model.relative_to(trainer)
    in_image = "/srv/model" + ("" if registered.model.is_dir() else f"/{model.name}")
    for path in [registered.model, *registered.model.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # COPY keeps modes; it runs as nobody
    (trainer / "upstream.py").write_text(UPSTREAM_PY, encoding="utf-8")
    (trainer / "Dockerfile").write_text(
        f"FROM {TORCH_IMAGE}\n"
        f"COPY {model.as_posix()} {in_image}\n"
        "COPY upstream.py /srv/upstream.py\n"
        "USER 65534:65534\n"
        f'ENTRYPOINT ["python3", "-I", "/srv/upstream.py", "--format", "{fmt}", '
        f'"--model", "{in_image}"]\n',
        encoding="utf-8",
    )
    own = [model.as_posix(), "--dockerfile", "Dockerfile", "--model-path", in_image]
    image_id = image_push_bind_verify(registered, own, cli_env, tmp_path)

    request = json.dumps({"instances": case.rows}).encode()
    proxy = ["proxy", "--model-id", registered.model_id]
    with (
        own_upstream(fmt, trainer, registered.model) as upstream,
        running([*proxy, "--upstream", upstream], cli_env, fresh(tmp_path, "proxy"),
                "/_provenance/healthz") as proxy_server,
    ):  # fmt: skip
        url = proxy_server.url
        direct = httpx.post(upstream + "/predict", content=request, timeout=60)
        answer = httpx.post(url + "/predict?wait=true", content=request, timeout=300)
        assert answer.status_code == 200, answer.text
        assert answer.content == direct.content
        receipt = httpx.get(answer.headers["x-provenance-receipt"], timeout=30)
        assert receipt.status_code == 200, receipt.text
    predictions = answer.json()["predictions"]
    assert np.asarray(predictions).shape == (len(case.rows), 8 if fmt == "huggingface" else 2)
    if case.runs_in_image:  # the bound image answers as the proxied server (Debian's torch)
        got = run_prediction(engine, image_id, case.rows)
        np.testing.assert_allclose(got, predictions, rtol=1e-6, atol=0)

    client = fresh(tmp_path, "client")
    (client / "receipt.json").write_text(receipt.text, encoding="utf-8")
    (client / "request.bin").write_bytes(request)
    (client / "answer.bin").write_bytes(answer.content)
    checked = cli(
        "verify-output", "receipt.json", "--input-file", "request.bin",
        "--output-file", "answer.bin", "--model-id", registered.model_id,
        env=cli_env, cwd=client,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "verified: every required check passed" in checked.stdout

    forged = json.loads(answer.content)
    first = forged["predictions"][0]
    first[0] = first[0] + 1
    (client / "forged.bin").write_bytes(json.dumps(forged).encode())
    caught = cli(
        "verify-output", "receipt.json", "--input-file", "request.bin",
        "--output-file", "forged.bin", env=cli_env, cwd=client,
    )  # fmt: skip
    assert caught.returncode == 1
    assert caught.stderr == (
        "error: receipt: the output does not match the receipt's output digest "
        f"0x{answer.headers['x-provenance-output-digest'].removeprefix('sha256:')}\n"
    )
