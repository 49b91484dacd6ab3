"""Commands for the local stack and deployment: up, down, status, deploy."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from provenance.cli._common import out, session
from provenance.cli._common import say as _say

if TYPE_CHECKING:
    from provenance.stack import StackStatus

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
    """Probe the chain, IPFS, the Docker engine and the contracts.

    Exit 1 when a needed part is not ok; Docker is needed only by a local stack or a set host.
    """
    report = session().stack.status()
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n")
    else:
        _status_table(report)
    if not report.ok:
        raise typer.Exit(1)


def _status_table(report: StackStatus) -> None:
    table = Table(title="provenance stack", title_justify="left")
    table.add_column("part")
    table.add_column("ok")
    table.add_column("endpoint")
    table.add_column("details")
    for part in report.parts:
        if part.ok:
            ok, details = "[green]yes[/]", part.detail
        elif part.required:
            ok, details = "[red]no[/]", f"[red]{part.error or ''}[/]"
        else:
            ok, details = "[yellow]no[/]", f"{part.error or ''} ({part.note or 'not required'})"
        managed = " (managed)" if part.managed else ""
        table.add_row(part.name, ok, f"{part.endpoint}{managed}", details)
    out.print(table)
    out.print(
        f"config: {report.config or 'none (defaults and environment)'}; state: {report.state_dir}"
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
        bool | None,
        typer.Option(
            "--allowlist/--open",
            help="Only REGISTRANT_ROLE holders may register, or anyone (the default).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Deploy again even where code exists.")] = False,
) -> None:
    """Deploy the contracts to a chain (a testnet, a private chain or the local anvil).

    With --allowlist only REGISTRANT_ROLE holders may register; the deployer is granted it
    (and is the admin): grant others with `provenance role grant registrant ADDRESS`."""
    from provenance.chain.deploy import ensure_deployed
    from provenance.chain.registry import Registry
    from provenance.errors import ConfigError

    with session(keystore=keystore, password_file=password_file, rpc_url=rpc_url) as clients:
        config = clients.config
        if (
            "chain_id" in config.chain.model_fields_set
            and config.chain.chain_id != clients.chain_id
        ):
            raise ConfigError(
                f"the configured chain id is {config.chain.chain_id} but the RPC "
                f"{config.chain.rpc_url} serves chain {clients.chain_id}: nothing deployed"
            )
        account = clients.signer
        target = deployment or config.deployment_file
        result, now = ensure_deployed(
            clients.w3,
            account,
            target,
            open_registration=not allowlist,  # None: open
            force=force,
        )
        for name, record in result.contracts.items():
            verb = "deployed" if name in now else "already deployed"
            _say(
                f"{name} {verb} at {record.address} on chain {result.chain_id} "
                f"(tx {record.transaction})"
            )
        registry = result.contracts.get("ModelRegistry")
        if registry is not None:
            is_open = Registry(clients.w3, registry.address).is_open()
            if allowlist is not None and is_open == allowlist:
                mode = "open to anyone" if is_open else "on an allowlist"
                again = "--allowlist" if allowlist else "--open"
                out.print(
                    f"note: the ModelRegistry already deployed is {mode}; deploy {again} "
                    "--force for a new one",
                    highlight=False,
                    soft_wrap=True,
                )
            elif allowlist and "ModelRegistry" in now:
                out.print(
                    f"  {account.address} is its admin and may register; let others with "
                    "`provenance role grant registrant ADDRESS`",
                    highlight=False,
                    soft_wrap=True,
                )
    out.print(f"deployment file: {target}")
