#!/usr/bin/env python3
"""Compile contracts/ into the packaged artifacts (src/provenance/chain/artifacts/).

    python scripts/compile.py            # write the artifacts
    python scripts/compile.py --check    # recompile and compare with the committed artifacts

The compiler is pinned (SOLC_VERSION) and so are the settings (SETTINGS): EVM version, optimizer,
metadata hash. A native ``solc`` of exactly that version is used when one is on PATH; otherwise
solc-js (npm ``solc``, installed by scripts/setup.sh) through scripts/solcjs-shim.js, a
solc-compatible command line for py-solc-x's ``compile_standard``. Either gives the same bytes.
OpenZeppelin Contracts come from the pinned npm package; imports keep their
``@openzeppelin/contracts/...`` source unit names, so no local path enters the metadata.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import solcx  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "contracts"
NODE_MODULES = ROOT / ".tools" / "npm" / "node_modules"
SHIM = ROOT / "scripts" / "solcjs-shim.js"
DEFAULT_OUT = ROOT / "src" / "provenance" / "chain" / "artifacts"

SOLC_VERSION = "0.8.37"
SETTINGS: dict[str, Any] = {
    "evmVersion": "cancun",
    "optimizer": {"enabled": True, "runs": 20_000},
    "viaIR": True,
    "metadata": {"bytecodeHash": "ipfs", "appendCBOR": True},
    "outputSelection": {
        "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "metadata"]}
    },
}


class CompileError(Exception):
    """The contracts did not compile, or the artifacts differ from a fresh compile."""


def find_compiler() -> Path:
    """Native solc of the pinned version when present, else the solc-js shim."""
    native = shutil.which("solc")
    if native:
        try:
            version = solcx.wrapper.get_solc_version(native)
        except (OSError, subprocess.SubprocessError, solcx.exceptions.SolcError):
            version = None
        if str(version) == SOLC_VERSION:
            return Path(native)
    if not (NODE_MODULES / "solc" / "package.json").exists():
        raise CompileError(
            f"no native solc {SOLC_VERSION} on PATH and solc-js is not installed in "
            f"{NODE_MODULES}; run scripts/setup.sh"
        )
    if shutil.which("node") is None:
        raise CompileError("node is not on PATH; solc-js needs Node.js")
    version = solcx.wrapper.get_solc_version(SHIM)
    if str(version) != SOLC_VERSION:
        raise CompileError(f"solc-js is {version}, the pinned version is {SOLC_VERSION}")
    return SHIM


def standard_input(contracts: Path = CONTRACTS) -> dict[str, Any]:
    # hidden folders are not ours: ape-solidity caches dependencies in contracts/.cache/
    sources = {
        path.relative_to(ROOT).as_posix(): {"content": path.read_text(encoding="utf-8")}
        for path in sorted(contracts.rglob("*.sol"))
        if not any(part.startswith(".") for part in path.relative_to(contracts).parts)
    }
    if not sources:
        raise CompileError(f"no .sol files under {contracts}")
    return {"language": "Solidity", "sources": sources, "settings": SETTINGS}


def compile_contracts(
    compiler: Path | None = None, contracts: Path = CONTRACTS
) -> dict[str, dict[str, Any]]:
    """Compile every contract under ``contracts``; return artifacts keyed by contract name."""
    compiler = compiler or find_compiler()
    prefix = contracts.relative_to(ROOT).as_posix() + "/"
    try:
        output = solcx.compile_standard(
            standard_input(contracts),
            base_path=NODE_MODULES,
            allow_paths=[NODE_MODULES],
            solc_binary=compiler,
        )
    except solcx.exceptions.SolcError as exc:
        raise CompileError(f"solc failed: {exc}") from exc
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(e.get("formattedMessage", e["message"]) for e in errors))
    version = json.loads(next(iter(next(iter(output["contracts"].values())).values()))["metadata"])[
        "compiler"
    ]["version"]
    artifacts: dict[str, dict[str, Any]] = {}
    for source, contracts in sorted(output["contracts"].items()):
        if not source.startswith(prefix):
            continue
        for name, data in sorted(contracts.items()):
            bytecode = data["evm"]["bytecode"]["object"]
            if (
                not bytecode or not data["abi"]
            ):  # interfaces, abstract contracts, internal libraries
                continue
            artifacts[name] = {
                "contractName": name,
                "sourceName": source,
                "abi": data["abi"],
                "bytecode": "0x" + bytecode,
                "deployedBytecode": "0x" + data["evm"]["deployedBytecode"]["object"],
                "metadata": data["metadata"],
                "compiler": {"version": version, "settings": _recorded_settings()},
            }
    return artifacts


def _recorded_settings() -> dict[str, Any]:
    return {k: v for k, v in SETTINGS.items() if k != "outputSelection"}


def render(artifact: dict[str, Any]) -> str:
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def write(artifacts: dict[str, dict[str, Any]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.json"):
        if stale.stem not in artifacts:
            stale.unlink()
    for name, artifact in artifacts.items():
        (out / f"{name}.json").write_text(render(artifact), encoding="utf-8")


def check(artifacts: dict[str, dict[str, Any]], out: Path) -> list[str]:
    """Return one line per difference between a fresh compile and the files in ``out``."""
    problems = []
    committed = {p.stem for p in out.glob("*.json")}
    for name in sorted(committed - artifacts.keys()):
        problems.append(f"{name}.json is committed but no contract of that name compiles")
    for name, artifact in sorted(artifacts.items()):
        path = out / f"{name}.json"
        if not path.exists():
            problems.append(f"{name}.json is missing; run scripts/compile.py")
            continue
        stored = json.loads(path.read_text(encoding="utf-8"))
        for key in ("bytecode", "deployedBytecode", "abi", "metadata"):
            if stored.get(key) != artifact[key]:
                problems.append(f"{name}.json: {key} differs from a fresh compile")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="artifacts folder")
    args = parser.parse_args(argv)
    try:
        compiler = find_compiler()
        artifacts = compile_contracts(compiler)
    except CompileError as exc:
        print(f"compile: {exc}", file=sys.stderr)
        return 1
    if args.check:
        problems = check(artifacts, args.out)
        for line in problems:
            print(f"compile: {line}", file=sys.stderr)
        if problems:
            return 1
        print(
            f"artifacts identical to a fresh compile ({len(artifacts)} contracts, solc {SOLC_VERSION})"
        )
        return 0
    write(artifacts, args.out)
    for name, artifact in artifacts.items():
        size = (len(artifact["deployedBytecode"]) - 2) // 2
        print(f"{name}: {size} bytes runtime -> {args.out / (name + '.json')}")
    print(f"compiler: {compiler.name} {SOLC_VERSION}, evm {SETTINGS['evmVersion']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
