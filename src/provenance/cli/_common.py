"""What every command module shares: consoles, the configuration, the tool search path."""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.segment import Segment

from provenance.errors import ConfigError
from provenance.untrusted import printable

if TYPE_CHECKING:  # imported where used: `provenance --help` starts without web3 or pydantic
    from eth_account.signers.local import LocalAccount
    from web3 import Web3

    from provenance.config import Config
    from provenance.stack import Tools


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


def tools() -> Tools:
    from provenance.stack import Tools

    # The setup script links anvil and ipfs into the virtual environment's bin folder, and
    # builds them into .tools/bin; look there before PATH.
    here = Path(sys.executable).parent
    folders = [here, Path(sys.prefix) / "bin"]
    return Tools(search_path=tuple(dict.fromkeys(folders)), path_env=os.environ.get("PATH"))


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


def signer(
    w3: Web3, rpc_url: str, keystore: Path | None, password_file: Path | None, what: str
) -> LocalAccount:
    """The account that signs: an encrypted keystore, else anvil's dev account on a dev node."""
    from provenance.chain.keys import dev_account, load_keystore
    from provenance.config import is_loopback_url

    if keystore is not None:
        return load_keystore(keystore, password(password_file))
    if is_loopback_url(rpc_url):
        return dev_account(w3)
    raise ConfigError(f"{what} on a remote chain needs --keystore FILE (or PROVENANCE_KEYSTORE)")
