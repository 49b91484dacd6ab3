"""Hostile input to the parsers: deep nesting (a segfault once py_ecc raised the recursion
limit), duplicate keys, non-finite and huge numbers, unsafe paths, impossible times, loose
receipt numbers, bad signatures, hostile config files, and untrusted text in output. Inputs that
crashed the process run in a subprocess: the test is the exit code and one line on stderr."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from provenance.attest import Receipt
from provenance.certificate import (
    Certificate,
    SignedCertificate,
    TrainingData,
    parse_certificate,
    verify_certificate_signature,
)
from provenance.config import is_loopback_url, load_config
from provenance.errors import CertificateError, ConfigError, IntegrityError, SignatureError
from provenance.hashing import format_digest
from provenance.manifest import FileEntry, FileManifest
from provenance.untrusted import (
    UntrustedInputError,
    cbor_depth_check,
    keep_recursion_limit,
    loads_json,
    printable,
)

PROVENANCE = Path(sys.executable).parent / "provenance"
DEEP = 100_000


def body(path: str = "model.pkl", **extra: Any) -> dict[str, Any]:
    entry = {"path": path, "size": 3, "digest": format_digest(hashlib.sha256(b"abc").digest())}
    manifest = FileManifest.model_construct(
        root=FileManifest.of([FileEntry.model_construct(**entry)]).root,  # type: ignore[arg-type]
        files=(FileEntry.model_construct(**entry),),  # type: ignore[arg-type]
    )
    data = TrainingData.of(())
    return {
        "model_name": "m",
        "created_at": "2024-01-02T03:04:05.000000Z",
        "model": {"digest": manifest.root, "manifest": manifest.model_dump(mode="json")},
        "data": data.model_dump(mode="json", exclude_none=True),
        **extra,
    }


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENANCE_")}
    env["PROVENANCE_STATE_DIR"] = str(cwd / "state")
    return subprocess.run(
        [str(PROVENANCE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# -- crashes (segfaults) ----------------------------------------------------------------------


def test_deeply_nested_certificate_is_one_line_not_a_segfault(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"certificate": ' + "[" * DEEP + "]" * DEEP + "}")
    for command in (("certificate", "show", str(path)), ("certificate", "verify", str(path))):
        line = one_line_error(cli(*command, cwd=tmp_path))
        assert line == f"error: certificate {path} is nested deeper than 256 levels"


def test_deeply_nested_payload_in_verify_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"version": 1, "model": {}, "data": ' + "[" * DEEP + "]" * DEEP + "}")
    one_line_error(cli("verify", str(path), cwd=tmp_path))  # was a segfault (exit 139)


def test_car_with_a_deep_cbor_header_is_refused_in_one_line(tmp_path: Path) -> None:
    from provenance.storage.dagpb import varint

    header = b"\x81" * DEEP + b"\x00"
    car = tmp_path / "deep.car"
    car.write_bytes(varint(len(header)) + header)
    line = one_line_error(cli("ipfs", "import", str(car), cwd=tmp_path))
    assert line == (
        f"error: CAR from {car} has a malformed header: DAG-CBOR is nested deeper than 8 levels"
    )


def test_bounded_json_after_eth_account_in_a_subprocess() -> None:
    """What ``serve``'s /predict and the explorer decode: py_ecc is imported first."""
    code = (
        "import eth_account\n"
        "from provenance.untrusted import loads_json, UntrustedInputError\n"
        "try:\n"
        "    loads_json(b'[' * 400_000, what='the request body')\n"
        "except UntrustedInputError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "the request body is nested deeper than 256 levels\n"


def test_keep_recursion_limit() -> None:
    code = (
        "import sys\nfrom provenance.untrusted import keep_recursion_limit\n"
        "keep_recursion_limit()\nimport eth_account\nprint(sys.getrecursionlimit())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout == "1000\n", done.stderr
    keep_recursion_limit()


def test_cli_keeps_a_sane_recursion_limit() -> None:
    code = "import sys\nimport provenance.cli\nprint(sys.getrecursionlimit())\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout == "1000\n", done.stderr


# -- the bounded decoder ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[" * 257 + b"]" * 257, "x is nested deeper than 256 levels"),
        (b'{"a": 1, "a": 2}', "x has the key 'a' twice in one object"),
        (b"[NaN]", "x holds NaN, which is not JSON"),
        (b"[-Infinity]", "x holds -Infinity, which is not JSON"),
        (b"[1e999]", "x holds the number 1e999, too large for a float"),
        (b"[" + b"9" * 5000 + b"]", "x holds an integer of more than 300 digits"),
        (b'"\xff"', "x is not UTF-8 (byte 1)"),
        (b"[1,", "x is not JSON: Expecting value: line 1 column 4 (char 3)"),
        (b" " * 101, "x has 101 bytes; at most 100 are accepted"),
    ],
)
def test_loads_json_refusals(data: bytes, message: str) -> None:
    with pytest.raises(UntrustedInputError) as info:
        loads_json(data, what="x", max_bytes=100 if len(data) > 100 and b" " in data else 1 << 20)
    assert str(info.value) == message


