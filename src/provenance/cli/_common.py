"""What every command module shares: consoles, the configuration, the tool search path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rich.console import Console

from provenance.config import Config, load_config
from provenance.stack import Tools

out = Console()
err = Console(stderr=True)


class _State:
    config_path: Path | None = None


state = _State()


def config() -> Config:
    return load_config(os.environ, cwd=Path.cwd(), explicit=state.config_path)


def tools() -> Tools:
    # The setup script links anvil and ipfs into the virtual environment's bin folder, and
    # builds them into .tools/bin; look there before PATH.
    here = Path(sys.executable).parent
    folders = [here, Path(sys.prefix) / "bin"]
    return Tools(search_path=tuple(dict.fromkeys(folders)), path_env=os.environ.get("PATH"))


def say(message: str) -> None:
    out.print(f"[green]\u2714[/] {message}")
