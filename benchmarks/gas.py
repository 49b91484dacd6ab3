#!/usr/bin/env python3
"""Gas per operation of the provenance contracts, beside the Ethereum Attestation Service.

    .venv/bin/python benchmarks/gas.py [--batch 50]

Runs a throwaway anvil (the pinned 1.7.1, hardfork prague), deploys ModelRegistry twice (open
registration, and allowlisted with the sender holding REGISTRANT_ROLE) and, as the reference,
EAS 1.9.0 from its npm package's own build (SchemaRegistry + EAS, fetched with `npm pack`,
integrity checked). The same fields go into both: certificate digest, model digest, data
commitment, and a parent link with its relation (EAS: a schema with those fields, the parent
as refUID). Every digest is random, so calldata costs what real digests cost.

Budgets (issues 3 and 13): register with one parent <= 58,000 (55,000 before the id bound its
registrant); batched <= 32,000 per certificate at batch 50; revoke <= 35,000. Issue 16: an image
bound to a model (three new storage words: image id, record digest, time) <= 95,000, a rebinding
<= 40,000; EAS's row is an attestation of (image id, record digest) referencing the model's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from eth_abi.abi import encode
from rich.console import Console
from rich.table import Table
from web3 import Web3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

from provenance.chain.artifacts import load_artifact
from provenance.chain.client import connect
from provenance.chain.keys import dev_account
from provenance.chain.registry import Registry
from provenance.chain.tx import Transactor
from provenance.registration import Parent, Registration
from provenance.stack import Tools, ephemeral_anvil

ROOT = Path(__file__).resolve().parent.parent
EAS_PACKAGE = "@ethereum-attestation-service/eas-contracts@1.9.0"
EAS_INTEGRITY = "sha512-L60y1fgKlY3a45xxnPlgRbiGQY8RF/lF+AzF1iVoR7/aEzitS0Nuyyjq8+IXs1sSSU0dl2+yGSmELxVeB6FelA=="
EAS_DIR = ROOT / ".tools" / "reference" / "eas-contracts-1.9.0"
SCHEMA = "bytes32 certificateDigest,bytes32 modelDigest,bytes32 dataCommitment,uint8 relation"
IMAGE_SCHEMA = "bytes32 imageId,bytes32 recordDigest"
BUDGETS = {
    "register, 1 parent": 58_000,
    "register, batch (per certificate)": 32_000,
    "revoke": 35_000,
    "bind image (first)": 95_000,
    "bind image (rebind)": 40_000,
}


def rand() -> bytes:
    return os.urandom(32)


def registration(*parents: Parent) -> Registration:
    return Registration(rand(), rand(), rand(), parents)


def eas_artifacts() -> dict[str, dict[str, Any]]:
    """SchemaRegistry and EAS as EAS's own release built them (npm package artifacts)."""
    files = {"SchemaRegistry": "SchemaRegistry.sol/SchemaRegistry.json", "EAS": "EAS.sol/EAS.json"}
    if not all((EAS_DIR / name).with_suffix(".json").exists() for name in files):
        EAS_DIR.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(
                ["npm", "pack", EAS_PACKAGE, "--json", "--pack-destination", tmp],
                capture_output=True, text=True, check=True, cwd=tmp,
            )  # fmt: skip
            info = json.loads(out.stdout)[0]
            if info["integrity"] != EAS_INTEGRITY:
                raise SystemExit(f"gas: {EAS_PACKAGE} integrity {info['integrity']} != pinned")
            with tarfile.open(Path(tmp) / info["filename"]) as tar:
                for name, member in files.items():
                    data = tar.extractfile(f"package/artifacts/contracts/{member}")
                    assert data is not None
                    (EAS_DIR / f"{name}.json").write_bytes(data.read())
    return {name: json.loads((EAS_DIR / f"{name}.json").read_text()) for name in files}


def deploy(w3: Web3, tx: Transactor, artifact: dict[str, Any], *args: Any) -> Any:
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    built = factory.constructor(*args).build_transaction({"from": tx.address})
    receipt = tx.send(dict(built), what=f"deploy {artifact.get('contractName', '')}")
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])


def call(tx: Transactor, fn: Any) -> int:
    built = fn.build_transaction({"from": tx.address, "gas": 0})
    built.pop("gas")
    return int(tx.send(dict(built))["gasUsed"])


