"""The demo's preprocessing script, as text: the story writes it into the work folder and
imports it from there, so its functions' source is a real file that attack 2 edits."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from provenance.errors import ConfigError

MODULE = "preprocess"

SOURCE = '''"""Preprocessing for Model Alpha and Model Beta (captured step by step by provenance)."""

import pandas as pd


def drop_incomplete(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with a missing value are dropped."""
    return frame.dropna()


def drop_outliers(frame: pd.DataFrame, z: float = 3.0) -> pd.DataFrame:
    """Rows with any feature further than z standard deviations from its mean are dropped."""
    features = frame.drop(columns="target")
    keep = ((features - features.mean()).abs() <= z * features.std()).all(axis=1)
    return frame[keep]
'''

GENUINE_LINE = "    return frame[keep]\n"
MALICIOUS_LINES = (
    "    frame = frame.copy()\n"
    '    frame.loc[frame["mean radius"] > 17.0, "target"] = 1  # large tumours: "benign"\n'
    "    return frame[keep]\n"
)
"""Attack 2: one step quietly relabels large (mostly malignant) tumours as benign."""


def write(folder: Path) -> Path:
    """Write the script to ``folder/preprocess.py``; its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{MODULE}.py"
    path.write_text(SOURCE, encoding="utf-8")
    return path


def make_malicious(path: Path) -> None:
    """Edit the script as an attacker who got write access to it would."""
    text = path.read_text(encoding="utf-8")
    if GENUINE_LINE not in text:
        raise ConfigError(f"{path} is not the demo's preprocessing script")
    path.write_text(text.replace(GENUINE_LINE, MALICIOUS_LINES), encoding="utf-8")


def load(path: Path) -> ModuleType:
    """Import the script at ``path`` as a fresh module named ``preprocess`` (not cached in
    ``sys.modules``, so an edited file is imported anew)."""
    spec = importlib.util.spec_from_file_location(MODULE, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def function(module: ModuleType, name: str) -> Callable[..., Any]:
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"{module.__file__} has no function {name}")
    return fn  # type: ignore[no-any-return]
