"""``provenance demo``: the paper's story on the local stack and its five attacks detected."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.padding import Padding
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from provenance.cli._common import err, out, session
from provenance.errors import ConfigError

if TYPE_CHECKING:  # the demo imports scikit-learn and pandas: only when it runs
    from provenance.demo.report import Advance

app = typer.Typer()


class RichNarrator:
    """Stages as rules with a dim explanation, steps as ticks, long steps with a spinner."""

    def __init__(self, console: Console) -> None:
        self.console = console

    @contextlib.contextmanager
    def stage(self, title: str, explanation: str) -> Iterator[None]:
        self.console.print()
        self.console.rule(f"[bold]{title}", align="left")
        self.console.print(Padding(f"[dim]{explanation}[/]", (0, 0, 0, 2)))
        yield

    @contextlib.contextmanager
    def working(self, what: str, total: int | None = None) -> Iterator[Advance]:
        columns = [SpinnerColumn(), TextColumn("{task.description}")]
        if total is not None:
            columns.append(BarColumn())
        columns += [DownloadColumn(), TransferSpeedColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task(what, total=total)
            yield lambda n: progress.advance(task, n)
        self.console.print(f"  [cyan]\u2022[/] {what}: done")

    def done(self, text: str) -> None:
        self.console.print(f"  [green]\u2714[/] {text}", soft_wrap=False, highlight=False)

    def check(self, status: str, text: str, indent: int = 0) -> None:
        from provenance.demo.report import MARKS

        colour = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}[status]
        line = Text("  " + "  " * indent)
        line.append(MARKS[status], style=colour)
        line.append(f" {text}", style="dim" if status == "skip" else "")
        self.console.print(line, highlight=False)

    def caught(self, text: str) -> None:
        self.console.print(f"  [bold green]\u2714 caught[/] {text}", highlight=False)

    def missed(self, text: str) -> None:
        self.console.print(f"  [bold red]\u2718 NOT DETECTED[/] {text}", highlight=False)


def _run_folder(base: Path) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = base / stamp
    n = 1
    while folder.exists():
        n += 1
        folder = base / f"{stamp}-{n}"
    return folder


@app.command()
def demo(
    work_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the runs; each run gets a new <utc time> folder in it "
            "(default <state>/demo)."
        ),
    ] = None,
    skip_images: Annotated[
        bool, typer.Option("--skip-images", help="Do not build, push or run Docker images.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="A JSON summary on stdout (the story goes to stderr).")
    ] = False,
    tree_svg: Annotated[
        Path | None,
        typer.Option(
            "--tree-svg",
            metavar="PATH",
            help="Also copy the family tree picture (SVG, after the attacks) to PATH.",
        ),
    ] = None,
) -> None:
    """Run the story on the local stack: train, certify, register, package, serve and verify
    two models, then the paper's five attacks, each caught by a named check. Exit 0 only when
    all five are detected."""
    from provenance.demo import Setup, attack_table, run_demo
    from provenance.images import default_rootfs

    clients = session()
    report = clients.stack.status()
    parts = ("chain", "ipfs", "contracts") + (() if skip_images else ("docker",))
    if down := report.problems(parts):
        raise ConfigError(
            f"the stack is not ready ({'; '.join(down)}); start it with `provenance up`"
        )
    setup = Setup.from_session(
        clients,
        _run_folder(work_dir or clients.config.state_dir / "demo"),
        images=not skip_images,
        base_rootfs=default_rootfs(Path(sys.prefix)),
    )
    console = err if as_json else out
    with clients:
        summary = run_demo(setup, RichNarrator(console))
    console.print()
    console.print(attack_table(summary))
    for key, what in (
        ("family_tree_html", "family tree"),
        ("family_tree_after_attacks_html", "family tree after the attacks"),
    ):
        if key in summary.files:
            console.print(f"{what}: {summary.files[key]}", highlight=False)
    picture = summary.files.get("family_tree_after_attacks_svg")
    if tree_svg is not None and picture is not None:
        tree_svg.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(picture, tree_svg)
        console.print(f"family tree picture copied to {tree_svg}", highlight=False)
    console.print(
        f"work folder: {summary.work_dir}; {summary.seconds:.0f} s; "
        f"{summary.detected}/{len(summary.attacks)} attacks detected",
        highlight=False,
    )
    if as_json:
        sys.stdout.write(json.dumps(summary.to_json(), indent=2) + "\n")
    if not summary.ok:
        raise typer.Exit(1)