def measure_registry(w3: Web3, tx: Transactor, address: str, batch: int) -> dict[str, int]:
    registry = Registry(w3, address, tx)
    c = registry.contract
    out: dict[str, int] = {}
    me = tx.address
    root = registration()
    out["register, root"] = call(tx, c.functions.register(root.as_abi()))
    child = registration(Parent(root.model_id_for(me), "fine-tune"))
    out["register, 1 parent"] = call(tx, c.functions.register(child.as_abi()))
    others = [registration() for _ in range(2)]
    for o in others:
        call(tx, c.functions.register(o.as_abi()))
    merge = registration(*(Parent(p.model_id_for(me), "merge") for p in [root, *others]))
    out["register, 3 parents (merge)"] = call(tx, c.functions.register(merge.as_abi()))
    regs = [registration(Parent(root.model_id_for(me), "transfer")) for _ in range(batch)]
    out["register, batch (per certificate)"] = (
        call(tx, c.functions.registerBatch([r.as_abi() for r in regs])) // batch
    )
    signer = dev_account(w3, 2)
    delegated = registration(Parent(root.model_id_for(me), "distillation"))
    deadline = int(time.time()) + 3600
    signature = registry.sign_registration(signer, delegated, deadline=deadline)
    fn = c.functions.registerFor(delegated.as_abi(), signer.address, deadline, signature)
    out["register, delegated (EIP-712), 1 parent"] = call(tx, fn)
    out["revoke"] = call(tx, c.functions.revoke(child.model_id_for(me), rand()))
    bound = root.model_id_for(me)
    out["bind image (first)"] = call(tx, c.functions.bindImage(bound, rand(), rand()))
    out["bind image (rebind)"] = call(tx, c.functions.bindImage(bound, rand(), rand()))
    return out


def measure_eas(w3: Web3, tx: Transactor, batch: int) -> dict[str, int]:
    art = eas_artifacts()
    schemas = deploy(w3, tx, art["SchemaRegistry"])
    eas = deploy(w3, tx, art["EAS"], schemas.address)
    zero_address = "0x" + "00" * 20
    call(tx, schemas.functions.register(SCHEMA, zero_address, True))
    # EAS: uid = keccak256(abi.encodePacked(schema, resolver, revocable))
    schema_uid = Web3.solidity_keccak(["string", "address", "bool"], [SCHEMA, zero_address, True])

    def request(ref: bytes, relation: int) -> tuple[Any, ...]:
        data = encode(
            ["bytes32", "bytes32", "bytes32", "uint8"], [rand(), rand(), rand(), relation]
        )
        return (tx.address, 0, True, ref, data, 0)

    out: dict[str, int] = {}
    receipt_gas = call(tx, eas.functions.attest((schema_uid, request(b"\x00" * 32, 0))))
    out["register, root"] = receipt_gas
    root_uid = eas.events.Attested().process_receipt(_last_receipt(w3))[0]["args"]["uid"]
    out["register, 1 parent"] = call(tx, eas.functions.attest((schema_uid, request(root_uid, 0))))
    child_uid = eas.events.Attested().process_receipt(_last_receipt(w3))[0]["args"]["uid"]
    multi = [(schema_uid, [request(root_uid, 1) for _ in range(batch)])]
    out["register, batch (per certificate)"] = call(tx, eas.functions.multiAttest(multi)) // batch
    out["revoke"] = call(tx, eas.functions.revoke((schema_uid, (child_uid, 0))))
    # an image bound to a model: an attestation of (image id, record digest) referencing it
    call(tx, schemas.functions.register(IMAGE_SCHEMA, zero_address, True))
    image_uid = Web3.solidity_keccak(
        ["string", "address", "bool"], [IMAGE_SCHEMA, zero_address, True]
    )
    bind = (tx.address, 0, True, root_uid, encode(["bytes32", "bytes32"], [rand(), rand()]), 0)
    out["bind image (first)"] = call(tx, eas.functions.attest((image_uid, bind)))
    return out


