#!/usr/bin/env python3
"""Output attestation throughput and gas.

    .venv/bin/python benchmarks/attest.py [--outputs 200000] [--batch 10000 100000] [--repeat 3]

1. Batched, end to end: for every output, sha-256 of its input and output, the record's leaf;
   per batch, the Merkle tree, the node's EIP-712 signature over the root, and anchoring on a
   throwaway anvil (one transaction per batch, awaited). Outputs per second with the native
   leaf and tree loop (native/, the provenance_native extension) and with the pure-Python one
   side by side: one batch after the other, and pipelined (batch k anchored by a sender
   thread while batch k+1 is hashed, as the SDK's background anchoring does); the pure-Python
   loop also with the per-output hashing spread over both cores (processes). Each figure is
   the median of --repeat runs, with the spread; the parts (hashing alone, anchoring per
   batch) are printed so the reason of a missed goal shows.
2. Individually signed outputs (no batching): one secp256k1 signature per output, with
   coincurve directly (sign_recoverable over the EIP-712 digest) and with eth-account's
   sign_message, on one and two processes.
3. Gas per output at batch sizes 1, 100, 1,000, 10,000.

Goals (issues 7 and 18): >= 250,000 outputs/s batched on 2 cores; >= 35,000 individually
signed outputs/s on two cores; printed, not asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import coincurve
from eth_account import Account
from eth_account.messages import encode_typed_data
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

from provenance.attest import Batch, OutputTree, batch_typed_data, keccak256
from provenance.attest import native as attest_native
from provenance.attest.native import output_leaves, tree_levels
from provenance.chain.attestor import AttestorContract
from provenance.chain.client import connect
from provenance.chain.deploy import ensure_deployed
from provenance.chain.keys import dev_account
from provenance.chain.registry import Registry
from provenance.chain.tx import Transactor
from provenance.registration import Registration
from provenance.stack import Tools, ephemeral_anvil

ROOT = Path(__file__).resolve().parent.parent
MODEL_ID, MODEL_DIGEST = os.urandom(32), os.urandom(32)
TIMESTAMP = 1_700_000_000


def traffic(first: int, count: int) -> tuple[list[bytes], list[bytes]]:
    """The inputs and outputs of ``count`` requests from sequence ``first``."""
    return (
        [b"features %d" % seq for seq in range(first, first + count)],
        [b"class %d" % (seq % 3) for seq in range(first, first + count)],
    )


def leaves(first: int, count: int, native: bool = False) -> list[bytes]:
    """Per-output work: two sha-256 and the double-keccak leaf (also a process-pool task)."""
    inputs, outputs = traffic(first, count)
    return output_leaves(MODEL_ID, MODEL_DIGEST, inputs, outputs, first, TIMESTAMP, native=native)[
        2
    ]


Anchor = Callable[[Batch], None]


def batched(
    outputs: int,
    batch: int,
    base: int,
    anchor: Anchor,
    *,
    native: bool,
    pipelined: bool = False,
    pool: ProcessPoolExecutor | None = None,
) -> tuple[float, float]:
    """(outputs/s end to end, seconds spent hashing leaves and trees)."""
    start = time.perf_counter()
    hashing = 0.0
    sender = ThreadPoolExecutor(1) if pipelined else None
    sent: list[Future[None]] = []
    try:
        for offset in range(0, outputs, batch):
            count = min(batch, outputs - offset)
            first = base + offset
            t = time.perf_counter()
            if pool is None:
                ls = leaves(first, count, native)
            else:
                half = count // 2
                parts = pool.map(leaves, [first, first + half], [half, count - half])
                ls = [leaf for part in parts for leaf in part]
            root = tree_levels(ls, native=native)[-1][0]
            hashing += time.perf_counter() - t
            b = Batch(MODEL_ID, MODEL_DIGEST, root, first, count, TIMESTAMP)
            if sender is None:
                anchor(b)
            else:
                sent.append(sender.submit(anchor, b))
        for future in sent:
            future.result()
    finally:
        if sender is not None:
            sender.shutdown()
    return outputs / (time.perf_counter() - start), hashing


def sign_coincurve(n: int) -> int:
    key = coincurve.PrivateKey(os.urandom(32))
    for i in range(n):
        digest = keccak256(b"\x19\x01" + b"\x11" * 32 + i.to_bytes(32, "big"))
        key.sign_recoverable(digest, hasher=None)
    return n


def sign_eth_account(n: int) -> int:
    account = Account.create()
    typed = batch_typed_data(
        Batch(MODEL_ID, MODEL_DIGEST, b"\x00" * 32, 0, 1, 0), 31337, "0x" + "11" * 20
    )
    for i in range(n):
        typed["message"]["firstSequence"] = i  # type: ignore[index]
        account.sign_message(encode_typed_data(full_message=typed))
    return n


def rate(fn, n: int, processes: int) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    if processes == 1:
        fn(n)
    else:
        with ProcessPoolExecutor(processes) as pool:
            list(pool.map(fn, [n // processes] * processes))
    return n / (time.perf_counter() - start)


def spread(values: list[float]) -> str:
    return f"{min(values):,.0f} to {max(values):,.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=int, default=200_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--signatures", type=int, default=20_000)
    args = parser.parse_args(argv)
    console = Console(width=150)
    console.print(f"leaf and tree loop: {attest_native.implementation()}")
    load_before = os.getloadavg()
    tools = Tools(search_path=(Path(sys.executable).parent, ROOT / ".tools" / "bin"))
    rows: list[tuple[str, str, str, str]] = []
    with ephemeral_anvil(tools) as url:
        w3 = connect(url)
        admin = dev_account(w3)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            deployment, _ = ensure_deployed(w3, admin, Path(tmp) / "d.json")
        tx = Transactor(w3, admin)
        registry = Registry(w3, deployment.contracts["ModelRegistry"].address, tx)
        global MODEL_ID, MODEL_DIGEST
        reg = Registration(os.urandom(32), MODEL_DIGEST, os.urandom(32))
        MODEL_ID = registry.register(reg).id
        attestor = AttestorContract(w3, deployment.contracts["OutputAttestor"].address, tx)
        node = dev_account(w3, 1)
        attestor.authorize_node(MODEL_ID, node.address, reg, os.urandom(32))
        sequence = [0]
        anchoring = [0.0, 0]  # seconds in anchor(), batches

        def anchor(b: Batch) -> None:
            """The node signs the batch and anchors it (one transaction, awaited)."""
            t = time.perf_counter()
            attestor.anchor(b, attestor.sign(node, b))
            anchoring[0] += time.perf_counter() - t
            anchoring[1] += 1

        variants: list[tuple[str, bool, bool, bool]] = []  # name, native, pipelined, processes
        if attest_native.native_available:
            variants += [
                ("native, one batch after the other", True, False, False),
                ("native, pipelined (anchor k while hashing k+1)", True, True, False),
            ]
        variants += [
            ("pure Python, one batch after the other", False, False, False),
            ("pure Python, pipelined", False, True, False),
            ("pure Python, leaves on 2 processes", False, False, True),
        ]
        runs = [(size, *variant) for size in args.batch for variant in variants]
        rates: dict[tuple[int, str], list[float]] = {(r[0], r[1]): [] for r in runs}
        hashing: dict[tuple[int, str], list[float]] = {key: [] for key in rates}
        with ProcessPoolExecutor(2) as pool:
            pool.submit(leaves, 0, 1).result()  # warm the workers
            for _ in range(args.repeat):  # interleaved, so the load of the machine hits all
                for size, name, native, pipelined, processes in runs:
                    per_second, hashed = batched(
                        args.outputs,
                        size,
                        sequence[0],
                        anchor,
                        native=native,
                        pipelined=pipelined,
                        pool=pool if processes else None,
                    )
                    sequence[0] += args.outputs
                    rates[size, name].append(per_second)
                    hashing[size, name].append(args.outputs / hashed)
        for (size, name), values in rates.items():
            rows.append(
                (
                    f"batched end to end (batches of {size:,}), {name}",
                    f"{statistics.median(values):,.0f}",
                    spread(values),
                    f"{statistics.median(hashing[size, name]):,.0f}",
                )
            )
        per_batch = anchoring[0] / anchoring[1]
        gas = []
        for size in (1, 100, 1_000, 10_000):
            tree = OutputTree(leaves(sequence[0], size))
            b = Batch(MODEL_ID, MODEL_DIGEST, tree.root, sequence[0], size, TIMESTAMP)
            receipt = attestor.attest_batch(b, attestor.sign(node, b))
            sequence[0] += size
            gas.append((size, int(receipt["gasUsed"])))
        client = w3.client_version
    for processes in (1, 2):
        rows.append(
            (
                f"individually signed, coincurve, {processes} process(es)",
                f"{rate(sign_coincurve, args.signatures, processes):,.0f}",
                "",
                "",
            )
        )
    rows.append(
        (
            "individually signed, eth-account sign_message, 1 process",
            f"{rate(sign_eth_account, args.signatures // 10, 1):,.0f}",
            "",
            "",
        )
    )
    table = Table(title="outputs per second", title_justify="left")
    table.add_column("method")
    table.add_column("outputs/s (median)", justify="right")
    table.add_column(f"spread of {args.repeat}", justify="right")
    table.add_column("hashing alone/s", justify="right")
    for r in rows:
        table.add_row(*r)
    console.print(table)
    gas_table = Table(title=f"gas per output ({client})", title_justify="left")
    gas_table.add_column("batch size", justify="right")
    gas_table.add_column("gas per batch", justify="right")
    gas_table.add_column("gas per output", justify="right")
    for size, g in gas:
        gas_table.add_row(f"{size:,}", f"{g:,}", f"{g / size:,.1f}")
    console.print(gas_table)
    console.print(
        f"anchoring (EIP-712 signature, transaction, receipt) per batch: {per_batch * 1000:.1f} ms,"
        f" so at most {min(args.batch) / per_batch:,.0f} outputs/s in batches of"
        f" {min(args.batch):,} one after the other, even with free hashing"
    )
    console.print("goals: >= 250,000/s batched; >= 35,000 individually signed/s on two cores")
    load_after = os.getloadavg()
    console.print(
        f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f};"
        f" anvil: {client}"
    )
    console.print(f"machine: {describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
