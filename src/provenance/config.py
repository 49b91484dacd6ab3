"""Configuration: one TOML file, overridden by environment variables.

The file is found in this order: an explicit path (``--config``), ``PROVENANCE_CONFIG``,
``./provenance.toml``, then ``<user config dir>/provenance/config.toml``; with none, defaults
apply. Environment variables override the file:

=============================  ===============================
``PROVENANCE_STATE_DIR``       ``state_dir``
``PROVENANCE_RPC_URL``         ``[chain] rpc_url``
``PROVENANCE_CHAIN_ID``        ``[chain] chain_id``
``PROVENANCE_KEYSTORE``        ``[chain] keystore``
``PROVENANCE_DEPLOYMENT``      ``[chain] deployment``
``PROVENANCE_REGISTRY``        ``[chain.contracts] ModelRegistry``
``PROVENANCE_ATTESTOR``        ``[chain.contracts] OutputAttestor``
``PROVENANCE_IPFS_API``        ``[ipfs] api``
``PROVENANCE_IPFS_GATEWAY``    ``[ipfs] gateway``
``PROVENANCE_IPFS_AUTH``       ``[ipfs] auth`` (an Authorization header value)
``PROVENANCE_IPFS_BACKEND``    ``[ipfs] backend``: ``auto``, ``kubo`` or ``local``
``PROVENANCE_IPFS_STORE``      ``[ipfs] store`` (the local store's folder)
``DOCKER_HOST``                ``[docker] host``
=============================  ===============================

``[limits]`` bounds what untrusted content may make this machine do: ``max_download_bytes``
(bytes one download or extraction writes), ``max_entries`` (files and folders it creates) and
``max_depth`` (folder nesting), see :class:`provenance.untrusted.Limits`.

Content storage (``provenance ipfs ...``) goes to a kubo node or to the embedded local store
(``[ipfs] store``, default ``<state_dir>/blocks``). ``backend = "auto"`` (the default) means
kubo when ``[ipfs] api`` is set explicitly, in the file or by ``PROVENANCE_IPFS_API``, or when
the local stack (``provenance up``) runs kubo, and the local store otherwise: a machine with no
IPFS node stores locally, and CIDs are the same either way. ``kubo`` or ``local`` forces one.

``[trust]`` holds the verifier's trust roots besides the chain id and contract addresses:
``registrants = ["0x..."]`` (whose models ``provenance verify`` vouches for and ``provenance
serve`` loads) and ``creators``; addresses are validated and checksummed
(:func:`provenance.verify.policy.policy_from_config` turns the config into a Policy).

Keys never live here: a keystore *path* may, the key itself comes from an encrypted keystore
(or, on the local dev chain only, anvil's dev accounts).

This module reads the mapping it is given; it never looks at ``os.environ`` itself.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import platformdirs
from eth_utils.address import is_address, to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from provenance.errors import ConfigError
from provenance.untrusted import Limits, UntrustedInputError, toml_depth_check

APP = "provenance"
LOCAL_CHAIN_ID = 31337
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_DEPTH = 32


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


class ChainSettings(_Section):
    rpc_url: str = "http://127.0.0.1:8545"
    chain_id: Annotated[int, Field(gt=0)] = LOCAL_CHAIN_ID
    keystore: Path | None = None
    deployment: Path | None = None
    state_interval: Annotated[int, Field(ge=1, le=3600)] = 2
    open_registration: bool = True
    contracts: dict[str, str] = Field(default_factory=dict)

    _url = field_validator("rpc_url")(_check_http_url)

    @field_validator("contracts")
    @classmethod
    def _addresses(cls, value: dict[str, str]) -> dict[str, str]:
        for name, address in value.items():
            if not (address.startswith("0x") and len(address) == 42):
                raise ValueError(f"contract {name}: {address!r} is not a 20-byte 0x address")
            int(address, 16)
        return value


class IpfsSettings(_Section):
    api: str = "http://127.0.0.1:5001"
    gateway: str = "http://127.0.0.1:8080"
    swarm_port: Annotated[int, Field(ge=0, le=65535)] = 4001
    auth: str | None = None
    timeout: Annotated[float, Field(gt=0)] = 60.0
    backend: Literal["auto", "kubo", "local"] = "auto"
    store: Path | None = None

    _url = field_validator("api", "gateway")(_check_http_url)


def _check_addresses(values: tuple[str, ...]) -> tuple[str, ...]:
    for address in values:
        if not is_address(address):
            raise ValueError(f"{address!r} is not an Ethereum address (0x and 40 hex digits)")
    return tuple(to_checksum_address(a) for a in values)


class TrustSettings(_Section):
    """The trust roots a verifier (and ``provenance serve``) starts from, besides the chain id
    and contract addresses of ``[chain]``: the registrants whose models are vouched for, and
    the creators whose certificates are (empty: any creator the registrant stands for)."""

    registrants: tuple[str, ...] = ()
    creators: tuple[str, ...] = ()
    oms_keys: tuple[Path, ...] = ()
    """PEM public keys (P-256/P-384) whose OMS signatures beside model files are trusted."""

    _addresses = field_validator("registrants", "creators")(_check_addresses)


class DockerSettings(_Section):
    # None: use the system engine when it answers, else start a dockerd of our own.
    host: str | None = None


class LimitsSettings(_Section):
    """``[limits]``: see :class:`provenance.untrusted.Limits` (the defaults are its)."""

    max_download_bytes: Annotated[int, Field(gt=0, strict=True)] = Limits.max_download_bytes
    max_entries: Annotated[int, Field(gt=0, strict=True)] = Limits.max_entries
    max_depth: Annotated[int, Field(gt=0, le=4096, strict=True)] = Limits.max_depth

    @property
    def value(self) -> Limits:
        return Limits(self.max_download_bytes, self.max_entries, self.max_depth)


class Config(_Section):
    """The resolved configuration; ``source`` is the TOML file it came from, if any."""

    source: Path | None = None
    state_dir: Path
    chain: ChainSettings = Field(default_factory=ChainSettings)
    ipfs: IpfsSettings = Field(default_factory=IpfsSettings)
    docker: DockerSettings = Field(default_factory=DockerSettings)
    trust: TrustSettings = Field(default_factory=TrustSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)

    @property
    def deployment_file(self) -> Path:
        return self.chain.deployment or self.state_dir / "deployment.json"

    @property
    def ipfs_backend(self) -> Literal["kubo", "local"]:
        """The storage backend in force: ``[ipfs] backend``, or for ``auto``, kubo when
        ``[ipfs] api`` was set explicitly and the local store otherwise."""
        if self.ipfs.backend != "auto":
            return self.ipfs.backend
        return "kubo" if "api" in self.ipfs.model_fields_set else "local"

    @property
    def ipfs_store(self) -> Path:
        """The local store's folder."""
        return self.ipfs.store or self.state_dir / "blocks"


