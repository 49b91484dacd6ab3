"""Commands for the local stack and deployment: up, down, status, deploy."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from provenance.cli._common import out, session
from provenance.cli._common import say as _say

app = typer.Typer()


@app.command()
def up() -> None:
    """Start the local stack (anvil, kubo, Docker engine) and deploy the contracts."""
    stack = session().stack
    stack.up(_say)
    out.print(f"stack is up; state in {stack.state_dir}")


@app.command()
def down() -> None:
    """Stop what `provenance up` started, nothing else."""
    stack = session().stack
    stopped = stack.down(_say)
    if not stopped:
        out.print("nothing to stop")


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Probe the chain, IPFS, the Docker engine and the contracts."""
    report = session().stack.status()
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
    else:
        _status_table(report)
    if not all(report[k]["ok"] for k in ("chain", "ipfs", "docker", "contracts")):
        raise typer.Exit(1)


def _status_table(report: dict[str, Any]) -> None:
    table = Table(title="provenance stack", title_justify="left")
    table.add_column("part")
    table.add_column("ok")
    table.add_column("endpoint")
    table.add_column("details")
    rows: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
        "chain": (
            "rpc_url",
            lambda r: f"chain {r.get('chain_id')}, block {r.get('block')}, {r.get('client', '')}",
        ),
        "ipfs": (
            "api",
            lambda r: f"kubo {r.get('version')}, peer {str(r.get('peer_id', ''))[:16]}",
        ),
        "docker": ("host", lambda r: f"engine {r.get('version')}"),
        "contracts": (
            "deployment_file",
            lambda r: ", ".join(f"{k} {v['address']}" for k, v in r.items() if isinstance(v, dict)),
        ),
    }
    for part, (endpoint_key, describe) in rows.items():
        r = report[part]
        ok = "[green]yes[/]" if r["ok"] else "[red]no[/]"
        details = describe(r) if r["ok"] else f"[red]{r.get('error', '')}[/]"
        managed = " (managed)" if r.get("managed") else ""
        table.add_row(part, ok, f"{r.get(endpoint_key)}{managed}", details)
    out.print(table)
    out.print(
        f"config: {report['config'] or 'none (defaults and environment)'}; state: {report['state_dir']}"
    )


@app.command()
def deploy(
    rpc_url: Annotated[
        str | None, typer.Option(help="JSON-RPC URL (else PROVENANCE_RPC_URL / config).")
    ] = None,
    keystore: Annotated[
        Path | None,
        typer.Option(help="Encrypted keyfile JSON of the deployer (else PROVENANCE_KEYSTORE)."),
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="File holding the keystore password (else PROVENANCE_KEYSTORE_PASSWORD, else a prompt)."
        ),
    ] = None,
    deployment: Annotated[
        Path | None,
        typer.Option(help="Deployment file to write (default: <state dir>/deployment.json)."),
    ] = None,
    allowlist: Annotated[
        bool,
        typer.Option(
            "--allowlist/--open", help="Only REGISTRANT_ROLE holders may register, or anyone."
        ),
    ] = False,
    force: Annotated[bool, typer.Option(help="Deploy again even where code exists.")] = False,
) -> None:
    """Deploy the contracts to a chain (a testnet, a private chain or the local anvil)."""
    from provenance.chain.deploy import ensure_deployed

    clients = session(keystore=keystore, password_file=password_file, rpc_url=rpc_url)
    target = deployment or clients.config.deployment_file
    result, now = ensure_deployed(
        clients.w3, clients.signer, target, open_registration=not allowlist, force=force
    )
    for name, record in result.contracts.items():
        verb = "deployed" if name in now else "already deployed"
        _say(
            f"{name} {verb} at {record.address} on chain {result.chain_id} (tx {record.transaction})"
        )
    out.print(f"deployment file: {target}")
