#!/usr/bin/env python3
"""Output attestation throughput and gas.

    .venv/bin/python benchmarks/attest.py [--outputs 200000] [--batch 10000]

1. Batched, end to end: for every output, sha-256 of its input and output, the record's leaf;
   per batch, the Merkle tree, the node's EIP-712 signature over the root, and anchoring on a
   throwaway anvil (one transaction per batch). Outputs per second, on one process and with the
   per-output hashing spread over both cores.
2. Individually signed outputs (no batching): one secp256k1 signature per output, with
   coincurve directly (sign_recoverable over the EIP-712 digest) and with eth-account's
   sign_message, on one and two processes.
3. Gas per output at batch sizes 1, 100, 1,000, 10,000.

Goals (issue 7): >= 250,000 outputs/s batched; >= 35,000 individually signed outputs/s on two
cores; printed, not asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import coincurve
from eth_account import Account
from eth_account.messages import encode_typed_data
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

from provenance.attest import Batch, OutputRecord, OutputTree, batch_typed_data, keccak256
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


def leaves(first: int, count: int) -> list[bytes]:
    """Per-output work: two sha-256 and the double-keccak leaf."""
    out = []
    for seq in range(first, first + count):
        x = b"features %d" % seq
        y = b"class %d" % (seq % 3)
        rec = OutputRecord(
            MODEL_ID,
            MODEL_DIGEST,
            hashlib.sha256(x).digest(),
            hashlib.sha256(y).digest(),
            seq,
            1_700_000_000,
        )
        out.append(rec.leaf)
    return out


def batched(outputs: int, batch: int, anchor, sign, pool: ProcessPoolExecutor | None) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for first in range(0, outputs, batch):
        count = min(batch, outputs - first)
        if pool is None:
            ls = leaves(first, count)
        else:
            half = count // 2
            parts = pool.map(leaves, [first, first + half], [half, count - half])
            ls = [leaf for part in parts for leaf in part]
        tree = OutputTree(ls)
        b = Batch(MODEL_ID, MODEL_DIGEST, tree.root, first, count, 1_700_000_000)
        anchor(b, sign(b))
    return outputs / (time.perf_counter() - start)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--signatures", type=int, default=20_000)
    args = parser.parse_args(argv)
    console = Console(width=150)
    tools = Tools(search_path=(Path(sys.executable).parent, ROOT / ".tools" / "bin"))
    rows: list[tuple[str, str]] = []
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

        def anchor(b: Batch, sig: bytes) -> None:
            shifted = Batch(b.model_id, b.model_digest, b.root, sequence[0], b.count, b.timestamp)
            attestor.anchor(shifted, attestor.sign(node, shifted))
            sequence[0] += b.count

        def sign(b: Batch) -> bytes:
            return attestor.sign(node, b)

        one = batched(args.outputs, args.batch, anchor, sign, None)
        with ProcessPoolExecutor(2) as pool:
            pool.submit(leaves, 0, 1).result()  # warm the workers
            two = batched(args.outputs, args.batch, anchor, sign, pool)
        rows.append((f"batched end to end (batches of {args.batch:,}), 1 process", f"{one:,.0f}"))
        rows.append(
            (
                f"batched end to end (batches of {args.batch:,}), leaves on 2 processes",
                f"{two:,.0f}",
            )
        )
        gas = []
        for size in (1, 100, 1_000, 10_000):
            tree = OutputTree(leaves(0, size))
            b = Batch(MODEL_ID, MODEL_DIGEST, tree.root, sequence[0], size, 1_700_000_000)
            receipt = attestor.attest_batch(b, attestor.sign(node, b))
            sequence[0] += size
            gas.append((size, int(receipt["gasUsed"])))
        client = w3.client_version
    for processes in (1, 2):
        rows.append(
            (
                f"individually signed, coincurve, {processes} process(es)",
                f"{rate(sign_coincurve, args.signatures, processes):,.0f}",
            )
        )
    rows.append(
        (
            "individually signed, eth-account sign_message, 1 process",
            f"{rate(sign_eth_account, args.signatures // 10, 1):,.0f}",
        )
    )
    table = Table(title="outputs per second", title_justify="left")
    table.add_column("method")
    table.add_column("outputs/s", justify="right")
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
    console.print("goals: >= 250,000/s batched; >= 35,000 individually signed/s on two cores")
    console.print(f"machine: {describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
