"""``provenance verify TARGET``: one report of every check of a model id, model files, a
certificate file, an output receipt or a Docker image; exit 0 only when every required check
passes."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from provenance.cli._common import out, session
from provenance.errors import ConfigError, ServiceError

if TYPE_CHECKING:
    from provenance.session import Session
    from provenance.verify.report import Report

app = typer.Typer()

MARKS: dict[str, tuple[str, str]] = {  # by CheckStatus value (a StrEnum)
    "pass": ("\u2714", "green"),
    "fail": ("\u2718", "red"),
    "warn": ("!", "yellow"),
    "skip": ("-", "dim"),
}


def parse_sources(specs: list[str]) -> dict[str, Path]:
    """``NAME=PATH`` pairs (a dataset's name in the certificate, and where its source is)."""
    sources: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ConfigError(
                f"--data {spec!r}: use NAME=PATH (the dataset's name in the certificate)"
            )
        if name in sources:
            raise ConfigError(f"--data {name}: given twice")
        sources[name] = Path(path)
    return sources


def _needs_engine(target: str) -> bool:
    """Docker images: tags, and ids (``sha256:<hex>``, which may also be a certificate digest)."""
    return not Path(target).exists() and not target.strip().lower().startswith("0x")


def _engine_answers(clients: Session, target: str) -> bool:
    """Whether the verifier gets the Docker engine: when the target may be an image. For
    ``sha256:<hex>`` (an image id or a certificate digest) an engine that does not answer is no
    error: it is looked up on chain."""
    from provenance.verify.verifier import as_id

    # a model id too: the engine reads the model files inside the image bound to it, when one
    # answers (without one, that check says it was skipped)
    if not _needs_engine(target) and (as_id(target) is None or Path(target).exists()):
        return False
    try:
        clients.engine  # noqa: B018 - connects, or raises ServiceError
    except ServiceError:
        if as_id(target) is None:
            raise
        return False
    return True


_ID_PREFIX = re.compile(r"0x[0-9a-fA-F]{8,63}")


def resolved_target(clients: Session, target: str) -> str:
    """A shortened model id (``0x`` + 8 to 63 hex digits, not a file) as the full id it is the
    unique prefix of; any other target as given."""
    if _ID_PREFIX.fullmatch(target.strip()) and not Path(target).exists():
        return "0x" + clients.resolve_id(target.strip()).hex()
    return target


def render(report: Report) -> None:
    """One line per check: mark, subject, check name, why."""
    from provenance.verify.report import CheckName, CheckStatus

    header = Text.assemble(("verify ", "bold"), (report.target, "bold"), f" ({report.kind})")
    if report.model_id is not None:
        header.append(f"  model 0x{report.model_id.hex()}")
    out.print(header, soft_wrap=True, highlight=False)
    for check in report.checks:
        mark, colour = MARKS[check.status]
        line = Text.assemble(
            (f"{mark} ", colour),
            (check.subject, "bold"),
            "  ",
            (check.name, colour),
            ": ",
            check.detail,
        )
        if check.status is CheckStatus.FAIL and not check.required:
            line.append(" (not required)", "dim")
        out.print(line, soft_wrap=True, highlight=False)
    failures = report.failures()
    warnings = sum(1 for c in report.checks if c.status is CheckStatus.WARN)
    anchored = report.check(CheckName.RECEIPT_ANCHORED)
    if not failures and anchored is not None and anchored.status is CheckStatus.SKIP:
        # offline: anyone's key signs a self-consistent receipt; only the chain tells
        out.print(
            Text(
                "NOT verified on chain (offline): the receipt is self-consistent and names the "
                "trusted chain and OutputAttestor, but neither its anchoring, nor the node's "
                "authorisation, nor the model was checked",
                "yellow",
            ),
            soft_wrap=True,
            highlight=False,
        )
    elif not failures:
        note = f", {warnings} warning(s)" if warnings else ""
        out.print(
            Text(f"verified: every required check passed{note}", "green"),
            soft_wrap=True,
            highlight=False,
        )
    else:
        first = failures[0]
        out.print(
            Text(
                f"NOT verified: {len(failures)} required check(s) failed; first: {first.subject} "
                f"{first.name}: {first.detail}",
                "red",
            ),
            soft_wrap=True,
            highlight=False,
        )


@app.command("verify")
def verify(
    target: Annotated[
        str,
        typer.Argument(
            help="A model id (0x + 64 hex, or a unique prefix of 8+), certificate or receipt "
            "JSON file, model file or folder, or Docker image (tag or id)."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    trust: Annotated[
        list[str] | None,
        typer.Option(
            "--trust",
            metavar="ADDRESS",
            help="A trusted registrant (repeatable; with [trust] registrants of the config); "
            "others fail the trust check.",
        ),
    ] = None,
    attestor: Annotated[
        str | None,
        typer.Option(
            "--attestor",
            metavar="ADDRESS",
            help="The trusted OutputAttestor (default: [chain.contracts] or the deployment file).",
        ),
    ] = None,
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            metavar="NAME=PATH",
            help="The source of a dataset of the certificate, to recompute it (repeatable).",
        ),
    ] = None,
    fetch_timeout: Annotated[
        float,
        typer.Option(
            "--fetch-timeout",
            min=0.1,
            help="Seconds to wait for IPFS content the node does not hold.",
        ),
    ] = 10.0,
    fetch_data: Annotated[
        bool,
        typer.Option(
            "--fetch-data/--no-fetch-data",
            help="Fetch published training data from IPFS to recompute it.",
        ),
    ] = True,
    oms_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--oms-key",
            metavar="PUB",
            help="A trusted OMS public key (PEM, repeatable; with [trust] oms_keys) for the "
            "OMS bundle beside model files (MODEL.sig).",
        ),
    ] = None,
) -> None:
    """Verify a model end to end: registration, certificate in IPFS, creator's signature,
    registrant, training data, model files or image, and every ancestor (revoked = tainted).

    Exit 0 when every required check passes, else 1 (after the report)."""
    with session(
        trust=trust,
        attestor=attestor,
        data_sources=parse_sources(data or []),
        fetch_timeout=fetch_timeout,
        fetch_data=fetch_data,
        oms_keys=oms_key or [],
    ) as clients:
        clients.policy  # noqa: B018 - the trust roots are checked before anything is contacted
        target = resolved_target(clients, target)
        verifier = clients.verifier(engine=_engine_answers(clients, target))
        report = verifier.target(target)
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        render(report)
    if not report.ok:
        raise typer.Exit(1)


__all__ = ["app", "parse_sources", "render"]
