from __future__ import annotations

from pathlib import Path

import pytest

from provenance.config import is_loopback_url, load_config, url_port
from provenance.errors import ConfigError


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = load_config({"PROVENANCE_STATE_DIR": str(tmp_path / "s")}, cwd=tmp_path)
    assert config.source is None
    assert config.state_dir == tmp_path / "s"
    assert config.chain.rpc_url == "http://127.0.0.1:8545"
    assert config.chain.chain_id == 31337
    assert config.ipfs.api == "http://127.0.0.1:5001"
    assert config.docker.host is None
    assert config.deployment_file == tmp_path / "s" / "deployment.json"


def test_file_in_cwd_and_environment_overrides(tmp_path: Path) -> None:
    (tmp_path / "provenance.toml").write_text(
        'state_dir = "st"\n[chain]\nrpc_url = "http://127.0.0.1:9999"\nchain_id = 5\n'
        '[ipfs]\napi = "http://127.0.0.1:5002"\n'
    )
    env = {
        "PROVENANCE_RPC_URL": "https://rpc.example.invalid/v1",
        "DOCKER_HOST": "tcp://127.0.0.1:2375",
    }
    config = load_config(env, cwd=tmp_path)
    assert config.source == tmp_path / "provenance.toml"
    assert config.state_dir == tmp_path / "st"
    assert config.chain.rpc_url == "https://rpc.example.invalid/v1"
    assert config.chain.chain_id == 5
    assert config.ipfs.api == "http://127.0.0.1:5002"
    assert config.docker.host == "tcp://127.0.0.1:2375"


def test_provenance_config_variable_wins_over_cwd(tmp_path: Path) -> None:
    (tmp_path / "provenance.toml").write_text("[chain]\nchain_id = 1\n")
    other = tmp_path / "other.toml"
    other.write_text("[chain]\nchain_id = 2\n")
    config = load_config({"PROVENANCE_CONFIG": str(other)}, cwd=tmp_path)
    assert config.chain.chain_id == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[chain]\nrpc_url = 'ftp://x'\n",
            "chain.rpc_url: Value error, expected an http(s) URL, got 'ftp://x'",
        ),
        ("[chain]\nchain_id = 0\n", "chain.chain_id: Input should be greater than 0"),
        ("[chain]\nprivate_key = '0xabc'\n", "chain.private_key: Extra inputs are not permitted"),
        (
            "[chain.contracts]\nModelRegistry = '0x1234'\n",
            "chain.contracts: Value error, contract ModelRegistry: '0x1234' is not a 20-byte 0x address",
        ),
    ],
)
def test_invalid_settings_give_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "provenance.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config({}, cwd=tmp_path)
    assert str(info.value) == f"config file {path}: {message}"


def test_unparsable_file(tmp_path: Path) -> None:
    path = tmp_path / "provenance.toml"
    path.write_text("[chain\n")
    with pytest.raises(ConfigError, match=rf"^cannot read config file {path}: "):
        load_config({}, cwd=tmp_path)


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({}, cwd=tmp_path, explicit=tmp_path / "nope.toml")
    assert str(info.value) == f"config file {tmp_path / 'nope.toml'} does not exist"
    with pytest.raises(ConfigError) as info:
        load_config({"PROVENANCE_CONFIG": "/nonexistent/p.toml"}, cwd=tmp_path)
    assert (
        str(info.value) == "PROVENANCE_CONFIG points at /nonexistent/p.toml, which does not exist"
    )


def test_bad_environment_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"PROVENANCE_CHAIN_ID": "mainnet"}, cwd=tmp_path)
    assert str(info.value) == (
        "configuration: chain.chain_id: Input should be a valid integer, unable to parse "
        "string as an integer"
    )


def test_url_helpers() -> None:
    assert is_loopback_url("http://127.0.0.1:8545")
    assert is_loopback_url("http://localhost:5001")
    assert not is_loopback_url("https://rpc.example.invalid")
    assert url_port("http://127.0.0.1:8545") == 8545
    assert url_port("https://rpc.example.invalid") == 443
