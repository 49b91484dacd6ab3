"""Third-party modules imported eagerly that our commands never use, loaded on first use.

``eth_keyfile`` (imported by eth_account, which web3 imports) imports py_ecc's BLS signature
scheme for EIP-2335 (version 4) keystores. Importing it computes pairing constants in pure
Python: about 0.2 s of every command that touches the chain, for keystores provenance never
reads or writes (ours are version 3, secp256k1). :func:`defer_bls` serves ``py_ecc.bls`` as a
stand-in whose attributes are proxies; the first use of one imports the real module, and from
then on ``sys.modules`` holds the real one. Hand-written: no library defers another
package's eager import of a submodule. The CLI installs it at start-up, like
:func:`provenance.untrusted.keep_recursion_limit`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from importlib.abc import Loader, MetaPathFinder
from importlib.machinery import ModuleSpec
from importlib.util import spec_from_loader
from types import ModuleType
from typing import Any

DEFERRED = "py_ecc.bls"
_STAND_IN = "__provenance_stand_in__"


def _real() -> ModuleType:
    """The real module, imported now if only the stand-in is there."""
    module = sys.modules.get(DEFERRED)
    if module is None or getattr(module, _STAND_IN, False):
        _DeferBls.serving = False
        sys.modules.pop(DEFERRED, None)
        module = importlib.import_module(DEFERRED)
    return module


class _Deferred:
    """A name of the deferred module: any attribute of it imports the module first."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(getattr(_real(), self._name), attribute)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(_real(), self._name)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<deferred {DEFERRED}.{self._name}>"


def _attribute(name: str) -> _Deferred:
    """The stand-in's attributes: a proxy per public name. Dunder names are not there (the
    import system asks for ``__path__`` and must find a plain module)."""
    if name.startswith("__"):
        raise AttributeError(f"module {DEFERRED!r} (deferred) has no attribute {name!r}")
    return _Deferred(name)


class _DeferBls(MetaPathFinder, Loader):
    serving = True

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != DEFERRED or not _DeferBls.serving:
            return None
        return spec_from_loader(fullname, self)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        setattr(module, _STAND_IN, True)
        module.__getattr__ = _attribute  # type: ignore[method-assign]  # PEP 562


def defer_bls() -> None:
    """Install the stand-in for ``py_ecc.bls`` (once; nothing when it is already imported)."""
    if DEFERRED in sys.modules:
        return
    if not any(isinstance(finder, _DeferBls) for finder in sys.meta_path):
        sys.meta_path.insert(0, _DeferBls())


__all__ = ["DEFERRED", "defer_bls"]
