#!/usr/bin/env python3
"""Requests per second and latency through `provenance proxy`, beside the upstream alone, for
two upstreams: a trivial echo and one with an inference time.

    .venv/bin/python benchmarks/proxy.py [--requests 2000] [--clients 8] [--rounds 5]
                                         [--upstream-delay-ms 5] [--loop auto|asyncio|uvloop]

The upstream is tests/integration/upstreams/predictor.js (Node.js, its http module): one-row
JSON predictions on ``POST /v1/predict``, in two profiles, each its own Node process:

- **echo**: answers at once; the proxy's own cost dominates (the worst case for a proxy);
- **inference**: answers ``--upstream-delay-ms`` later (a timer, so the upstream's "inference"
  does not take the CPU the proxy needs): a model server's answer time.

Three targets per profile, each measured in turn in every round (so a neighbour's load falls
on all of them), by the same clients:

- **direct**: the Node upstream itself (the reference);
- **pass-through**: a bare ASGI pass-through, the proxy's own :class:`provenance.proxy.Upstream`
  served as the proxy is (:func:`provenance.proxy.server_options`), no model check, no journal:
  what forwarding through Python costs by itself;
- **proxy**: :class:`provenance.proxy.ProxyApp` with a real :class:`provenance.attest.Attestor`
  (each answer leaves once its record is synced to the journal on disk; Merkle batches anchored
  in the background on a throwaway anvil).

The clients (``--clients`` concurrent requests, each on its own kept-alive connection, aiohttp)
run in a process of their own. Goal (issue 16): proxy requests/s >= 0.9x direct, p99 added
<= 2 ms. Both servers run in this process, in threads, as uvicorn runs the proxy in the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn
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
from provenance.proxy import ProxyApp, Upstream, pass_on, query_without_wait, server_options
from provenance.stack import Tools, ephemeral_anvil, free_port
from provenance.storage import LocalStore

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = ROOT / "tests" / "integration" / "upstreams" / "predictor.js"
BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
TARGETS = ("direct", "pass-through", "proxy")


# ---------------------------------------------------------------------------------- the clients
def load(url: str, requests: int, clients: int) -> tuple[float, list[float]]:
    """Requests/s and per-request latencies (ms) of ``clients`` concurrent clients, each
    sending one request after the other on its own kept-alive connection."""

    async def run() -> tuple[float, list[float]]:
        latencies: list[float] = []
        headers = {"content-type": "application/json"}
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def one() -> float:
                start = time.perf_counter()
                async with http.post(url + "/v1/predict", data=BODY, headers=headers) as answer:
                    await answer.read()
                    if answer.status != 200:
                        raise RuntimeError(f"{url}: HTTP {answer.status}: {await answer.text()}")
                return (time.perf_counter() - start) * 1000

            async def client(n: int) -> None:
                for _ in range(n):
                    latencies.append(await one())

            await asyncio.gather(*(one() for _ in range(clients)))  # open the connections
            start = time.perf_counter()
            await asyncio.gather(*(client(requests // clients) for _ in range(clients)))
            return len(latencies) / (time.perf_counter() - start), latencies

    return asyncio.run(run())


def quantiles(latencies: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(latencies, n=100)
    return q[49], q[98]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# ---------------------------------------------------------------------------------- the servers
class PassThrough:
    """Forwarding alone: the proxy's Upstream, no model check, no journal."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # close the upstream's connections at shutdown
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await self.upstream.aclose()
            await send({"type": "lifespan.shutdown.complete"})
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


