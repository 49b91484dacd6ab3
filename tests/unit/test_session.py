"""The composition root without services: which storage a configuration gets, how shortened
model ids resolve, and what needs a key (issue 15). The real stack's side runs in
tests/journeys/ (test_run_verify.py, test_auditor.py)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from provenance.chain.index import LineageIndex
from provenance.chain.registry import RegistryEvent
from provenance.config import load_config
from provenance.errors import ConfigError
from provenance.session import Session, connect
from provenance.storage import Gateway, Kubo, LocalStore

REMOTE = "https://rpc.example.invalid"


def session(tmp_path: Path, toml: str = "", env: dict[str, str] | None = None) -> Session:
    (tmp_path / "provenance.toml").write_text(f'state_dir = "state"\n{toml}', encoding="utf-8")
    return connect(environ=env or {}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("toml", "stack_runs_kubo", "kind", "cls"),
    [
        ("", False, "local", LocalStore),
        ("", True, "kubo", Kubo),  # journey 1: the kubo `provenance up` runs
        ('[ipfs]\ngateway = "http://127.0.0.1:8081"\n', False, "gateway", Gateway),  # journey 5
        ('[ipfs]\ngateway = "http://127.0.0.1:8081"\n', True, "kubo", Kubo),
        ('[ipfs]\napi = "http://127.0.0.1:5002"\n', False, "kubo", Kubo),
        ('[ipfs]\nbackend = "local"\n', True, "local", LocalStore),
    ],
)
def test_storage_selection(
    tmp_path: Path, toml: str, stack_runs_kubo: bool, kind: str, cls: type[Any]
) -> None:
    with session(tmp_path, toml) as s:
        s.__dict__["_stack_runs_kubo"] = stack_runs_kubo  # as Stack.is_running("ipfs") says
        assert s.storage_kind == kind
        assert type(s.storage) is cls
        assert (
            s.storage_location
            == {
                "local": str(tmp_path / "state" / "blocks"),
                "kubo": s.config.ipfs.api,
                "gateway": "http://127.0.0.1:8081",
            }[kind]
        )


def test_a_stack_that_is_not_running_means_the_local_store(tmp_path: Path) -> None:
    with session(tmp_path) as s:
        assert s.storage_kind == "local"
        assert isinstance(s.storage, LocalStore)


def test_the_gateway_is_read_only_and_closed_with_the_session(tmp_path: Path) -> None:
    s = session(tmp_path, "", {"PROVENANCE_IPFS_GATEWAY": "http://127.0.0.1:8081"})
    s.__dict__["_stack_runs_kubo"] = False
    store = s.storage
    assert isinstance(store, Gateway)
    closed: list[bool] = []
    s._closers.append(lambda: closed.append(True))
    s.close()
    assert closed == [True] and not s._closers


def _index_with(*ids: bytes) -> LineageIndex:
    index = LineageIndex(":memory:")
    for block, model in enumerate(ids, start=1):
        args = {
            "id": model,
            "registrant": "0x" + "11" * 20,
            "certificateDigest": model,
            "modelDigest": model,
            "dataCommitment": model,
            "firstParent": b"\x00" * 32,
            "firstRelation": 0,
        }
        index._apply(RegistryEvent("ModelRegistered", block, b"\x00" * 32, "0x", 0, args))
    return index


A = bytes.fromhex("1f2e3d4c" + "aa" * 28)
B = bytes.fromhex("1f2e3d4c" + "bb" * 28)
C = bytes.fromhex("77" * 32)


@pytest.fixture
def resolver(tmp_path: Path) -> Session:
    s = session(tmp_path)
    s.__dict__["index"] = _index_with(A, B, C)  # as synced from the registry's events
    return s


def test_resolve_id_full_and_unique_prefixes(resolver: Session) -> None:
    assert resolver.resolve_id("0x" + A.hex()) == A
    assert resolver.resolve_id("0x" + "77" * 4) == C
    assert resolver.resolve_id("77777777") == C  # 0x is optional
    assert resolver.resolve_id("0x1F2E3D4CAA") == A  # case does not matter
    assert resolver.resolve_id("0x1f2e3d4cbbbb") == B


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "0x1f2e3d4",
            "model id '0x1f2e3d4' is neither 0x + 64 hex digits nor a prefix of at least 8 hex "
            "digits",
        ),
        (
            "0x1f2e3d4g",
            "model id '0x1f2e3d4g' is neither 0x + 64 hex digits nor a prefix of at least 8 hex "
            "digits",
        ),
        ("0x1f2e3d4c", "model id prefix 0x1f2e3d4c is ambiguous: give more digits"),
        ("0x12345678", "no registered model id starts with 0x12345678"),
    ],
)
def test_resolve_id_refusals(resolver: Session, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolver.resolve_id(text)
    assert str(caught.value) == message


def test_sending_on_a_remote_chain_needs_a_keystore(tmp_path: Path) -> None:
    s = session(tmp_path, f'[chain]\nrpc_url = "{REMOTE}"\n')
    assert not s.on_dev_chain
    with pytest.raises(ConfigError) as caught:
        s.signer  # noqa: B018 - refused before anything is contacted
    assert str(caught.value) == (
        "sending on a remote chain needs a keystore: --keystore FILE, PROVENANCE_KEYSTORE or "
        "[chain] keystore (create one with `provenance key new`)"
    )
    with pytest.raises(ConfigError) as caught:
        s.node_account(A)
    assert str(caught.value) == (
        "serving on a remote chain needs the node's keystore (--node-keystore FILE)"
    )


def test_a_keystore_password_is_asked_for_only_when_the_key_is_needed(tmp_path: Path) -> None:
    asked: list[bool] = []

    def ask() -> str:
        asked.append(True)
        raise ConfigError("no password")

    config = load_config({}, cwd=tmp_path)
    s = Session(config, keystore=tmp_path / "key.json", password=ask)
    assert s.storage_kind == "local" and not asked
    with pytest.raises(ConfigError, match=r"^no password$"):
        s.signer  # noqa: B018
    assert asked == [True]
    with pytest.raises(ConfigError) as caught:
        Session(config, keystore=tmp_path / "key.json").signer  # noqa: B018
    assert str(caught.value) == (
        "keystore password needed: --password-file or PROVENANCE_KEYSTORE_PASSWORD"
    )


def test_node_key_on_the_dev_chain_is_made_once_and_private(tmp_path: Path) -> None:
    s = session(tmp_path)
    s.__dict__["chain_id"] = 31337  # no RPC asked
    first = s.node_account(A)
    assert s.node_account(A).address == first.address
    assert s.node_account(C).address != first.address
    path = tmp_path / "state" / "nodes" / f"31337-0x{A.hex()}.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_no_registry_configured_names_the_settings(tmp_path: Path) -> None:
    s = session(tmp_path)
    with pytest.raises(ConfigError) as caught:
        s.registry  # noqa: B018
    assert str(caught.value) == (
        f"no ModelRegistry is configured and the deployment file "
        f"{tmp_path / 'state' / 'deployment.json'} names none for this chain: set "
        "[chain.contracts] ModelRegistry in the config (or PROVENANCE_REGISTRY) to the registry "
        "you trust, or run `provenance up` (a local chain) or `provenance deploy`"
    )


def test_clients_sending_as_one_account_share_its_transactor(tmp_path: Path) -> None:
    from eth_account import Account

    s = session(tmp_path)
    s.__dict__["w3"] = object()  # no chain is asked: a Transactor only keeps the client
    alice, bob = Account.create(), Account.create()
    s.__dict__["signer"] = alice
    assert s.transactor() is s.transactor(alice)  # one nonce bookkeeping per account
    assert s.transactor(bob) is not s.transactor(alice)
    assert s.transactor(bob).account is bob
