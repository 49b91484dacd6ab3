"""Which packages a pickled model needs, and which of them can be copied into an image.

A pickle only loads reliably under the library versions that wrote it, and Debian's
scikit-learn is not the one the model was trained with. So the packages are not installed from
anywhere: the distributions the pickle refers to (its global references, mapped to installed
distributions, with their requirements) are copied, file by file as their ``RECORD`` lists them
(test suites left out), from the environment that trained the model into the image's
``/usr/local/lib/python3.X/dist-packages``. They must come from manylinux or pure-Python wheels
(no host libraries) and the base image must have the same Python minor version (its
``provenance.python`` label). No network is needed and the versions are exact by construction.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import pickletools
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from provenance.errors import ImageError

from .engine import _reason

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING"}
_STRING_OPS |= {"BINSTRING", "SHORT_BINSTRING"}


def pickle_globals(path: Path) -> set[tuple[str, str]]:
    """The ``(module, name)`` pairs a pickle refers to (its GLOBAL / STACK_GLOBAL opcodes);
    nothing is unpickled. Opcode arguments are read one at a time, so memory peaks at the
    largest buffer in the pickle."""
    found: set[tuple[str, str]] = set()
    memo: dict[int, Any] = {}
    recent: list[Any] = []
    try:
        with open(path, "rb") as f:
            for opcode, arg, _ in pickletools.genops(f):
                name = opcode.name
                if name == "GLOBAL":
                    module, _, attribute = str(arg).partition(" ")
                    found.add((module, attribute))
                    recent.append(None)
                elif name == "STACK_GLOBAL":
                    if len(recent) >= 2 and isinstance(recent[-2], str):
                        found.add((recent[-2], str(recent[-1])))
                    recent.append(None)
                elif name in _STRING_OPS:
                    recent.append(arg if isinstance(arg, str) else None)
                elif name == "MEMOIZE":
                    memo[len(memo)] = recent[-1] if recent else None
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[int(str(arg))] = recent[-1] if recent else None
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    recent.append(memo.get(int(str(arg))))
                else:
                    recent.append(None)
                del recent[:-2]
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot read the pickle {path}: {_reason(exc)}") from exc
    return found


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _requirements(dist: metadata.Distribution) -> list[str]:
    """Names of the distributions ``dist`` requires outside of extras (markers other than
    extras are not evaluated: a requirement is kept when it is installed)."""
    names = []
    for line in dist.requires or ():
        _, _, marker = line.partition(";")
        if "extra" in marker:
            continue
        if match := _REQUIREMENT.match(line):
            names.append(match.group(1))
    return names


def distributions_for(modules: Iterable[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions that provide ``modules``, with everything they require,
    by canonical name. Standard-library modules need none; a module no distribution provides
    (``__main__``, a local file) is an ImageError: the image could not import it."""
    providers = metadata.packages_distributions()
    wanted: list[str] = []
    for module in sorted(set(modules)):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top in sys.builtin_module_names:
            continue
        if top not in providers:
            raise ImageError(
                f"the model refers to module {module}, which no installed distribution "
                "provides: define what the model pickles in an installed package"
            )
        wanted.extend(providers[top])
    found: dict[str, metadata.Distribution] = {}
    while wanted:
        name = wanted.pop()
        key = _canonical(name)
        if key in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found[key] = dist
        wanted.extend(_requirements(dist))
    return dict(sorted(found.items()))


def _wheel_tags(dist: metadata.Distribution) -> list[str]:
    text = dist.read_text("WHEEL") or ""
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]


def _check_copyable(dist: metadata.Distribution) -> bool:
    """True when ``dist`` has compiled code (then the Python minor version must match)."""
    label = f"{dist.metadata['Name']} {dist.version}"
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except json.JSONDecodeError:
        direct = {}
    if isinstance(direct, dict) and direct.get("dir_info", {}).get("editable"):
        raise ImageError(f"{label} is installed in editable mode: install it normally first")
    if dist.files is None:
        raise ImageError(f"{label} lists no installed files (no RECORD): it cannot be copied")
    tags = _wheel_tags(dist)
    if not tags:
        raise ImageError(f"{label} was not installed from a wheel: it cannot be copied")
    platforms = {tag.rsplit("-", 1)[-1] for tag in tags}
    if platforms == {"any"}:
        return False
    if not all(p.startswith("manylinux") for p in platforms):
        raise ImageError(
            f"{label} was built for {', '.join(sorted(platforms))}, not from a manylinux wheel: "
            "its compiled code may need libraries the image lacks"
        )
    return True


def _dist_files(dist: metadata.Distribution, tests: bool) -> Iterator[tuple[str, Path]]:
    """The installed files of ``dist`` under site-packages (by their path there), without the
    test suites (files in ``tests`` folders) unless ``tests``."""
    for item in dist.files or ():
        if ".." in item.parts:
            continue  # scripts and data outside site-packages
        if not tests and "tests" in item.parts[:-1]:
            continue
        path = Path(str(dist.locate_file(item)))
        if path.is_file():
            yield item.as_posix(), path