_ENV: dict[str, tuple[str, ...]] = {
    "PROVENANCE_STATE_DIR": ("state_dir",),
    "PROVENANCE_RPC_URL": ("chain", "rpc_url"),
    "PROVENANCE_CHAIN_ID": ("chain", "chain_id"),
    "PROVENANCE_KEYSTORE": ("chain", "keystore"),
    "PROVENANCE_DEPLOYMENT": ("chain", "deployment"),
    "PROVENANCE_REGISTRY": ("chain", "contracts", "ModelRegistry"),
    "PROVENANCE_ATTESTOR": ("chain", "contracts", "OutputAttestor"),
    "PROVENANCE_IPFS_API": ("ipfs", "api"),
    "PROVENANCE_IPFS_GATEWAY": ("ipfs", "gateway"),
    "PROVENANCE_IPFS_AUTH": ("ipfs", "auth"),
    "PROVENANCE_IPFS_BACKEND": ("ipfs", "backend"),
    "PROVENANCE_IPFS_STORE": ("ipfs", "store"),
    "DOCKER_HOST": ("docker", "host"),
}


def find_config_file(environ: Mapping[str, str], cwd: Path, explicit: Path | None) -> Path | None:
    """The TOML file to read, or None when there is none (defaults apply)."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist")
        return explicit
    if env_path := environ.get("PROVENANCE_CONFIG"):
        path = Path(env_path)
        if not path.is_file():
            raise ConfigError(f"PROVENANCE_CONFIG points at {path}, which does not exist")
        return path
    for candidate in (cwd / "provenance.toml", platformdirs.user_config_path(APP) / "config.toml"):
        if candidate.is_file():
            return candidate
    return None


def load_config(
    environ: Mapping[str, str],
    *,
    cwd: Path,
    explicit: Path | None = None,
) -> Config:
    """Read the TOML file (if any), apply environment overrides, validate."""
    source = find_config_file(environ, cwd, explicit)
    data: dict[str, Any] = {}
    if source is not None:
        try:
            raw = source.read_bytes()
            if len(raw) > MAX_CONFIG_BYTES:
                raise ConfigError(
                    f"config file {source} has {len(raw)} bytes; at most {MAX_CONFIG_BYTES}"
                )
            text = raw.decode("utf-8")
            toml_depth_check(text, MAX_CONFIG_DEPTH, f"config file {source}")
            data = tomllib.loads(text)
        except UntrustedInputError as exc:
            raise ConfigError(str(exc)) from None
        except RecursionError:
            raise ConfigError(f"config file {source} is nested too deeply") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {source} is not UTF-8 (byte {exc.start})") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {source}: {exc}") from exc
        except ValueError as exc:  # e.g. an integer of more than 4300 digits
            raise ConfigError(f"cannot read config file {source}: {exc}") from None
    origin = f"config file {source}" if source else "configuration"
    for section in ("chain", "ipfs", "docker", "limits"):
        if section in data and not isinstance(data[section], dict):
            raise ConfigError(f"{origin}: [{section}] must be a table")
    chain_section = data.get("chain")
    if isinstance(chain_section, dict) and not isinstance(chain_section.get("contracts", {}), dict):
        raise ConfigError(f"{origin}: [chain.contracts] must be a table")
    for var, keys in _ENV.items():
        value = environ.get(var)
        if value:
            node = data
            for key in keys[:-1]:
                node = node.setdefault(key, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"{var} cannot set {'.'.join(keys)}: {key} is not a table")
            node[keys[-1]] = value
    data.setdefault("state_dir", str(platformdirs.user_state_path(APP)))
    base = source.parent if source is not None else cwd
    data["state_dir"] = _resolve(base, data["state_dir"])
    chain = data.get("chain", {})
    for key in ("keystore", "deployment"):
        if chain.get(key):
            chain[key] = _resolve(base, chain[key])
    trust = data.get("trust", {})
    if isinstance(trust, dict) and isinstance(trust.get("oms_keys"), list):
        trust["oms_keys"] = [_resolve(base, key) for key in trust["oms_keys"]]
    ipfs = data.get("ipfs", {})
    if isinstance(ipfs, dict) and ipfs.get("store"):
        ipfs["store"] = _resolve(base, ipfs["store"])
    data["source"] = source
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{origin}: {where}: {first['msg']}") from None


def _resolve(base: Path, value: str | Path) -> Path:
    if not isinstance(value, str | Path):
        raise ConfigError(f"a path in the configuration must be a string, not {value!r:.60}")
    if "\0" in str(value):
        raise ConfigError(f"a path in the configuration contains a NUL byte: {str(value)!r:.60}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def is_loopback_url(url: str) -> bool:
    """True when ``url``'s host is ``localhost`` or an IP literal in 127.0.0.0/8 or ``::1``
    (``127.evil.com`` is a name anyone can point anywhere, not a loopback address)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_port(url: str) -> int:
    parts = urlsplit(url)
    if parts.port is not None:
        return parts.port
    return 443 if parts.scheme == "https" else 80