def test_loads_json_depth_ignores_brackets_in_strings() -> None:
    text = json.dumps({"s": "[" * 1000 + '\\"{' * 300, "t": [[["ok"]]]})
    assert loads_json(text)["t"] == [[["ok"]]]
    assert loads_json("[" * 256 + "]" * 256) is not None


def test_cbor_depth_check() -> None:
    import libipld

    cbor_depth_check(libipld.encode_dag_cbor({"roots": [[1, {"a": b"x"}]], "version": 1}))
    for bad, message in [
        (b"\x81" * 300 + b"\x00", "CBOR is nested deeper than 256 levels"),
        (b"\x9f\x00\xff", "CBOR uses an indefinite or reserved length"),
        (b"\x9b" + b"\xff" * 8, "CBOR is truncated"),
        (b"\x5a\xff\xff\xff\xff", "CBOR is truncated"),
    ]:
        with pytest.raises(UntrustedInputError) as info:
            cbor_depth_check(bad)
        assert str(info.value) == message


# -- certificates -----------------------------------------------------------------------------


def test_a_valid_body_parses() -> None:
    assert isinstance(parse_certificate(json.dumps(body())), Certificate)


def test_duplicate_keys_in_a_certificate_are_refused() -> None:
    text = json.dumps(body())[:-1] + ', "model_name": "other"}'
    with pytest.raises(CertificateError) as info:
        parse_certificate(text, "c")
    assert str(info.value) == "c has the key 'model_name' twice in one object"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../evil", "it has a '..' segment"),
        ("a/../../evil", "it has a '..' segment"),
        ("/etc/passwd", "it is absolute"),
        ("a\\..\\b", "it contains a backslash"),
        ("a\x00b", "it contains a control character"),
        ("a\x1b[2Jb", "it contains a control character"),
        ("a//b", "it has an empty segment"),
        ("./a", "it has a '.' segment"),
    ],
)
def test_unsafe_model_paths_are_refused(path: str, reason: str) -> None:
    with pytest.raises(CertificateError) as info:
        parse_certificate(json.dumps(body(path)), "c")
    assert str(info.value) == (
        f"c does not fit schema v1: model: Value error, the model has the unsafe path "
        f"{path!r}: {reason}"
    )


def test_impossible_times_are_refused() -> None:
    with pytest.raises(CertificateError) as info:
        parse_certificate(json.dumps(body(created_at="2024-13-45T99:99:99Z")), "c")
    assert str(info.value) == (
        "c does not fit schema v1: created_at: Value error, '2024-13-45T99:99:99Z' is not a "
        "real date and time"
    )


def _signed(signature: str) -> SignedCertificate:
    from eth_account import Account

    from provenance.certificate import sign_certificate
    from provenance.chain.keys import anvil_dev_key

    signed = sign_certificate(
        Certificate.model_validate(body()), Account.from_key(anvil_dev_key(0))
    )
    return signed.model_copy(update={"signature": signature})


@pytest.mark.parametrize(
    "signature",
    ["0x" + "ff" * 65, "0x" + "00" * 65, "0x", "0x" + "11" * 64 + "05"],
)
def test_bad_signatures_raise_signature_error(signature: str) -> None:
    with pytest.raises(SignatureError) as info:
        verify_certificate_signature(_signed(signature))
    assert str(info.value).startswith("the certificate signature is malformed: ") or (
        "recovers to" in str(info.value)
    )


# -- receipts ---------------------------------------------------------------------------------


def receipt_json() -> dict[str, Any]:
    h = "0x" + "11" * 32
    return {
        "record": {
            "model_id": h,
            "model_digest": h,
            "input_digest": h,
            "output_digest": h,
            "sequence": 1,
            "timestamp": 2,
        },
        "batch": {"root": h, "first_sequence": 1, "count": 1, "timestamp": 2},
        "proof": [],
        "signature": "0x" + "22" * 65,
        "node": "0x" + "33" * 20,
        "chain_id": 31337,
        "contract": "0x" + "44" * 20,
    }