def measure_attestor(
    w3: Web3, tx: Transactor, registry_address: str, attestor_address: str
) -> dict[str, int]:
    """Single attestation, and batches of 1 / 100 / 1,000 / 10,000 outputs (gas per output)."""
    from provenance.attest import Batch, OutputRecord, OutputTree
    from provenance.chain.attestor import AttestorContract

    registry = Registry(w3, registry_address, tx)
    reg = registration()
    model_id = registry.register(reg).id
    attestor = AttestorContract(w3, attestor_address, tx)
    attestor.authorize_node(model_id, dev_account(w3, 3).address, reg, rand())
    node = dev_account(w3, 3)
    out: dict[str, int] = {}
    seq = 0
    ts = int(time.time())

    def record(i: int) -> OutputRecord:
        return OutputRecord(model_id, reg.model_digest, rand(), rand(), i, ts)

    first = record(seq)
    call(
        tx,
        attestor.contract.functions.attest(
            first.as_abi(), attestor.sign(node, Batch.of_one(first))
        ),
    )
    seq += 1  # the node's first submission also creates its sequence slot; measure a later one
    single = record(seq)
    out["attest one output"] = call(
        tx,
        attestor.contract.functions.attest(
            single.as_abi(), attestor.sign(node, Batch.of_one(single))
        ),
    )
    seq += 1
    for size in (1, 100, 1_000, 10_000):
        tree = OutputTree([record(seq + i).leaf for i in range(size)])
        batch = Batch(model_id, reg.model_digest, tree.root, seq, size, ts)
        gas = call(
            tx, attestor.contract.functions.attestBatch(batch.as_abi(), attestor.sign(node, batch))
        )
        out[f"attest a batch of {size:,}: per output"] = gas // size
        seq += size
    return out


def _last_receipt(w3: Web3) -> Any:
    block = w3.eth.get_block("latest", full_transactions=False)
    return w3.eth.get_transaction_receipt(block["transactions"][-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="gas per operation, provenance vs EAS")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if shutil.which("npm") is None:
        raise SystemExit("gas: npm is needed to fetch the EAS reference")
    tools = Tools(search_path=(Path(sys.executable).parent, ROOT / ".tools" / "bin"))
    with ephemeral_anvil(tools) as url:
        w3 = connect(url)
        admin = Transactor(w3, dev_account(w3, 0))
        packaged = load_artifact("ModelRegistry")
        artifact = {
            "abi": packaged.abi,
            "bytecode": packaged.bytecode,
            "contractName": "ModelRegistry",
        }
        open_registry = deploy(w3, admin, artifact, admin.address, True)
        allow_registry = deploy(w3, admin, artifact, admin.address, False)
        for who in (admin.address, dev_account(w3, 2).address):  # sender, delegated signer
            Registry(w3, allow_registry.address, admin).grant_role("registrant", who)
        results = {
            "provenance (open)": measure_registry(w3, admin, open_registry.address, args.batch),
            "provenance (allowlist)": measure_registry(
                w3, admin, allow_registry.address, args.batch
            ),
            "EAS 1.9.0 (reference)": measure_eas(w3, admin, args.batch),
        }
        from provenance.chain.artifacts import load_artifact as _load

        attestor_artifact = {
            "abi": _load("OutputAttestor").abi,
            "bytecode": _load("OutputAttestor").bytecode,
            "contractName": "OutputAttestor",
        }
        attestor = deploy(w3, admin, attestor_artifact, open_registry.address)
        attest_gas = measure_attestor(w3, admin, open_registry.address, attestor.address)
        client = w3.client_version
    if args.json:
        print(
            json.dumps(
                {"machine": describe(), "node": client, "batch": args.batch, "gas": results},
                indent=2,
            )
        )
        return 0
    console = Console(width=150)
    table = Table(title=f"gas per operation (batch = {args.batch}), {client}", title_justify="left")
    table.add_column("operation")
    for name in results:
        table.add_column(name, justify="right")
    table.add_column("budget", justify="right")
    operations = list(results["provenance (open)"])
    for op in operations:
        budget = BUDGETS.get(op)
        cells = []
        for name, figures in results.items():
            value = figures.get(op)
            if value is None:
                cells.append("-")
                continue
            over = budget is not None and name.startswith("provenance") and value > budget
            cells.append(f"[red]{value:,} (over)[/]" if over else f"{value:,}")
        table.add_row(op, *cells, f"{budget:,}" if budget else "")
    console.print(table)
    second = Table(
        title="OutputAttestor (budgets: one output <= 60,000; batch of 1,000 <= 50 per output)",
        title_justify="left",
    )
    second.add_column("operation")
    second.add_column("gas", justify="right")
    for op, value in attest_gas.items():
        second.add_row(op, f"{value:,}")
    console.print(second)
    console.print(f"machine: {describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
