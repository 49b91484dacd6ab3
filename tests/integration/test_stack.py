"""The local stack against the real anvil, kubo and Docker engine."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from provenance.chain.artifacts import load_artifact
from provenance.chain.client import connect
from provenance.chain.deploy import Deployment, ensure_deployed
from provenance.chain.keys import dev_account
from provenance.chain.tx import send
from provenance.errors import ConfigError, PortInUseError, ServiceError
from provenance.stack import Stack, Tools, free_port

from .conftest import config_at, tools, write_stack_config

pytestmark = pytest.mark.integration

PROVENANCE = Path(sys.executable).parent / "provenance"


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROVENANCE), *args], env=env, capture_output=True, text=True, timeout=300
    )


def pids(stack: Stack) -> dict[str, int]:
    return {p.stem: json.loads(p.read_text())["pid"] for p in sorted(stack.run_dir.glob("*.json"))}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def processes_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if text.encode() in (proc / "cmdline").read_bytes() and alive(int(proc.name)):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_status_json_reports_all_four_parts_ok(stack: Stack, cli_env: dict[str, str]) -> None:
    result = run_cli("status", "--json", env=cli_env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {k: report[k]["ok"] for k in ("chain", "ipfs", "docker", "contracts")} == {
        "chain": True,
        "ipfs": True,
        "docker": True,
        "contracts": True,
    }
    assert report["config"] == cli_env["PROVENANCE_CONFIG"]
    assert report["ok"] is True
    # a local stack: every part is required, and `up` runs anvil and kubo
    assert {k: report[k]["required"] for k in ("chain", "ipfs", "docker", "contracts")} == {
        "chain": True,
        "ipfs": True,
        "docker": True,
        "contracts": True,
    }
    assert report["chain"]["managed"] is True and report["ipfs"]["managed"] is True
    assert report["chain"]["chain_id"] == 31337
    assert report["chain"]["rpc_url"] == stack.config.chain.rpc_url
    assert report["ipfs"]["version"] == "0.43.0"
    assert report["ipfs"]["peer_id"]
    assert report["docker"]["version"]
    registry = report["contracts"]["ModelRegistry"]
    assert registry["has_code"] is True
    assert Web3.is_checksum_address(registry["address"])


def test_status_table_names_the_config_file(stack: Stack, cli_env: dict[str, str]) -> None:
    result = run_cli("status", env={**cli_env, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert f"config: {cli_env['PROVENANCE_CONFIG']}" in result.stdout
    assert "ModelRegistry 0x" in result.stdout


def test_up_on_a_running_stack_is_a_no_op(stack: Stack) -> None:
    before = pids(stack)
    deployment = stack.config.deployment_file.read_text()
    messages: list[str] = []
    stack.up(messages.append)
    assert pids(stack) == before
    assert stack.config.deployment_file.read_text() == deployment
    assert any(m.startswith("chain: anvil already running") for m in messages)
    assert any(m.startswith("ipfs: kubo already running") for m in messages)
    assert any(m.startswith("contracts: ModelRegistry found at") for m in messages)


def test_down_then_up_keeps_contracts_and_chain_state(tmp_path: Path) -> None:
    config = config_at(write_stack_config(tmp_path))
    first = Stack(config, tools())
    first.up()
    try:
        started = pids(first)
        assert {"anvil", "ipfs"} <= started.keys()
        w3 = connect(config.chain.rpc_url)
        deployment = Deployment.read(config.deployment_file)
        assert deployment is not None
        address = deployment.contracts["ModelRegistry"].address
        registry = w3.eth.contract(address=address, abi=load_artifact("ModelRegistry").abi)
        registration = (b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, [], False)
        model_id = registry.functions.computeId(registration, dev_account(w3).address).call()
        tx = registry.functions.register(registration).build_transaction(
            {"from": dev_account(w3).address}
        )
        send(w3, dev_account(w3), dict(tx))
        assert registry.functions.statusOf(model_id).call() == 1
        time.sleep(config.chain.state_interval + 0.5)  # the state file is written periodically too
    finally:
        stopped = first.down()
    assert set(stopped) == set(started)
    assert not any(alive(pid) for pid in started.values())
    assert not list(first.run_dir.glob("*.json"))
    if "dockerd" in started:  # down leaves no mount and no runtime folder behind
        assert not os.path.ismount(config.state_dir / "docker" / "data")
        assert not first.docker_run_dir.exists()

    second = Stack(config, tools())
    messages: list[str] = []
    second.up(messages.append)
    try:
        assert f"contracts: ModelRegistry found at {address}" in messages
        again = Deployment.read(config.deployment_file)
        assert again == deployment
        w3 = connect(config.chain.rpc_url)
        registry = w3.eth.contract(address=address, abi=load_artifact("ModelRegistry").abi)
        assert registry.functions.statusOf(model_id).call() == 1
    finally:
        second.down()


def test_a_port_taken_by_another_program_is_refused_and_nothing_is_left_running(
    tmp_path: Path,
) -> None:
    config = config_at(write_stack_config(tmp_path))
    api_port = int(config.ipfs.api.rsplit(":", 1)[1])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", api_port))
        squatter.listen()
        stack = Stack(config, tools())
        with pytest.raises(PortInUseError) as info:
            stack.up()
    assert str(info.value) == (
        f"port {api_port} on 127.0.0.1, wanted for the IPFS API (kubo), is taken by another "
        "program; stop it or choose another port (PROVENANCE_IPFS_API)"
    )
    # anvil had started before kubo's port was checked: it must be gone again (looked up by
    # its state file, not its port: other processes on this machine may take a free port)
    assert not list(stack.run_dir.glob("*.json"))
    assert processes_mentioning(str(stack.anvil_state)) == []


def test_a_daemon_that_fails_to_start_shows_the_tail_of_its_log(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "anvil"
    fake.write_text("#!/bin/sh\necho 'starting'\necho 'fatal: state file is corrupt' >&2\nexit 3\n")
    fake.chmod(0o755)
    config = config_at(write_stack_config(tmp_path / "cfg"))
    stack = Stack(config, Tools(search_path=(fake_bin,), path_env=""))
    with pytest.raises(ServiceError) as info:
        stack.up()
    message = str(info.value)
    assert message.startswith("anvil exited with code 3 while starting; log ")
    assert message.endswith("starting | fatal: state file is corrupt")
    assert "\n" not in message
    assert not list(stack.run_dir.glob("*.json"))


def test_a_missing_program_is_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    config = config_at(write_stack_config(tmp_path / "cfg"))
    with pytest.raises(ServiceError) as info:
        Stack(config, Tools(search_path=(empty,), path_env=str(empty))).up()
    assert str(info.value) == f"anvil not found on PATH or in {empty}; run scripts/setup.sh"


def test_down_stops_only_what_up_started(tmp_path: Path) -> None:
    config = config_at(write_stack_config(tmp_path))
    stack = Stack(config, tools())
    stack.run_dir.mkdir(parents=True)
    other = subprocess.Popen(["sleep", "60"])
    try:
        # a stale pid file whose pid now belongs to another program
        stack.pidfile("anvil").write_text(json.dumps({"pid": other.pid, "argv": ["/x/anvil"]}))
        assert stack.down() == []
        assert other.poll() is None
        assert not stack.pidfile("anvil").exists()
    finally:
        other.kill()
        other.wait()


def test_unreachable_rpc_url_is_one_line_and_exit_1(cli_env: dict[str, str]) -> None:
    port = free_port()
    result = run_cli("deploy", "--rpc-url", f"http://127.0.0.1:{port}", env=cli_env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"error: chain RPC http://127.0.0.1:{port} is unreachable: connection refused or host "
        "unreachable"
    )


def test_deployment_file_for_another_chain_is_refused(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    Deployment(chain_id=5).write(path)
    w3 = connect(stack.config.chain.rpc_url)
    with pytest.raises(ConfigError) as info:
        ensure_deployed(w3, dev_account(w3), path)
    assert str(info.value) == (
        f"deployment file {path} is for chain 5, but the RPC serves chain 31337; use another "
        "state dir or --deployment file"
    )
    assert Deployment.read(path) == Deployment(chain_id=5)  # untouched


def test_configured_contract_address_without_code(
    stack: Stack, cli_env: dict[str, str], tmp_path: Path
) -> None:
    empty = "0x000000000000000000000000000000000000dEaD"
    w3 = connect(stack.config.chain.rpc_url)
    with pytest.raises(ConfigError) as info:
        ensure_deployed(
            w3, dev_account(w3), tmp_path / "d.json", configured={"ModelRegistry": empty}
        )
    assert (
        str(info.value) == f"configured ModelRegistry address {empty} holds no code on chain 31337"
    )
    result = run_cli("status", "--json", env={**cli_env, "PROVENANCE_REGISTRY": empty})
    assert result.returncode == 1
    contracts = json.loads(result.stdout)["contracts"]
    assert contracts["ok"] is False
    assert contracts["error"] == f"ModelRegistry at {empty} holds no code"


def test_configured_chain_id_differing_from_the_node(stack: Stack, cli_env: dict[str, str]) -> None:
    result = run_cli("status", "--json", env={**cli_env, "PROVENANCE_CHAIN_ID": "1"})
    assert result.returncode == 1
    chain = json.loads(result.stdout)["chain"]
    assert chain["ok"] is False
    assert chain["error"] == "chain id 31337 differs from the configured 1"


def test_deploy_with_an_encrypted_keystore(
    stack: Stack, cli_env: dict[str, str], tmp_path: Path
) -> None:
    w3 = connect(stack.config.chain.rpc_url)
    account = Account.create()
    keystore = tmp_path / "deployer.json"
    keystore.write_text(json.dumps(Account.encrypt(account.key, "s3cret", iterations=2)))
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    send(w3, dev_account(w3), {"to": account.address, "value": 10**18})
    target = tmp_path / "deployment.json"

    wrong = tmp_path / "wrong"
    wrong.write_text("nope")
    result = run_cli(
        "deploy", "--keystore", str(keystore), "--password-file", str(wrong),
        "--deployment", str(target), env=cli_env,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: cannot decrypt keystore {keystore}: MAC mismatch"
    assert not target.exists()

    result = run_cli(
        "deploy", "--keystore", str(keystore), "--password-file", str(password),
        "--deployment", str(target), "--allowlist", env=cli_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    deployment = Deployment.read(target)
    assert deployment is not None
    registry = deployment.contracts["ModelRegistry"]
    assert registry.deployer == account.address
    contract = w3.eth.contract(address=registry.address, abi=load_artifact("ModelRegistry").abi)
    assert contract.functions.openRegistration().call() is False

    again = run_cli(
        "deploy", "--keystore", str(keystore), "--password-file", str(password),
        "--deployment", str(target), env=cli_env,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert f"ModelRegistry already deployed at {registry.address}" in again.stdout
    assert Deployment.read(target) == deployment


def test_the_state_is_ours_alone_and_the_kubo_key_stays_private(stack: Stack) -> None:
    for folder in (stack.state_dir, stack.run_dir, stack.log_dir, stack.ipfs_repo):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    config = stack.ipfs_repo / "config"
    assert config.stat().st_mode & 0o777 == 0o600  # rewritten by up, still private
    assert "PrivKey" in config.read_text(encoding="utf-8")


def test_rewriting_a_readable_kubo_config_makes_it_private(tmp_path: Path) -> None:
    from provenance.stack import configure_kubo_repo

    config = tmp_path / "config"
    config.write_text(json.dumps({"Addresses": {}, "Identity": {"PrivKey": "k"}}))
    config.chmod(0o644)  # what an earlier version left behind
    configure_kubo_repo(
        tmp_path, api="/ip4/127.0.0.1/tcp/1", gateway="/ip4/127.0.0.1/tcp/2", swarm_port=0
    )
    assert config.stat().st_mode & 0o777 == 0o600
    assert json.loads(config.read_text())["Identity"] == {"PrivKey": "k"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"]


def test_anvil_answers_no_web_page(stack: Stack) -> None:
    """Its dev accounts are unlocked: a page on another origin must not be able to use them."""
    import httpx

    url = stack.config.chain.rpc_url
    origin = {"Origin": "http://attacker.test"}
    preflight = httpx.options(
        url,
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert "access-control-allow-origin" not in preflight.headers
    call = httpx.post(
        url,
        json={"jsonrpc": "2.0", "id": 1, "method": "eth_accounts", "params": []},
        headers=origin,
    )
    assert call.status_code == 200 and call.json()["result"]
    assert "access-control-allow-origin" not in call.headers


def chain_elsewhere_config(stack: Stack, folder: Path) -> Path:
    """A registrant's config for a chain this state dir does not run (as a testnet is): the
    session stack's chain and contracts by address, a fresh state dir, no IPFS API, no
    Docker engine named. (A remote chain can only be a loopback anvil here; what makes it
    "elsewhere" to `status` is that no `provenance up` of this state dir runs anything.)"""
    deployment = Deployment.read(stack.config.deployment_file)
    assert deployment is not None
    contracts = "\n".join(f'{k} = "{v.address}"' for k, v in deployment.contracts.items())
    folder.mkdir(parents=True)
    path = folder / "provenance.toml"
    path.write_text(
        f'state_dir = "state"\n\n[chain]\nrpc_url = "{stack.config.chain.rpc_url}"\n\n'
        f"[chain.contracts]\n{contracts}\n",
        encoding="utf-8",
    )
    return path


def test_status_on_a_chain_elsewhere_needs_no_docker_engine(
    stack: Stack, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Journey 6 (issue 15): `status` exited 1 on a testnet config because no Docker engine
    answered, though registering and verifying need none."""
    from .test_registry_cli import certificate

    system_docker = "unix:///var/run/docker.sock"

    path = chain_elsewhere_config(stack, tmp_path / "registrant")
    env = {**cli_env, "PROVENANCE_CONFIG": str(path)}
    result = run_cli("status", "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert {k: (report[k]["ok"], report[k]["required"]) for k in ("chain", "contracts")} == {
        "chain": (True, True),
        "contracts": (True, True),
    }
    assert report["ipfs"]["required"] is False  # storage is the local store
    assert report["ipfs"]["managed"] is False
    docker = report["docker"]
    assert (docker["required"], docker["managed"], docker["host"]) == (False, False, system_docker)
    if not Path(system_docker.removeprefix("unix://")).exists():  # this machine: no engine
        assert docker["ok"] is False
        assert docker["note"] == (
            "not required: registering and verifying need no engine; building, pushing and "
            "serving images do (start one, or set DOCKER_HOST)"
        )
        table = run_cli("status", env={**env, "COLUMNS": "400"})
        assert table.returncode == 0, table.stderr
        assert "not required: registering and verifying need no engine" in table.stdout

    # registering and reading back need no engine: one named that cannot answer changes nothing
    no_engine = {**env, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    registered = run_cli(
        "register", str(certificate(tmp_path, "Engineless")), "--json", env=no_engine
    )
    assert registered.returncode == 0, registered.stderr
    model_id = json.loads(registered.stdout)["id"]
    shown = run_cli("show", model_id, "--json", env=no_engine)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "active"

    # but an engine the configuration names must answer: then status fails, and says why
    result = run_cli("status", "--json", env=no_engine)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["docker"]["required"] is True
    assert report["docker"]["host"] == "unix:///nonexistent/docker.sock"
    assert report["docker"]["error"]


def test_status_of_an_auditor_with_only_a_gateway_probes_the_gateway(
    stack: Stack, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Journey 5 (issue 15): an auditor reads through `[ipfs] gateway` and runs no IPFS node;
    status checks that gateway (it must serve a verified block), not a kubo API."""
    path = chain_elsewhere_config(stack, tmp_path / "auditor")
    with path.open("a", encoding="utf-8") as f:
        f.write(f'\n[ipfs]\ngateway = "{stack.config.ipfs.gateway}"\n')
    env = {**cli_env, "PROVENANCE_CONFIG": str(path)}
    result = run_cli("status", "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    ipfs = json.loads(result.stdout)["ipfs"]
    assert (ipfs["ok"], ipfs["required"], ipfs["backend"]) == (True, True, "gateway")
    assert ipfs["endpoint"] == stack.config.ipfs.gateway

    gone = f"http://127.0.0.1:{free_port()}"
    result = run_cli("status", "--json", env={**env, "PROVENANCE_IPFS_GATEWAY": gone})
    assert result.returncode == 1
    ipfs = json.loads(result.stdout)["ipfs"]
    assert (ipfs["ok"], ipfs["required"], ipfs["endpoint"]) == (False, True, gone)
    assert ipfs["error"].startswith(f"IPFS gateway {gone}"), ipfs["error"]


README = Path(__file__).resolve().parents[2] / "README.md"


def _shape(text: str) -> list[str]:
    """Console lines with what differs between machines and runs made uniform: ports,
    versions, addresses, the dockerd socket and the state dir."""
    rules = (
        (r"unix:///\S+/docker\.sock", "SOCKET"),
        (r"0x[0-9a-fA-F]{40}", "ADDRESS"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:PORT"),
        (r"(kubo|dockerd) \S+ started", r"\1 VERSION started"),
        (r"state in \S+", "state in STATE"),
    )
    lines = []
    for line in text.strip().splitlines():
        for pattern, replacement in rules:
            line = re.sub(pattern, replacement, line)
        lines.append(line)
    return lines


def test_the_readme_up_and_down_console_block_is_what_the_cli_prints(tmp_path: Path) -> None:
    match = re.search(
        r"<!-- readme-test: stack-up -->\n```text\n(.*?)```", README.read_text(), re.S
    )
    assert match, "README has no text block marked readme-test: stack-up"
    expected: dict[str, list[str]] = {}
    for chunk in match.group(1).split("$ .venv/bin/provenance ")[1:]:
        command, _, output = chunk.partition("\n")
        expected[command] = _shape(output)
    path = write_stack_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVENANCE_", "DOCKER_HOST"))}
    env.update(PROVENANCE_CONFIG=str(path), COLUMNS="400")
    up = run_cli("up", env=env)
    try:
        assert up.returncode == 0, up.stderr
        printed = _shape(up.stdout)
        if any(line.startswith("✔ docker: using the system engine") for line in printed):
            pytest.skip("the system's Docker engine answers: the README shows a dockerd of its own")
        assert printed == expected["up"]
    finally:
        down = run_cli("down", env=env)
    assert down.returncode == 0, down.stderr
    assert _shape(down.stdout) == expected["down"]
