#!/usr/bin/env python3
"""Family-tree queries: the SQLite lineage index at scale, beside walking the chain's events.

    .venv/bin/python benchmarks/lineage.py [--models 1000000] [--depth 100] [--queries 2000]

1. Index at scale: fills a LineageIndex with `--models` synthetic certificates in chains of
   `--depth` (every tenth chain also merges a model of the previous chain, so the graph is a
   DAG, not only lines) and times full ancestry of chain tips: p50 / p99 per query.
2. The same query answered from the chain: a real ModelRegistry on a throwaway anvil holding one
   chain of `--depth` registrations; Registry.ancestors walks ParentLinked/ModelRegistered logs
   (one eth_getLogs per generation), the synced index answers in one recursive query.

Goal (issue 3): depth 100 among 1,000,000 certificates, p50 <= 1 ms, p99 <= 5 ms. Printed, not
asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

from provenance.chain.client import connect
from provenance.chain.deploy import ensure_deployed
from provenance.chain.index import LineageIndex
from provenance.chain.keys import dev_account
from provenance.chain.registry import Registry
from provenance.chain.tx import Transactor
from provenance.registration import Parent, Registration
from provenance.stack import Tools, ephemeral_anvil

ROOT = Path(__file__).resolve().parent.parent


def fill(index: LineageIndex, models: int, depth: int, progress: Progress) -> list[bytes]:
    """Synthetic chains written straight into the index tables; returns the chain tips."""
    per_chain = depth + 1  # a tip with `depth` ancestors
    chains = -(-models // per_chain)  # at least `models`
    task = progress.add_task("filling the index", total=chains)
    tips: list[bytes] = []
    previous_chain: list[bytes] = []
    db = index.db
    db.execute("PRAGMA synchronous=OFF")  # a throwaway file; the index's own setting is NORMAL
    db.execute("PRAGMA cache_size=-1048576")  # 1 GiB while filling: random keys, five B-trees
    with db:
        for c in range(chains):
            ids = [os.urandom(32) for _ in range(per_chain)]
            db.executemany(
                "INSERT INTO models (id, registrant, certificate_digest, model_digest,"
                " data_commitment, block, tx, status) VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                [(i, "0x" + "11" * 20, os.urandom(32), os.urandom(32), b"", c, "0x") for i in ids],
            )
            edges = [(ids[k], ids[k - 1], 0) for k in range(1, per_chain)]
            if previous_chain and c % 10 == 0:  # a merge across chains
                edges.append((ids[depth // 2], previous_chain[depth // 3], 4))
            db.executemany("INSERT INTO edges (child, parent, relation) VALUES (?, ?, ?)", edges)
            tips.append(ids[-1])
            previous_chain = ids
            progress.advance(task)
    return tips


def timed(fn, args: list[bytes]) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for a in args:
        start = time.perf_counter()
        fn(a)
        out.append((time.perf_counter() - start) * 1000)
    return out


def percentiles(ms: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return q[49], q[98]


def chain_walk(depth: int, queries: int) -> tuple[list[float], list[float], int]:
    tools = Tools(search_path=(Path(sys.executable).parent, ROOT / ".tools" / "bin"))
    with ephemeral_anvil(tools) as url, tempfile.TemporaryDirectory() as tmp:
        w3 = connect(url)
        account = dev_account(w3)
        deployment, _ = ensure_deployed(w3, account, Path(tmp) / "d.json")
        record = deployment.contracts["ModelRegistry"]
        registry = Registry(w3, record.address, Transactor(w3, account), from_block=record.block)
        regs: list[Registration] = []
        for k in range(depth + 1):
            parents = (Parent(regs[-1].model_id_for(account.address), "fine-tune"),) if k else ()
            regs.append(Registration(os.urandom(32), os.urandom(32), os.urandom(32), parents))
        registry.register_batch(regs)
        tip = regs[-1].model_id_for(account.address)
        with LineageIndex(Path(tmp) / "index.sqlite") as index:
            index.sync(registry)
            assert index.ancestors(tip) == registry.ancestors(tip)
            from_logs = timed(registry.ancestors, [tip] * max(3, queries // 200))
            from_index = timed(index.ancestors, [tip] * queries)
        return from_logs, from_index, len(regs) - 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1_000_000)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--queries", type=int, default=2_000)
    args = parser.parse_args(argv)
    console = Console(width=150)
    with tempfile.TemporaryDirectory() as tmp:
        with Progress(console=console, transient=True) as progress:
            index = LineageIndex(Path(tmp) / "lineage.sqlite")
            start = time.perf_counter()
            tips = fill(index, args.models, args.depth, progress)
            fill_s = time.perf_counter() - start
        sample = random.Random(7).choices(tips, k=args.queries)
        depth_seen = len(index.ancestors(sample[0]))
        ancestry = timed(index.ancestors, sample)
        taint = timed(index.is_tainted, sample)
        total = index.count()
        index.close()
    logs_ms, index_ms, chain_depth = chain_walk(args.depth, args.queries)

    table = Table(title="full ancestry of one model", title_justify="left")
    for col in ("source", "models", "depth", "queries", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right" if col != "source" else "left")
    for label, ms, models, depth in (
        ("LineageIndex (SQLite), ancestors", ancestry, total, depth_seen),
        ("LineageIndex (SQLite), is_tainted", taint, total, depth_seen),
        ("LineageIndex synced from anvil", index_ms, chain_depth + 1, chain_depth),
        ("Registry.ancestors over eth_getLogs (anvil)", logs_ms, chain_depth + 1, chain_depth),
    ):
        p50, p99 = percentiles(ms)
        table.add_row(label, f"{models:,}", str(depth), str(len(ms)), f"{p50:.3f}", f"{p99:.3f}")
    console.print(table)
    console.print(
        f"index filled with {total:,} models in {fill_s:.1f} s; goal: p50 <= 1 ms, p99 <= 5 ms at depth 100 among 1,000,000"
    )
    console.print(f"machine: {describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