@contextlib.contextmanager
def serving(app: Any, loop: str) -> Iterator[str]:
    """``app`` under uvicorn as ``provenance proxy`` runs it, in a thread; its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, **server_options(loop))
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server on port {port} did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


@contextlib.contextmanager
def node_upstream(delay_ms: int) -> Iterator[tuple[str, int]]:
    """The Node upstream answering after ``delay_ms``: its URL and process id."""
    node = subprocess.Popen(
        ["node", str(UPSTREAM), "0", str(delay_ms)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert node.stdout is not None
        yield f"http://127.0.0.1:{int(node.stdout.readline().split()[-1])}", node.pid
    finally:
        node.terminate()
        node.wait(timeout=30)


def commit_latency(attestor: Attestor, commits: int = 200) -> tuple[float, float]:
    """p50 and p99 (ms) of one record journaled alone: one commit, one fsync on this disk,
    the floor of what attesting adds to an answer."""
    took = []
    for i in range(commits):
        start = time.perf_counter()
        attestor.record(b"probe %d" % i, b"")
        took.append((time.perf_counter() - start) * 1000)
    return quantiles(took)


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) of process ``pid`` so far, or of this one (None): CPU per
    request is a figure a neighbour's load disturbs less than requests/s."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Profile:
    name: str
    delay_ms: int
    urls: dict[str, str]
    attestor: Attestor
    node_pid: int

    def measure(
        self, pool: ProcessPoolExecutor, target: str, requests: int, clients: int
    ) -> tuple[float, list[float], float]:
        """Requests/s, latencies (ms) and CPU per request (ms): of the Node upstream for
        ``direct``, else of this process (the server under test and its anchoring thread)."""
        pid = self.node_pid if target == "direct" else None
        before = cpu_seconds(pid)
        rate, latencies = pool.submit(load, self.urls[target], requests, clients).result()
        return rate, latencies, (cpu_seconds(pid) - before) * 1000 / len(latencies)


# ------------------------------------------------------------------------------------ the report
def report(
    console: Console, args: argparse.Namespace, profile: Profile, rounds: list[dict[str, Any]]
) -> str:
    """Prints the profile's table; returns its one-line summary."""
    table = Table(
        title=f"{profile.name}: upstream answers after {profile.delay_ms} ms; {args.clients} "
        f"clients, {args.requests:,} requests per target and round",
        title_justify="left",
    )
    columns = ("round", *(f"{t} req/s" for t in TARGETS), "pass/direct", "proxy/direct")
    columns += (*(f"{t} p50/p99 ms" for t in TARGETS), "p99 added: pass / proxy ms")
    for column in columns:
        table.add_column(column, justify="right")
    ratios, bare_ratios, added, bare_added = [], [], [], []
    for i, r in enumerate(rounds, 1):
        (d_rate, d_lat, _), (b_rate, b_lat, _), (p_rate, p_lat, _) = (r[t] for t in TARGETS)
        (d50, d99), (b50, b99), (p50, p99) = (quantiles(x) for x in (d_lat, b_lat, p_lat))
        ratios.append(p_rate / d_rate)
        bare_ratios.append(b_rate / d_rate)
        added.append(p99 - d99)
        bare_added.append(b99 - d99)
        table.add_row(
            str(i),
            *(f"{x:,.0f}" for x in (d_rate, b_rate, p_rate)),
            f"{b_rate / d_rate:.2f}x",
            f"{p_rate / d_rate:.2f}x",
            *(f"{a:.2f} / {b:.2f}" for a, b in ((d50, d99), (b50, b99), (p50, p99))),
            f"{b99 - d99:+.2f} / {p99 - d99:+.2f}",
        )
    console.print(table)
    median = statistics.median
    rate_met = median(ratios) >= 0.9
    p99_met = median(added) <= 2
    stats = profile.attestor.journal_stats
    console.print(
        f"  proxy / direct requests/s: median {median(ratios):.2f}x (min {min(ratios):.2f}x, "
        f"max {max(ratios):.2f}x); p99 added: median {median(added):+.2f} ms (min "
        f"{min(added):+.2f}, max {max(added):+.2f})"
    )
    console.print(
        f"  bare pass-through (forwarding through Python, no attestation): "
        f"{median(bare_ratios):.2f}x direct requests/s, p99 added {median(bare_added):+.2f} ms"
    )
    cpu = {t: median(r[t][2] for r in rounds) for t in TARGETS}
    console.print(
        f"  CPU per request, median: the Node upstream {cpu['direct']:.3f} ms; the Python "
        f"process of the pass-through {cpu['pass-through']:.3f} ms, of the proxy "
        f"{cpu['proxy']:.3f} ms (its anchoring thread included)"
    )
    console.print(
        f"  journal: {stats.records:,} records in {stats.commits:,} synced commits "
        f"({stats.records / max(stats.commits, 1):.1f} records per fsync)"
    )
    return (
        f"{profile.name} ({profile.delay_ms} ms upstream): proxy {median(ratios):.2f}x direct "
        f"requests/s (goal >= 0.90x: {'met' if rate_met else 'NOT met'}), p99 "
        f"{median(added):+.2f} ms (goal <= 2 ms: {'met' if p99_met else 'NOT met'})"
    )


