#!/usr/bin/env python3
"""Requests per second and latency of `provenance serve`, beside a bare model server.

    .venv/bin/python benchmarks/serve.py [--requests 1000] [--clients 4] [--rounds 6]

A scikit-learn pipeline (iris) is certified, stored (an embedded IPFS block store) and
registered on a throwaway anvil, then served from its files by the attesting service
(provenance.server.service: FastAPI + uvicorn; every answer journaled with fsync and anchored in
Merkle batches in the background). The reference is the model images' own entrypoint
(standard-library ThreadingHTTPServer, no attestation) serving the same pickle in-process.
Each client sends one-row requests back to back over a kept-alive connection; the clients run
in a process of their own, so they do not share the servers' interpreter lock. Both servers stay
up and are measured in alternation, ``--rounds`` times, so a neighbour's load falls on both:
the ratio of each round is the figure, printed with its spread and the load average.
``--journal-dir`` puts the journal on another file system (its fsync is the cost under test).
Goal (issue 18): requests/s >= 0.9x the bare entrypoint's, p99 <= 1.5x its p99.
"""

from __future__ import annotations

import argparse
import os
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


def quantiles(latencies: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(latencies, n=100)
    return q[49], q[98]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def spread(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.2f}x (min {min(values):.2f}x, max {max(values):.2f}x)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--journal-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    console = Console(width=150)
    tools = Tools(search_path=(Path(sys.executable).parent, ROOT / ".tools" / "bin"))
    rounds: list[tuple[tuple[float, list[float]], tuple[float, list[float]]]] = []
    loads = [load_average()]
    with (
        ephemeral_anvil(tools) as rpc,
        tempfile.TemporaryDirectory() as tmp,
        tempfile.TemporaryDirectory(dir=args.journal_dir) as journal_dir,
    ):
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
        bare_url = f"http://127.0.0.1:{port}"

        served = load_served_model(
            mid,
            registry=registry,
            storage=store,
            workdir=folder / "w",
            registrants=[admin.address],
        )
        node = Account.create()
        attestor_contract.authorize_node(
            mid, node.address, run.certificate.registration(), served.image_id_bytes
        )
        attestor = Attestor(
            mid,
            served.model_digest_bytes,
            node,
            attestor_contract,
            Path(journal_dir) / "journal.sqlite",
            max_age=1.0,
        )
        attestor.start()
        app = create_app(served, attestor, registry)
        with running(app, port=free_port()) as url:
            load(bare_url, 100, 1)  # warm up
            load(url, 100, 1)
            for _ in range(args.rounds):
                bare_figures = measure(bare_url, args.requests, args.clients)
                served_figures = measure(url, args.requests, args.clients)
                rounds.append((bare_figures, served_figures))
                loads.append(load_average())
            attestor.flush()
            anchored = attestor.pending() == 0
            recorded = attestor.next_sequence
            stats = attestor.journal_stats
        attestor.close()
        bare.shutdown()
        client = w3.client_version
    table = Table(
        title=f"one-row predictions, {args.clients} clients, {args.requests:,} requests a round",
        title_justify="left",
    )
    for column in (
        "round",
        "entrypoint req/s",
        "serve req/s",
        "ratio",
        "entrypoint p50/p99 ms",
        "serve p50/p99 ms",
        "p99 ratio",
    ):
        table.add_column(column, justify="right")
    rate_ratios, p99_ratios = [], []
    for i, ((bare_rate, bare_lat), (rate, lat)) in enumerate(rounds, 1):
        b50, b99 = quantiles(bare_lat)
        s50, s99 = quantiles(lat)
        rate_ratios.append(rate / bare_rate)
        p99_ratios.append(s99 / b99)
        table.add_row(
            str(i),
            f"{bare_rate:,.0f}",
            f"{rate:,.0f}",
            f"{rate / bare_rate:.2f}x",
            f"{b50:.1f} / {b99:.1f}",
            f"{s50:.1f} / {s99:.1f}",
            f"{s99 / b99:.2f}x",
        )
    console.print(table)
    rate_met = statistics.median(rate_ratios) >= 0.9
    p99_met = statistics.median(p99_ratios) <= 1.5
    console.print(
        f"requests/s, serve / entrypoint: {spread(rate_ratios)}; goal >= 0.90x: "
        f"{'met' if rate_met else 'NOT met'}"
    )
    console.print(
        f"p99, serve / entrypoint:        {spread(p99_ratios)}; goal <= 1.50x: "
        f"{'met' if p99_met else 'NOT met'}"
    )
    console.print(
        f"every one of the {recorded:,} outputs anchored afterwards: {anchored} ({client}); "
        f"journal on {args.journal_dir or tempfile.gettempdir()}"
    )
    console.print(
        f"journal: {stats.records:,} records in {stats.commits:,} synced commits "
        f"({stats.records / max(stats.commits, 1):.1f} records a commit)"
    )
    console.print(f"load average (1/5/15 min) before and after each round: {' | '.join(loads)}")
    console.print(f"machine: {describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
