#!/usr/bin/env python3
"""Requests per second and latency through `provenance proxy`, beside the upstream alone.

    .venv/bin/python benchmarks/proxy.py [--requests 2000] [--clients 4] [--rounds 5]

The upstream is tests/integration/upstreams/predictor.js (Node.js, its http module): one-row
JSON predictions on ``POST /v1/predict``. Three targets, each measured in turn in every round
(so a neighbour's load falls on all three), the same clients each time:

- **direct**: the Node upstream itself (the reference);
- **pass-through**: a bare ASGI pass-through in this process, uvicorn + the proxy's own
  :class:`provenance.proxy.Upstream` (httpx connection pool), no attestation: what forwarding
  through Python costs by itself;
- **proxy**: :class:`provenance.proxy.ProxyApp` with a real :class:`provenance.attest.Attestor`
  (journal synced to disk, Merkle batches anchored in the background on a throwaway anvil).

The clients (threads, one kept-alive httpx connection each) run in a process of their own.
Goal (issue 16): proxy requests/s >= 0.9x direct, p99 added <= 2 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from rich.console import Console
from rich.table import Table
from sklearn.linear_model import LogisticRegression

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
from provenance.proxy import ProxyApp, Upstream, pass_on, query_without_wait
from provenance.server.service import running
from provenance.stack import Tools, ephemeral_anvil, free_port
from provenance.storage import LocalStore

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = ROOT / "tests" / "integration" / "upstreams" / "predictor.js"
BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'


def load(url: str, requests: int, clients: int) -> tuple[float, list[float]]:
    """Requests/s and per-request latencies (ms) of ``clients`` threads."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        mine = []
        with httpx.Client(base_url=url, timeout=60) as http:
            for _ in range(n):
                start = time.perf_counter()
                answer = http.post(
                    "/v1/predict", content=BODY, headers={"content-type": "application/json"}
                )
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
    with ProcessPoolExecutor(1) as pool:
        return pool.submit(load, url, requests, clients).result()


def quantiles(latencies: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(latencies, n=100)
    return q[49], q[98]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


class PassThrough:
    """Forwarding alone: the proxy's Upstream, no model check, no journal."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        query, _ = query_without_wait(scope["query_string"])
        answer = await self.upstream.forward(
            scope["method"],
            scope["raw_path"],
            query,
            pass_on(scope["headers"], drop=(b"host", b"content-length")),
            body,
        )
        headers = [*answer.headers, (b"content-length", str(len(answer.body)).encode())]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    console = Console(width=160)
    tools = Tools(search_path=(Path(sys.executable).parent, ROOT / ".tools" / "bin"))
    names = ("direct", "pass-through", "proxy")
    rounds: list[dict[str, tuple[float, list[float]]]] = []
    loads = [load_average()]
    node = subprocess.Popen(["node", str(UPSTREAM), "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert node.stdout is not None
        direct = f"http://127.0.0.1:{int(node.stdout.readline().split()[-1])}"
        with ephemeral_anvil(tools) as rpc, tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            w3 = connect(rpc)
            admin = dev_account(w3)
            deployment, _ = ensure_deployed(w3, admin, folder / "d.json")
            tx = Transactor(w3, admin)
            registry = Registry(w3, deployment.contracts["ModelRegistry"].address, tx)
            contract = AttestorContract(w3, deployment.contracts["OutputAttestor"].address, tx)
            store = LocalStore(folder / "blocks")
            with track(
                "Behind a proxy", output_dir=folder / "run", storage=store, registry=registry,
                signer=admin,
            ) as run:  # fmt: skip
                run.log_model(LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]))
            assert run.certificate is not None
            mid = run.certificate.model_id
            key = Account.create()
            contract.authorize_node(mid, key.address, run.certificate.registration(), b"\0" * 32)
            attestor = Attestor(
                mid,
                bytes.fromhex(run.certificate.model.digest[7:]),
                key,
                contract,
                folder / "journal.sqlite",
                max_age=1.0,
            )
            attestor.start()
            bare = PassThrough(Upstream(direct, max_response_bytes=1 << 20))
            proxy = ProxyApp(attestor, registry, Upstream(direct, max_response_bytes=1 << 20))
            with (
                running(bare, port=free_port()) as bare_url,  # type: ignore[arg-type]
                running(proxy, port=free_port()) as proxy_url,  # type: ignore[arg-type]
            ):
                urls = dict(zip(names, (direct, bare_url, proxy_url), strict=True))
                for url in urls.values():
                    load(url, 200, 1)  # warm up
                for _ in range(args.rounds):
                    rounds.append(
                        {n: measure(u, args.requests, args.clients) for n, u in urls.items()}
                    )
                    loads.append(load_average())
                attestor.flush()
                anchored = attestor.pending() == 0
                recorded = attestor.next_sequence
            attestor.close()
    finally:
        node.terminate()
        node.wait(timeout=30)
    table = Table(
        title=f"one-row JSON predictions, {args.clients} clients, {args.requests:,} requests a "
        "round, each target in turn",
        title_justify="left",
    )
    for column in (
        "round",
        "direct req/s",
        "pass-through req/s",
        "proxy req/s",
        "proxy/direct",
        "direct p50/p99 ms",
        "pass-through p50/p99 ms",
        "proxy p50/p99 ms",
        "p99 added ms",
    ):
        table.add_column(column, justify="right")
    ratios, bare_ratios, added, bare_added = [], [], [], []
    for i, r in enumerate(rounds, 1):
        (d_rate, d_lat), (b_rate, b_lat), (p_rate, p_lat) = (r[n] for n in names)
        d50, d99 = quantiles(d_lat)
        b50, b99 = quantiles(b_lat)
        p50, p99 = quantiles(p_lat)
        ratios.append(p_rate / d_rate)
        bare_ratios.append(b_rate / d_rate)
        added.append(p99 - d99)
        bare_added.append(b99 - d99)
        table.add_row(
            str(i),
            f"{d_rate:,.0f}",
            f"{b_rate:,.0f}",
            f"{p_rate:,.0f}",
            f"{p_rate / d_rate:.2f}x",
            f"{d50:.2f} / {d99:.2f}",
            f"{b50:.2f} / {b99:.2f}",
            f"{p50:.2f} / {p99:.2f}",
            f"{p99 - d99:+.2f}",
        )
    console.print(table)
    median = statistics.median
    console.print(
        f"requests/s, proxy / direct: median {median(ratios):.2f}x (min {min(ratios):.2f}x, "
        f"max {max(ratios):.2f}x); goal >= 0.90x: {'met' if median(ratios) >= 0.9 else 'NOT met'}"
    )
    console.print(
        f"p99 added by the proxy: median {median(added):+.2f} ms; goal <= 2 ms: "
        f"{'met' if median(added) <= 2 else 'NOT met'}"
    )
    console.print(
        f"the bare pass-through alone (no attestation): {median(bare_ratios):.2f}x direct "
        f"requests/s, p99 {median(bare_added):+.2f} ms: the share of the cost that is forwarding "
        "through Python, not attesting"
    )
    console.print(f"every one of the {recorded:,} proxied outputs anchored afterwards: {anchored}")
    console.print(f"load average (1/5/15 min) before and after each round: {' | '.join(loads)}")
    console.print(f"machine: {describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
