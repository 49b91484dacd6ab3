from __future__ import annotations

import subprocess
import sys

import provenance


def test_every_public_name_resolves() -> None:
    for name in provenance.__all__:
        assert getattr(provenance, name) is not None, name


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        provenance.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert str(exc) == "module 'provenance' has no attribute 'NoSuchThing'"
    else:
        raise AssertionError("no AttributeError")


def test_import_is_lazy() -> None:
    code = "import sys, provenance; print('web3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
