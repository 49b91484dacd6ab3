"""py_ecc's BLS scheme, imported by eth_keyfile for keystores we never use, is deferred by the
CLI: importing web3 does not compute its pairing constants, and using it still works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")


def python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {SRC!r})\n{code}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_web3_imports_without_the_bls_pairing() -> None:
    found = python(
        "from provenance.deferred_imports import defer_bls\n"
        "defer_bls()\n"
        "import web3, eth_account, eth_keyfile\n"
        "print('py_ecc.optimized_bls12_381' in sys.modules, 'py_ecc.bls.ciphersuites' in sys.modules,"
        " 'py_ecc.bls12_381.bls12_381_pairing' in sys.modules)"
    )
    assert found == "False False False"
    assert python("import web3\nprint('py_ecc.optimized_bls12_381' in sys.modules)") == "True"


def test_the_deferred_scheme_works_as_the_real_one() -> None:
    code = (
        "import eth_keyfile\n"
        "from py_ecc.bls import G2ProofOfPossession as bls\n"
        "keyfile = eth_keyfile.create_keyfile_json(bytes(range(1, 33)), b'pw', version=4, "
        "kdf='pbkdf2', iterations=2)\n"
        "print(bls.SkToPk(42).hex(), keyfile['pubkey'], "
        "eth_keyfile.decode_keyfile_json(keyfile, b'pw').hex())\n"
        "import py_ecc.bls, py_ecc.bls12_381\n"
        "from py_ecc.bls12_381 import G1, curve_order, multiply\n"
        "print(type(sys.modules['py_ecc.bls']).__name__, hasattr(py_ecc.bls, 'G2Basic'),"
        " eth_keyfile.keyfile.MAX_V4_PRIVATE_KEY == curve_order - 1, multiply(G1, 5)[0])"
    )
    deferred = python("from provenance.deferred_imports import defer_bls\ndefer_bls()\n" + code)
    assert deferred == python(code)
    assert deferred.splitlines()[1].startswith("module True True ")


def test_the_group_order_given_is_py_eccs() -> None:
    from provenance.deferred_imports import BLS12_381_ORDER

    assert python("from py_ecc.bls12_381 import curve_order\nprint(curve_order)") == str(
        BLS12_381_ORDER
    )


def test_the_cli_defers_it() -> None:
    found = python(
        "import provenance.cli\nimport web3\nprint('py_ecc.optimized_bls12_381' in sys.modules)"
    )
    assert found == "False"
