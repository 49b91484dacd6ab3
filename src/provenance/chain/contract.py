"""What every contract client shares: the packaged ABI, reads that decode custom errors, and
writes through a :class:`~provenance.chain.tx.Transactor`."""

from __future__ import annotations

from typing import Any

import requests
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError, Web3Exception

from provenance.chain.artifacts import load_artifact
from provenance.chain.tx import Transactor, decode_revert, revert_data
from provenance.errors import ChainError


class ContractClient:
    """The deployed contract ``name`` at ``address``; writes need a :class:`Transactor`."""

    def __init__(self, name: str, w3: Web3, address: str, transactor: Transactor | None) -> None:
        self.name = name
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.transactor = transactor
        self.abi = load_artifact(name).abi
        self.contract: Contract = w3.eth.contract(address=self.address, abi=self.abi)

    def _call(self, fn: Any) -> Any:
        """A read; reverts raise ContractRevertError, RPC failures ChainError."""
        try:
            return fn.call()
        except (ContractCustomError, ContractLogicError) as exc:
            data = revert_data(exc)
            decoded = decode_revert(data, self.abi, self.name) if data else None
            raise decoded or ChainError(f"{self.name} call failed: {exc}") from exc
        except (requests.RequestException, Web3Exception, OSError) as exc:
            raise ChainError(f"{self.name} at {self.address}: the chain RPC failed: {exc}") from exc

    def _tx(self) -> Transactor:
        if self.transactor is None:
            raise ChainError(
                f"this {type(self).__name__} was built without a Transactor; it can only read"
            )
        return self.transactor

    def _send(self, fn: Any, what: str) -> Any:
        """A write, estimated, signed and awaited by the transactor."""
        tx = self._tx()
        # the chain id the transactor read once, not web3's eth_chainId call per transaction
        built = fn.build_transaction({"from": tx.address, "gas": 0, "chainId": tx.chain_id})
        built.pop("gas")
        return tx.send(dict(built), what=what, abi=self.abi, contract=self.name)
