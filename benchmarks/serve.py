#!/usr/bin/env python3
"""Requests per second and latency of `provenance serve`, beside a bare model server.

    .venv/bin/python benchmarks/serve.py [--requests 2000] [--clients 4]

A scikit-learn pipeline (iris) is certified, stored (an embedded IPFS block store) and
registered on a throwaway anvil, then served from its files by the attesting service
(provenance.server.service: FastAPI + uvicorn; every answer journaled with fsync and anchored in
Merkle batches in the background). The reference is the model images' own entrypoint
(standard-library ThreadingHTTPServer, no attestation) serving the same pickle in-process.
Each client sends one-row requests back to back over a kept-alive connection; the clients run
in a process of their own, so they do not share the servers' interpreter lock.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import httpx
from eth_account import Account
from rich.console import Console
from rich.table import Table
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

from provenance.attest import Attestor
from provenance.capture import track
from provenance.chain.attestor import AttestorContract
from provenance.chain.client import connect
from provenance.chain.deploy import ensure_deployed
from provenance.chain.keys import dev_account
from provenance.chain.registry import Registry
from provenance.chain.tx import Transactor
from provenance.image_entrypoint import load_model
from provenance.image_entrypoint import server as bare_server
from provenance.server.service import create_app, load_served_model, running
from provenance.stack import Tools, ephemeral_anvil, free_port
from provenance.storage import LocalStore

ROOT = Path(__file__).resolve().parent.parent
X, Y = load_iris(return_X_y=True)


def load(url: str, requests: int, clients: int) -> tuple[float, list[float]]:
    """Requests/s and per-request latencies (ms) of ``clients`` threads sending one-row requests."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        mine = []
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in range(n):
                row = X[i % len(X)].tolist()
                start = time.perf_counter()
                answer = http.post("/predict", json={"instances": [row]})
                mine.append((time.perf_counter() - start) * 1000)
                if answer.status_code != 200:
                    raise RuntimeError(f"{url}: HTTP {answer.status_code}: {answer.text}")
        with lock:
            latencies.extend(mine)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, [requests // clients] * clients))
    return len(latencies) / (time.perf_counter() - start), latencies


def measure(url: str, requests: int, clients: int) -> tuple[float, list[float]]:
    """:func:`load` in a separate process."""
    with ProcessPoolExecutor(1) as pool:
        return pool.submit(load, url, requests, clients).result()


def row(name: str, rate: float, latencies: list[float]) -> tuple[str, str, str, str]:
    q = statistics.quantiles(latencies, n=100)
    return name, f"{rate:,.0f}", f"{q[49]:.2f}", f"{q[98]:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args(argv)
    console = Console(width=150)
    tools = Tools(search_path=(Path(sys.executable).parent, ROOT / ".tools" / "bin"))
    results = []
    with ephemeral_anvil(tools) as rpc, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        w3 = connect(rpc)
        admin = dev_account(w3)
        deployment, _ = ensure_deployed(w3, admin, folder / "d.json")
        tx = Transactor(w3, admin)
        registry = Registry(w3, deployment.contracts["ModelRegistry"].address, tx)
        attestor_contract = AttestorContract(w3, deployment.contracts["OutputAttestor"].address, tx)
        store = LocalStore(folder / "blocks")
        with track(
            "Iris", output_dir=folder / "run", storage=store, registry=registry, signer=admin
        ) as run:
            model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])
            run.log_model(model.fit(X, Y))
        assert run.certificate is not None
        mid = run.certificate.model_id

        # the reference: the image entrypoint's bare HTTP server, same pickle, no attestation
        port = free_port()
        bare = bare_server(load_model(folder / "run" / "model.pkl"), f"127.0.0.1:{port}")
        bare.RequestHandlerClass.log_message = lambda *_: None  # type: ignore[attr-defined]
        thread = threading.Thread(target=bare.serve_forever, daemon=True)
        thread.start()
        load(f"http://127.0.0.1:{port}", 100, 1)  # warm up
        results.append(
            row(
                "model image entrypoint (stdlib HTTP, no attestation)",
                *measure(f"http://127.0.0.1:{port}", args.requests, args.clients),
            )
        )
        bare.shutdown()

        served = load_served_model(mid, registry=registry, storage=store, workdir=folder / "w")
        node = Account.create()
        attestor_contract.authorize_node(
            mid, node.address, run.certificate.registration(), served.image_id_bytes
        )
        attestor = Attestor(
            mid,
            served.model_digest_bytes,
            node,
            attestor_contract,
            folder / "journal.sqlite",
            max_age=1.0,
        )
        attestor.start()
        app = create_app(served, attestor, registry)
        with running(app, port=free_port()) as url:
            load(url, 100, 1)
            rate, latencies = measure(url, args.requests, args.clients)
            results.append(row("provenance serve (journaled, batched, anchored)", rate, latencies))
            attestor.flush()
            anchored = attestor.pending() == 0
        attestor.close()
        client = w3.client_version
    table = Table(
        title=f"one-row predictions, {args.clients} clients, {args.requests:,} requests",
        title_justify="left",
    )
    for column in ("server", "requests/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "server" else "right")
    for r in results:
        table.add_row(*r)
    console.print(table)
    console.print(f"every output anchored afterwards: {anchored} ({client})")
    console.print(f"machine: {describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