def test_a_valid_receipt_parses() -> None:
    assert Receipt.from_json(receipt_json()).record.sequence == 1


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("record", "sequence"), 1.5, "record.sequence must be an integer, not 1.5"),
        (("record", "sequence"), True, "record.sequence must be an integer, not True"),
        (("record", "sequence"), "1", "record.sequence must be an integer, not '1'"),
        (("batch", "count"), 1 << 32, "batch.count is out of the uint32 range"),
        (("record", "timestamp"), -1, "record.timestamp is out of the uint64 range"),
        (("contract",), "0x1234", "contract must be a 20-byte 0x address, not '0x1234'"),
        (("signature",), "0x", "'0x' is not 65 bytes"),
        (("record", "model_id"), "0xzz", "'0xzz' is not hex"),
    ],
)
def test_loose_receipts_are_refused(path: tuple[str, ...], value: object, message: str) -> None:
    data = receipt_json()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(IntegrityError) as info:
        Receipt.from_json(data)
    assert str(info.value) == f"not a valid output receipt: {message}"


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8545", True),
        ("http://127.1.2.3:8545", True),
        ("http://localhost:5001", True),
        ("http://[::1]:5001", True),
        ("http://127.evil.com:8545", False),
        ("http://127.0.0.1.nip.io:8545", False),
        ("http://localhost.evil.com", False),
        ("http://10.0.0.1", False),
        ("http://[::1", False),
    ],
)
def test_loopback_is_an_ip_literal_or_localhost(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"\xff\xfe", "is not UTF-8 (byte 0)"),
        (b"chain = 5\n", ": [chain] must be a table"),
        (b"[chain]\ncontracts = 1\n", ": [chain.contracts] must be a table"),
        (b"[limits]\nmax_entries = 0\n", ": limits.max_entries: Input should be greater than 0"),
        (b"state_dir = 5\n", "a path in the configuration must be a string, not 5"),
        (b"x = " + b"9" * 5000 + b"\n", "cannot read config file"),
    ],
)
def test_hostile_config_files(tmp_path: Path, text: bytes, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(text)
    with pytest.raises(ConfigError) as info:
        load_config({}, cwd=tmp_path, explicit=path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_env_override_into_a_non_table(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("ipfs = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config({"PROVENANCE_IPFS_API": "http://x"}, cwd=tmp_path, explicit=path)
    assert str(info.value) == f"config file {path}: [ipfs] must be a table"


def test_limits_from_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[limits]\nmax_download_bytes = 1000\nmax_entries = 7\n")
    limits = load_config({}, cwd=tmp_path, explicit=path).limits.value
    assert (limits.max_download_bytes, limits.max_entries, limits.max_depth) == (1000, 7, 256)


def test_config_from_the_working_directory_is_announced(tmp_path: Path) -> None:
    (tmp_path / "provenance.toml").write_text(f'state_dir = "{tmp_path / "s"}"\n')
    (tmp_path / "f").write_bytes(b"x")
    done = cli("ipfs", "add", "f", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"using config file {tmp_path / 'provenance.toml'} (from the working directory)"
    ]


# -- text -------------------------------------------------------------------------------------


def test_printable_escapes_terminal_controls() -> None:
    assert printable("a\x1b]0;x\x07b\r\u202ec\n") == "a\\x1b]0;x\\x07b\\x0d\\u202ec\n"
    assert printable("a\nb", one_line=True) == "a\\x0ab"


def test_model_names_with_control_characters_give_valid_svg() -> None:
    import shutil
    import xml.etree.ElementTree as ET

    from provenance import lineage

    a, b = b"\x01" * 32, b"\x02" * 32
    tree = lineage.FamilyTree(
        focus=b,
        nodes=(
            lineage.TreeNode(b, "active", name="evil\x1b[31m\x00\x0c<&>\ud800"),
            lineage.TreeNode(a, "active", name="[bold]parent\r"),
        ),
        edges=(lineage.TreeEdge(a, b, "fine-tune"),),
    )
    dot = lineage.render_dot(tree)
    assert all(ord(c) >= 0x20 or c == "\n" for c in dot)
    assert "evil\\\\x1b[31m\\\\x00\\\\x0c<&>\\\\ud800" in dot
    mermaid = lineage.render_mermaid(tree)
    assert "\x1b" not in mermaid and "\x00" not in mermaid
    if shutil.which("dot") is not None:
        ET.fromstring(lineage.render_svg(tree).encode())  # well-formed XML


# -- one-line CLI errors on non-UTF-8 and oversized input -------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("certificate", "show"),
        ("certificate", "verify"),
        ("verify-output",),
    ],
)
def test_non_utf8_files_give_one_line(tmp_path: Path, command: tuple[str, ...]) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(b'{"a": "\xff\xfe"}')
    one_line_error(cli(*command, str(path), cwd=tmp_path))


def test_huge_integer_in_a_receipt_gives_one_line(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"record": ' + "9" * 5000 + "}")
    line = one_line_error(cli("verify-output", str(path), cwd=tmp_path))
    assert line == f"error: receipt {path} holds an integer of more than 300 digits"


def test_abi_and_address_errors_become_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """What a value out of an ABI range or a malformed address raised from deep inside web3
    looks like at the CLI edge (the same catch serves every command)."""
    from eth_abi.exceptions import ValueOutOfBounds
    from web3.exceptions import InvalidAddress

    import provenance.cli as cli_module
    import provenance.storage

    for exc in (ValueOutOfBounds("Value 2**64 exceeds uint64"), InvalidAddress("0x12 bad")):

        def boom(*args: object, exc: Exception = exc, **kwargs: object) -> None:
            raise exc

        monkeypatch.setattr(provenance.storage, "cid_of_path", boom)  # the CLI imports it late
        (tmp_path / "f").write_bytes(b"x")
        monkeypatch.setattr(sys, "argv", ["provenance", "ipfs", "add", "--only-hash", "f"])
        monkeypatch.chdir(tmp_path)
        with pytest.raises(SystemExit) as info:
            cli_module.main()
        assert info.value.code == 1
        assert capsys.readouterr().err == f"error: invalid input: {exc}\n"


def test_toml_depth_check_skips_strings_and_comments() -> None:
    from provenance.untrusted import toml_depth_check

    toml_depth_check('a = "[[[[\\"[[" # [[[[\nb = \'[[[[\'\nc = [[1], {x = [2]}]\n', 3)
    with pytest.raises(UntrustedInputError):
        toml_depth_check("a = [[[[1]]]]", 3)


def test_deeply_nested_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError) as info:
        load_config({}, cwd=tmp_path, explicit=path)
    assert str(info.value) == f"config file {path} is nested deeper than 32 levels"


EXPLORER_SCRIPT = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
import eth_account  # what every real process imports first (py_ecc: recursion limit 100000)
from fastapi.testclient import TestClient
from provenance.chain.index import LineageIndex
from provenance.server.explorer import create_explorer_app
from provenance.storage.local import LocalStore
import hashlib

folder = Path(sys.argv[1])
store = LocalStore(folder / "blocks")
body = b'{"payload": ' + b"[" * 120_000 + b"]" * 120_000 + b"}"
store.put_bytes(body)
index = LineageIndex(folder / "index.sqlite")
model_id = b"\\x0a" * 32
index._apply(SimpleNamespace(name="ModelRegistered", block=1, transaction="0x" + "66" * 32, args={
    "id": model_id, "registrant": "0x" + "77" * 20,
    "certificateDigest": hashlib.sha256(body).digest(), "modelDigest": b"\\x02" * 32,
    "dataCommitment": b"\\x03" * 32, "firstParent": b"\\x00" * 32, "firstRelation": 0}))
index.db.commit()
app = create_explorer_app(None, index, store)
app.state.explorer.sync_interval = 1e12
app.state.explorer._synced_at = time.monotonic()
response = TestClient(app).get("/api/models/0x" + model_id.hex() + "/certificate")
print(response.status_code, response.json()["detail"])
"""


def test_a_registered_deeply_nested_certificate_does_not_kill_the_explorer(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", EXPLORER_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    cid = done.stdout.split("certificate ")[1].split(" ")[0]
    assert done.stdout == f"404 certificate {cid} is nested deeper than 256 levels\n"


def test_certificate_show_escapes_terminal_controls_and_markup(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(body(model_name="evil\x1b]0;title\x07[bold red]x[/]\u202e")))
    done = cli("certificate", "show", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    line = done.stdout.splitlines()[0]
    assert line.split(None, 1) == ["model_name", "evil\\x1b]0;title\\x07[bold red]x[/]\\u202e"]


def test_a_nul_byte_in_a_config_path_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('state_dir = "a\\u0000b"\n')
    with pytest.raises(ConfigError) as info:
        load_config({}, cwd=tmp_path, explicit=path)
    assert str(info.value) == "a path in the configuration contains a NUL byte: 'a\\x00b'"


@pytest.mark.parametrize("code", [0x1B, 0x22])  # keccak-256, murmur3-128: optional in multiformats
def test_a_block_with_an_unverifiable_hash_function_is_an_integrity_error(code: int) -> None:
    from provenance.storage import cid as cids

    cid = bytes([0x01, 0x55, code, 0x20]) + b"\x00" * 32
    try:
        cids.verify_block(cid, b"x", "test")
    except IntegrityError as exc:
        assert str(exc).startswith("block ")
