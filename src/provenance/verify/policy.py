"""The trust roots of verification: which chain, which ModelRegistry and OutputAttestor, whose
registrations are vouched for, where training data comes from, and how long and how much to
fetch. They come from the verifier's configuration (``[chain]``, ``[chain.contracts]``, the
deployment file, ``[trust]``) and its command-line flags, never from what is being verified: a
receipt names a contract and a chain id, and both must be the policy's.

    policy = policy_from_config(config, trust=["0xA11ce..."])
    Verifier(policy, registry=registry, storage=kubo).model(model_id)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from eth_utils.address import is_address, to_checksum_address

from provenance.certificate import MAX_BODY_SIZE
from provenance.errors import ConfigError

if TYPE_CHECKING:
    from provenance.config import Config

DEFAULT_FETCH_TIMEOUT = 10.0
"""Seconds to wait for content the IPFS node does not hold (it may be fetched from peers)."""

MAX_RECEIPT_BYTES = 1 << 20
"""The largest receipt (or /predict answer) file read."""


def checksummed(addresses: Iterable[str], what: str = "address") -> frozenset[str]:
    """Checksummed addresses; ConfigError naming the first that is not one."""
    found = []
    for address in addresses:
        if not isinstance(address, str) or not is_address(address):
            raise ConfigError(f"{what} {address!r} is not an Ethereum address")
        found.append(to_checksum_address(address))
    return frozenset(found)


def _address(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    (one,) = checksummed([value], what)
    return one


@dataclass(frozen=True)
class Policy:
    """What a verifier trusts (frozen; build it with :func:`policy_from_config`).

    ``chain_id``: the chain the RPC must serve and receipts must name (None: no chain known,
    then every on-chain check of a receipt fails). ``registry`` / ``attestor``: the trusted
    ModelRegistry and OutputAttestor (an attestor of None fails every on-chain receipt check).
    ``registrants``: when given, the only registrants a verified model may have (else, in an
    allowlisted registry, REGISTRANT_ROLE vouches; in an open one it is a warning).
    ``creators``: when not empty, the only certificate creators accepted. ``data_sources``:
    a dataset's name in the certificate -> its source. ``fetch_data``: fetch published
    training data from IPFS to recompute it. ``oms_keys``: the PEM public keys (P-256/P-384)
    whose OMS signatures of model files are trusted."""

    chain_id: int | None
    registry: str | None
    attestor: str | None = None
    registrants: frozenset[str] | None = None
    creators: frozenset[str] = frozenset()
    sources: tuple[tuple[str, Path], ...] = ()
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT
    fetch_data: bool = True
    max_certificate_bytes: int = MAX_BODY_SIZE
    max_receipt_bytes: int = MAX_RECEIPT_BYTES
    oms_keys: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "registry", _address(self.registry, "ModelRegistry"))
        object.__setattr__(self, "attestor", _address(self.attestor, "OutputAttestor"))
        if self.registrants is not None:
            object.__setattr__(
                self, "registrants", checksummed(self.registrants, "trusted registrant")
            )
        object.__setattr__(self, "creators", checksummed(self.creators, "trusted creator"))
        if self.fetch_timeout <= 0:
            raise ConfigError(f"the fetch timeout must be positive, not {self.fetch_timeout}")

    @property
    def data_sources(self) -> dict[str, Path]:
        return dict(self.sources)


def policy_from_config(
    config: Config,
    *,
    trust: Iterable[str] = (),
    chain_id: int | None = None,
    registry: str | None = None,
    attestor: str | None = None,
    data_sources: Mapping[str, Path] | None = None,
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
    fetch_data: bool = True,
    oms_keys: Iterable[Path] = (),
) -> Policy:
    """The policy of ``config`` and command-line flags: the chain id (a flag, ``[chain]
    chain_id`` when set, else the deployment file's), the ModelRegistry and OutputAttestor (a
    flag, ``[chain.contracts]``, else the deployment file, when it is for that chain), the
    trusted registrants (``--trust`` flags and ``[trust] registrants``) and creators, and the
    trusted OMS public keys (``oms_keys`` flags and ``[trust] oms_keys``)."""
    from provenance.chain.deploy import Deployment
    from provenance.export.oms import load_public_key

    deployment = Deployment.read(config.deployment_file)
    if chain_id is None:
        if "chain_id" in config.chain.model_fields_set or deployment is None:
            chain_id = config.chain.chain_id
        else:
            chain_id = deployment.chain_id
    usable = deployment if deployment is not None and deployment.chain_id == chain_id else None

    def contract(name: str, flag: str | None) -> str | None:
        if flag is not None:
            return flag
        if name in config.chain.contracts:
            return config.chain.contracts[name]
        if usable is not None and name in usable.contracts:
            return usable.contracts[name].address
        return None

    registrants = [*trust, *config.trust.registrants]
    return Policy(
        chain_id=chain_id,
        registry=contract("ModelRegistry", registry),
        attestor=contract("OutputAttestor", attestor),
        registrants=checksummed(registrants, "trusted registrant") if registrants else None,
        creators=frozenset(config.trust.creators),
        sources=tuple(sorted((data_sources or {}).items())),
        fetch_timeout=fetch_timeout,
        fetch_data=fetch_data,
        oms_keys=tuple(load_public_key(p) for p in [*oms_keys, *config.trust.oms_keys]),
    )


__all__ = ["DEFAULT_FETCH_TIMEOUT", "Policy", "checksummed", "policy_from_config"]
