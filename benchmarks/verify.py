#!/usr/bin/env python3
"""Verifying a registered large model, beside hashing it: `provenance verify MODEL` against
`provenance data hash MODEL`, and ``Verifier.files`` against ``manifest_of``, in one run.

    .venv/bin/python benchmarks/verify.py [--size-mib 1024] [--repeat 3] [--dir /tmp]

A model folder (one ``--size-mib`` weights file and a small config) is certified and
registered on a throwaway anvil (certificate in an embedded IPFS block store), then, round after
round with the four in turn, hashed and verified from the warm page cache. Verification hashes
the files once (their manifest root is the digest looked up on chain) and then reads the chain
and the certificate; the goal (issue 18) is verify <= 1.2x the hashing time, judged on the
median of each round's ratio (the pair runs back to back, under the same load). The CLI pair
also pays the interpreter's start-up and, for verify, importing web3 and eth_account.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

from provenance.capture import track
from provenance.chain.client import connect
from provenance.chain.deploy import ensure_deployed
from provenance.chain.keys import dev_account
from provenance.chain.registry import Registry
from provenance.chain.tx import Transactor
from provenance.manifest import manifest_of
from provenance.stack import Tools, ephemeral_anvil
from provenance.storage import LocalStore
from provenance.verify import Verifier
from provenance.verify.policy import Policy

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20


def write_model(folder: Path, size: int) -> None:
    folder.mkdir(parents=True)
    block = bytearray(os.urandom(64 * MiB))
    with open(folder / "weights.bin", "wb") as f:
        written, counter = 0, 0
        while written < size:
            counter += 1
            block[:8] = counter.to_bytes(8, "big")
            n = min(len(block), size - written)
            f.write(memoryview(block)[:n])
            written += n
    (folder / "config.json").write_text('{"layers": 24}\n', encoding="utf-8")
    with open(folder / "weights.bin", "rb", buffering=0) as f:  # into the page cache
        while f.read(16 * MiB):
            pass


def timed(fn: Callable[[], object], times: list[float]) -> None:
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)


def cli(*args: str, config: Path) -> None:
    env = {**os.environ, "PROVENANCE_CONFIG": str(config)}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "provenance"), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"provenance {' '.join(args)}: {done.stdout}{done.stderr}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    args = parser.parse_args(argv)
    print(f"machine: {describe()}")
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min)")
    tools = Tools(search_path=(Path(sys.executable).parent, ROOT / ".tools" / "bin"))
    with ephemeral_anvil(tools) as rpc, tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        model = folder / "model"
        write_model(model, args.size_mib * MiB)
        w3 = connect(rpc)
        admin = dev_account(w3)
        deployment, _ = ensure_deployed(w3, admin, folder / "d.json")
        registry = Registry(
            w3, deployment.contracts["ModelRegistry"].address, Transactor(w3, admin)
        )
        store = LocalStore(folder / "blocks")
        with track(
            "Large", output_dir=folder / "run", storage=store, registry=registry, signer=admin
        ) as run:
            run.log_model_files({p.name: p for p in sorted(model.iterdir())})
        assert run.certificate is not None
        policy = Policy(
            chain_id=31337,
            registry=registry.address,
            registrants=frozenset({admin.address}),
        )
        verifier = Verifier(policy, registry=registry, storage=store)
        config = folder / "provenance.toml"
        config.write_text(
            f'state_dir = "{folder / "state"}"\n\n[chain]\nrpc_url = "{rpc}"\nchain_id = 31337\n'
            f'deployment = "{folder / "d.json"}"\n\n[ipfs]\nbackend = "local"\n'
            f'store = "{folder / "blocks"}"\n\n[trust]\nregistrants = ["{admin.address}"]\n',
            encoding="utf-8",
        )

        def verify_api() -> None:
            report = verifier.files(model)
            report.raise_for_failure()

        verify_api()  # a warm-up, and the check that it verifies
        cli("verify", str(model), config=config)
        rows: dict[str, list[float]] = {
            "manifest_of (hashing, in process)": [],
            "Verifier.files (verify, in process)": [],
            "provenance data hash MODEL (CLI)": [],
            "provenance verify MODEL (CLI)": [],
        }
        runs: list[Callable[[], object]] = [
            lambda: manifest_of(model),
            verify_api,
            lambda: cli("data", "hash", str(model), "--json", config=config),
            lambda: cli("verify", str(model), config=config),
        ]
        for _ in range(args.repeat):
            for times, fn in zip(rows.values(), runs, strict=True):
                timed(fn, times)
    size_gb = (args.size_mib * MiB + 15) / 1e9
    print(
        f"a registered model of {args.size_mib} MiB (2 files), warm page cache, "
        f"{args.repeat} rounds in turn; seconds: best (median)"
    )
    width = max(map(len, rows))
    for label, times in rows.items():
        print(
            f"  {label:<{width}}  {min(times):6.2f} s ({statistics.median(times):.2f})  "
            f"{size_gb / min(times):.2f} GB/s"
        )
    names = list(rows)
    for kind, (hashing, verifying) in (("in process", names[:2]), ("CLI", names[2:])):
        best = min(rows[verifying]) / min(rows[hashing])
        # each round's pair ran back to back, under the same load
        paired = sorted(v / h for v, h in zip(rows[verifying], rows[hashing], strict=True))
        print(
            f"goal: verify <= 1.2x hashing ({kind}): {best:.2f}x best against best; "
            f"round by round {', '.join(f'{r:.2f}' for r in paired)}x (median "
            f"{statistics.median(paired):.2f}x)  "
            f"{'met' if statistics.median(paired) <= 1.2 else 'NOT met'}"
        )
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
