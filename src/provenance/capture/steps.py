"""What a recorded step says about the function it ran: a digest of its source, the
top-level packages its module imported, and their installed versions."""

from __future__ import annotations

import importlib.metadata
import inspect
import sys
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from provenance.hashing import format_digest, sha256

_DISTRIBUTIONS: dict[str, list[str]] | None = None


def imported_packages(fn: Callable[..., Any]) -> frozenset[str]:
    """The top-level packages the module of ``fn`` imported (as modules, or names imported
    from them), less the standard library: cheap, taken when a step runs."""
    namespace = getattr(inspect.unwrap(fn), "__globals__", None)
    if not isinstance(namespace, dict):
        module = sys.modules.get(getattr(fn, "__module__", None) or "")
        namespace = vars(module) if module is not None else {}
    tops: set[str] = set()
    for value in list(namespace.values()):
        if isinstance(value, ModuleType):
            tops.add(value.__name__.partition(".")[0])
        else:
            owner = getattr(value, "__module__", None)
            if isinstance(owner, str):
                tops.add(owner.partition(".")[0])
    return frozenset(tops - set(sys.stdlib_module_names) - {"builtins", "__main__"})


def library_versions(tops: Iterable[str]) -> dict[str, str]:
    """Versions of the installed distributions providing these top-level packages (resolved
    when the certificate is built, not while the job runs)."""
    global _DISTRIBUTIONS
    if _DISTRIBUTIONS is None:
        _DISTRIBUTIONS = dict(importlib.metadata.packages_distributions())
    found: dict[str, str] = {}
    for top in sorted(tops):
        for dist in _DISTRIBUTIONS.get(top, []):
            try:
                found[dist.lower()] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
    return dict(sorted(found.items()))


def source_digest(fn: Callable[..., Any]) -> str | None:
    target = inspect.unwrap(fn)
    try:
        return format_digest(sha256(inspect.getsource(target).encode()))
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        if code is None:
            return None
        return format_digest(sha256(code.co_code + repr(code.co_consts).encode()))


__all__ = ["imported_packages", "library_versions", "source_digest"]
