"""The explorer command: a local web page over the registry, IPFS and the attestor."""

from __future__ import annotations

from typing import Annotated

import typer

from provenance.cli._common import config as _config
from provenance.cli._common import err
from provenance.cli._common import tools as _tools

app = typer.Typer()


@app.command()
def explorer(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8600,
) -> None:
    """Serve the explorer: search models, read certificates, status, verification, the
    family tree and output attestations, at http://HOST:PORT/."""
    import uvicorn

    from provenance.cli.registry import open_attestor, open_registry, synced_index
    from provenance.server.explorer import create_explorer_app
    from provenance.stack import Stack
    from provenance.storage import open_storage
    from provenance.verify.policy import policy_from_config

    config = _config()
    policy = policy_from_config(config)  # the verification tab checks the config's trust roots
    registry = open_registry(config)
    index = synced_index(config, registry)
    storage = open_storage(config, stack_runs_kubo=Stack(config, _tools()).is_running("ipfs"))
    attestor = open_attestor(config, registry)
    app_ = create_explorer_app(
        registry,
        index,
        storage,
        None if attestor is None else attestor[0],
        attestor_from_block=0 if attestor is None else attestor[1],
        policy=policy,
    )
    err.print(f"explorer at http://{host}:{port}/ (Ctrl-C stops it)", highlight=False)
    try:
        uvicorn.run(app_, host=host, port=port, log_level="warning")
    finally:
        storage.close()
        index.close()