def event_loop(choice: str) -> str:
    if choice == "auto":
        return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return choice


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--upstream-delay-ms", type=int, default=5)
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="the servers' event loop (auto: uvloop when installed, as the CLI)",
    )
    args = parser.parse_args(argv)
    console = Console(width=200)
    tools = Tools(search_path=(Path(sys.executable).parent, ROOT / ".tools" / "bin"))
    loads = [load_average()]
    profiles: list[Profile] = []
    results: dict[str, list[dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        rpc = stack.enter_context(ephemeral_anvil(tools))
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        w3 = connect(rpc)
        admin = dev_account(w3)
        deployment, _ = ensure_deployed(w3, admin, folder / "d.json")
        tx = Transactor(w3, admin)
        registry = Registry(w3, deployment.contracts["ModelRegistry"].address, tx)
        contract = AttestorContract(w3, deployment.contracts["OutputAttestor"].address, tx)
        with track(
            "Behind a proxy", output_dir=folder / "run", storage=LocalStore(folder / "blocks"),
            registry=registry, signer=admin,
        ) as run:  # fmt: skip
            run.log_model(LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]))
        assert run.certificate is not None
        mid = run.certificate.model_id
        for name, delay in (("echo", 0), ("inference", args.upstream_delay_ms)):
            direct, node_pid = stack.enter_context(node_upstream(delay))
            key = Account.create()  # a node per profile: each proxy owns its journal
            contract.authorize_node(mid, key.address, run.certificate.registration(), b"\0" * 32)
            attestor = Attestor(
                mid,
                bytes.fromhex(run.certificate.model.digest[7:]),
                key,
                contract,
                folder / f"journal-{name}.sqlite",
                max_age=2.0,  # the CLI's default --max-age
            )
            attestor.start()
            bare = PassThrough(Upstream(direct, max_response_bytes=1 << 20))
            # the proxy's shutdown (leaving `serving`) anchors what its journal holds, closes it
            proxy = ProxyApp(attestor, registry, Upstream(direct, max_response_bytes=1 << 20))
            urls = {
                "direct": direct,
                "pass-through": stack.enter_context(serving(bare, args.loop)),
                "proxy": stack.enter_context(serving(proxy, args.loop)),
            }
            profiles.append(Profile(name, delay, urls, attestor, node_pid))
            results[name] = []
        probe = Attestor(
            mid, bytes(32), Account.create(), contract, folder / "probe.sqlite", max_age=3600
        )  # never anchored: it only times the journal's commits
        commits = [commit_latency(probe)]
        pool = stack.enter_context(ProcessPoolExecutor(1))
        for profile in profiles:
            for url in profile.urls.values():
                pool.submit(load, url, 200, args.clients).result()  # warm up
        for _ in range(args.rounds):
            for profile in profiles:
                results[profile.name].append(
                    {t: profile.measure(pool, t, args.requests, args.clients) for t in TARGETS}
                )
            loads.append(load_average())
        commits.append(commit_latency(probe))
        probe.close()
        for profile in profiles:
            profile.attestor.flush()
        anchored = all(p.attestor.pending() == 0 for p in profiles)
        recorded = sum(p.attestor.next_sequence for p in profiles)
    summaries = [report(console, args, p, results[p.name]) for p in profiles]
    console.print()
    for line in summaries:
        console.print(line)
    console.print(
        "one record journaled alone (one commit, one fsync on the journal's disk), p50 / p99 ms, "
        f"before and after the rounds: {' | '.join(f'{a:.2f} / {b:.2f}' for a, b in commits)}: "
        "every attested answer waits for such a commit (and for the one under way when it "
        "came), so this is the floor of what attesting adds"
    )
    console.print(f"every one of the {recorded:,} proxied outputs anchored afterwards: {anchored}")
    console.print(
        f"servers: uvicorn {uvicorn.__version__}, httptools, {event_loop(args.loop)} event loop; "
        f"upstream: Node.js {subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()}"
    )
    console.print(f"load average (1/5/15 min) before and after each round: {' | '.join(loads)}")
    console.print(f"machine: {describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
