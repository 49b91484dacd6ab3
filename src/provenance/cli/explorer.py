"""The explorer command: a local web page over the registry, IPFS and the attestor."""

from __future__ import annotations

from typing import Annotated

import typer

from provenance.cli._common import err, session

app = typer.Typer()


@app.command()
def explorer(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8600,
) -> None:
    """Serve the explorer: search models, read certificates, status, verification, the
    family tree and output attestations, at http://HOST:PORT/."""
    import uvicorn

    from provenance.server.explorer import create_explorer_app

    with session() as clients:  # the verification tab checks the config's trust roots
        app_ = create_explorer_app(
            clients.registry,
            clients.index,
            clients.storage,
            clients.attestor if clients.has_attestor else None,
            attestor_from_block=clients.attestor_from_block if clients.has_attestor else 0,
            policy=clients.policy,
        )
        err.print(f"explorer at http://{host}:{port}/ (Ctrl-C stops it)", highlight=False)
        uvicorn.run(app_, host=host, port=port, log_level="warning")
