"""`provenance --help` starts at once (issue 15): importing the CLI pulls in none of the heavy
libraries; each command imports what it needs. No timings here (benchmarks/cli.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from provenance import __version__
from provenance.images import BASE_IMAGE

HEAVY = ("web3", "eth_account", "docker", "pandas", "sklearn", "py_ecc")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_importing_the_cli_imports_no_heavy_library() -> None:
    done = _run(
        f"import sys\nimport provenance.cli\nprint(sorted(set({HEAVY!r}) & set(sys.modules)))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"


def test_version_and_help_import_no_heavy_library() -> None:
    for argv, expected in ((["--version"], f"provenance {__version__}\n"), (["--help"], None)):
        code = (
            "import sys\nfrom provenance.cli import main\n"
            f"sys.argv = ['provenance', *{argv!r}]\n"
            "try:\n    main()\nfinally:\n"
            f"    print(sorted(set({HEAVY!r}) & set(sys.modules)), file=sys.stderr)\n"
        )
        done = _run(code)
        assert done.returncode == 0, done.stderr
        assert done.stderr == "[]\n"
        if expected is not None:
            assert done.stdout == expected
        else:
            assert "Verifiable birth certificates and family trees" in done.stdout
            for command in ("register", "show", "verify", "ipfs", "image", "certificate"):
                assert command in done.stdout


def test_a_command_importing_eth_account_keeps_the_recursion_limit() -> None:
    done = _run(
        "import sys\nimport provenance.cli\nimport eth_account\nprint(sys.getrecursionlimit())"
    )
    assert done.stdout == "1000\n", done.stderr


def test_image_build_help_names_the_default_base() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from provenance.cli import main; main()",
            "image",
            "build",
            "--help",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"COLUMNS": "200", **os.environ},
    )
    assert done.returncode == 0, done.stderr
    assert f"default {BASE_IMAGE}" in " ".join(done.stdout.split())  # however it wraps
