"""What every command module shares: consoles, the configuration, and the one way to get
clients: :func:`session`."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.segment import Segment

from provenance.errors import ConfigError
from provenance.untrusted import printable

if TYPE_CHECKING:  # imported where used: `provenance --help` starts without web3 or pydantic
    from provenance.config import Config
    from provenance.session import Session


class _Console(Console):
    """A Rich console that never sends a control character it was not asked to style: what
    it prints may quote untrusted documents (names, messages, check details), so escape
    sequences, carriage returns and bidirectional overrides in the text of every segment are
    shown escaped (:func:`provenance.untrusted.printable`); Rich's own control segments (cursor
    moves of a progress bar) and the colour codes it renders for styles pass. Markup in
    untrusted text is escaped with :func:`shown` where it is interpolated."""

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        return super()._render_buffer(
            segment if segment.control else Segment(printable(segment.text), *segment[1:])
            for segment in buffer
        )


AsJson = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]
PasswordFile = Annotated[
    Path | None,
    typer.Option(help="File holding the keystore password (else PROVENANCE_KEYSTORE_PASSWORD)."),
]

IdOrCertificate = Annotated[
    str,
    typer.Argument(
        metavar="ID|CERT",
        help="A registered model id (or a unique prefix of 8+ hex digits), or a certificate "
        "file (signed or not).",
    ),
]
Parents = Annotated[
    list[str] | None,
    typer.Option("--parent", help="A parent model, ID:RELATION (repeatable)."),
]

# -- the options of the attesting services (serve, proxy) -----------------------------------
NodeKeystore = Annotated[
    Path | None, typer.Option(help="Encrypted keyfile of the node's signing key.")
]
NodePasswordFile = Annotated[
    Path | None, typer.Option(help="File holding the node keystore's password.")
]
SenderKeystore = Annotated[
    Path | None,
    typer.Option(help="Sender's keyfile: pays for anchoring; registrant or operator to authorise."),
]
SenderPasswordFile = Annotated[
    Path | None, typer.Option(help="File holding the sender keystore's password.")
]
Authorize = Annotated[
    bool,
    typer.Option(
        help="Authorise the node for the model when it is not (sender = registrant or operator)."
    ),
]
BatchSize = Annotated[int, typer.Option(help="Seal a batch at this many outputs.")]
MaxAge = Annotated[float, typer.Option(help="...or when its oldest output waited this long (s).")]
MaxRequestBytes = Annotated[int, typer.Option(help="Largest request body accepted.")]

out = _Console()
err = _Console(stderr=True)


class _State:
    config_path: Path | None = None
    announced: bool = False


state = _State()


def config() -> Config:
    """The configuration; a ``provenance.toml`` picked up from the working directory is named
    on stderr (once), since any folder can hold one."""
    from provenance.config import load_config

    cwd = Path.cwd()
    loaded = load_config(os.environ, cwd=cwd, explicit=state.config_path)
    if (
        not state.announced
        and state.config_path is None
        and not os.environ.get("PROVENANCE_CONFIG")
        and loaded.source == cwd / "provenance.toml"
    ):
        state.announced = True
        err.print(
            f"using config file {shown(loaded.source)} (from the working directory)",
            soft_wrap=True,
            highlight=False,
        )
    return loaded


def shown(text: object) -> str:
    """Untrusted text (names, messages, paths from documents) for printing with Rich: control
    characters escaped, markup brackets escaped."""
    return escape(printable(text))


def say(message: str) -> None:
    out.print(f"[green]\u2714[/] {message}", soft_wrap=True)


def password(password_file: Path | None) -> str:
    """The keystore password: a file, else PROVENANCE_KEYSTORE_PASSWORD, else a prompt."""
    if password_file is not None:
        try:
            return password_file.read_text(encoding="utf-8").rstrip("\n")
        except UnicodeDecodeError:
            raise ConfigError(f"password file {password_file} is not UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"cannot read password file {password_file}: {exc}") from exc
    env = os.environ.get("PROVENANCE_KEYSTORE_PASSWORD")
    if env is not None:
        return env
    if not sys.stdin.isatty():
        raise ConfigError(
            "keystore password needed: --password-file or PROVENANCE_KEYSTORE_PASSWORD"
        )
    return getpass.getpass("keystore password: ")


def session(
    *,
    keystore: Path | None = None,
    password_file: Path | None = None,
    trust: Iterable[str] | None = None,
    attestor: str | None = None,
    rpc_url: str | None = None,
    **options: Any,
) -> Session:
    """The :class:`~provenance.session.Session` a command works with: the configuration
    (:func:`config`) and the command's flags. The keystore (``keystore``, else ``[chain]
    keystore``) is opened only when a key is needed, and only then is its password read
    (:func:`password`: ``password_file``, the environment, or a prompt). ``options`` are the
    Session's (``registry``, ``chain_id``, ``data_sources``, ``fetch_timeout``, ...);
    ``rpc_url`` replaces ``[chain] rpc_url`` (``deploy --rpc-url``)."""
    from provenance.session import Session

    loaded = config()
    if rpc_url is not None:
        chain = loaded.chain.model_copy(update={"rpc_url": rpc_url})
        loaded = loaded.model_copy(update={"chain": chain})
    return Session(
        loaded,
        keystore=keystore,
        password=lambda: password(password_file),
        trust=trust or (),
        attestor=attestor,
        **options,
    )
