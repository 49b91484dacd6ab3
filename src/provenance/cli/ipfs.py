"""Commands for content storage: ``provenance ipfs add / get / export / import``.

The backend is the session's (:attr:`provenance.session.Session.storage`: kubo when ``[ipfs]
api`` is set or the local stack runs kubo, else a read-only gateway when ``[ipfs] gateway`` is
set, else the local store). CIDs are the same either way; every retrieval is verified.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from provenance.cli._common import err, session
from provenance.cli._common import say as _say
from provenance.errors import StorageError

if TYPE_CHECKING:
    from provenance.storage.protocol import Progress as Advance


app = typer.Typer(
    help="Content-addressed storage in IPFS (kubo, or the local store when no kubo is set).",
    no_args_is_help=True,
)

LARGE = 16 << 20
"""Transfers from this size on show a progress bar (on a terminal)."""


@contextmanager
def _progress(what: str, total: int | None) -> Iterator[Advance | None]:
    """A transient progress bar on stderr for large transfers (``total`` None: unknown)."""
    if not err.is_terminal or (total is not None and total < LARGE):
        yield None
        return
    columns = [
        TextColumn(what),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@app.command()
def add(
    path: Annotated[Path, typer.Argument(help="A file or a directory (added recursively).")],
    only_hash: Annotated[
        bool, typer.Option("--only-hash", help="Only compute the CID; store nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Store a file or directory and print its CID (the one `ipfs add --cid-version=1` gives)."""
    from provenance.storage import cid_of_path

    if not path.exists():
        raise StorageError(f"{path} does not exist")
    size = _size(path)
    stored_in = None
    if only_hash:
        cid = cid_of_path(path)
    else:
        with session() as clients, _progress("adding", size) as progress:
            cid = clients.storage.put_path(path, progress=progress)
            stored_in = {"backend": clients.storage_kind, "location": clients.storage_location}
    if as_json:
        report = {"cid": cid, "path": str(path), "size": size, "stored_in": stored_in}
        sys.stdout.write(json.dumps(report, sort_keys=True) + "\n")
    else:
        sys.stdout.write(cid + "\n")


@app.command()
def get(
    cid: Annotated[str, typer.Argument(help="The CID of a file or directory.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Where to write it (must not exist).")
    ],
) -> None:
    """Fetch a file or directory, verifying every block against its CID."""
    with session() as clients, _progress("getting", None) as progress:
        clients.storage.get_path(cid, output, progress=progress)
    _say(f"wrote {output}")


@app.command("export")
def export_car(
    cid: Annotated[str, typer.Argument(help="The root CID of the DAG to export.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The CAR file to write.")],
) -> None:
    """Write a DAG as a CAR v1 file (what `ipfs dag import` reads), verifying every block."""
    with session() as clients, _progress("exporting", None) as progress:
        clients.storage.export_car(cid, output, progress=progress)
    _say(f"wrote {output}")


@app.command("import")
def import_car(
    car: Annotated[Path, typer.Argument(help="A CAR v1 or v2 file.")],
) -> None:
    """Store the blocks of a CAR file (each verified first) and pin its roots; prints them."""
    if not car.is_file():
        raise StorageError(f"{car} does not exist")
    with session() as clients, _progress("importing", car.stat().st_size) as progress:
        roots = clients.storage.import_car(car, progress=progress)
    sys.stdout.write("".join(root + "\n" for root in roots))
