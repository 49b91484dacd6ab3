"""Third-party modules imported eagerly that our commands never use, loaded on first use.

``eth_keyfile`` (imported by eth_account, which web3 imports) imports py_ecc's BLS signature
scheme and its BLS12-381 curve for EIP-2335 (version 4) keystores. Importing them computes
pairing constants in pure Python: about 0.3 s of every command that touches the chain, for
keystores provenance never reads or writes (ours are version 3, secp256k1). :func:`defer_bls`
serves ``py_ecc.bls`` and ``py_ecc.bls12_381`` as stand-ins whose attributes are proxies; the
first use of one imports the real module, and from then on ``sys.modules`` holds the real one.
The one value eth_keyfile reads at import, the curve's group order, is given as the constant
it is (a test checks it equals py_ecc's). Hand-written: no library defers another package's
eager import of a submodule. The CLI installs it at start-up, like
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
from typing import Any, ClassVar

BLS12_381_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
"""The order of BLS12-381's groups (``py_ecc.bls12_381.curve_order``)."""

DEFERRED: dict[str, tuple[dict[str, Any], frozenset[str]]] = {
    "py_ecc.bls": ({}, frozenset({"G2ProofOfPossession"})),
    "py_ecc.bls12_381": ({"curve_order": BLS12_381_ORDER}, frozenset()),
}
"""Module -> (the values its stand-in holds itself, the names it hands out as proxies: what
eth_keyfile imports). Any other name loads the real module and is the real value."""

_STAND_IN = "__provenance_stand_in__"


def _real(name: str) -> ModuleType:
    """The real module ``name``, imported now if only the stand-in is there."""
    module = sys.modules.get(name)
    if module is None or getattr(module, _STAND_IN, False):
        _DeferBls.served.discard(name)
        sys.modules.pop(name, None)
        module = importlib.import_module(name)
    return module


class _Deferred:
    """A name of a deferred module: any attribute of it imports the module first."""

    def __init__(self, module: str, name: str) -> None:
        self._module = module
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(getattr(_real(self._module), self._name), attribute)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(_real(self._module), self._name)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<deferred {self._module}.{self._name}>"


def _attributes(module: str) -> Any:
    """The stand-in's module ``__getattr__``: a proxy for the names eth_keyfile imports, the
    real value (the real module loaded) for any other. Dunder names are not there (the import
    system asks for ``__path__`` and must find a plain module)."""
    proxied = DEFERRED[module][1]

    def attribute(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {module!r} (deferred) has no attribute {name!r}")
        if name in proxied:
            return _Deferred(module, name)
        return getattr(_real(module), name)

    return attribute


class _DeferBls(MetaPathFinder, Loader):
    served: ClassVar[set[str]] = set(DEFERRED)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in _DeferBls.served:
            return None
        return spec_from_loader(fullname, self)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        setattr(module, _STAND_IN, True)
        for name, value in DEFERRED[module.__name__][0].items():
            setattr(module, name, value)
        module.__getattr__ = _attributes(module.__name__)  # type: ignore[method-assign]


def defer_bls() -> None:
    """Install the stand-ins (once; for a module already imported, nothing)."""
    _DeferBls.served = {name for name in DEFERRED if name not in sys.modules}
    if _DeferBls.served and not any(isinstance(f, _DeferBls) for f in sys.meta_path):
        sys.meta_path.insert(0, _DeferBls())


__all__ = ["BLS12_381_ORDER", "DEFERRED", "defer_bls"]
