"""Transactions signed locally, sent from one account by many threads, awaited with a timeout.

:class:`Transactor` estimates gas outside any lock (a revert surfaces there and is decoded into
a :class:`~provenance.errors.ContractRevertError`), then assigns the nonce, signs and sends
under one lock, so threads sharing an account never reuse or skip a nonce; receipts are awaited
outside the lock. Signing uses eth-account, whose secp256k1 backend is coincurve when installed.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, cast

import requests
from eth_abi.abi import decode
from eth_account.signers.local import LocalAccount
from eth_typing import ABIError
from eth_utils.abi import function_abi_to_4byte_selector
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, TimeExhausted, Web3Exception
from web3.types import TxParams, TxReceipt

from provenance.errors import ChainError, ContractRevertError

Abi = Sequence[dict[str, Any]]


def decode_revert(data: str | bytes, abi: Abi, contract: str) -> ContractRevertError | None:
    """The custom error encoded in revert ``data``, decoded with ``abi``; None if unknown."""
    raw = (
        bytes.fromhex(data[2:] if data.startswith("0x") else data)
        if isinstance(data, str)
        else data
    )
    if len(raw) < 4:
        return None
    for entry in abi:
        if entry.get("type") != "error":
            continue
        if function_abi_to_4byte_selector(cast(ABIError, entry)) != raw[:4]:
            continue
        inputs = entry.get("inputs", [])
        values = decode([_abi_type(i) for i in inputs], raw[4:])
        args = {
            i["name"] or f"arg{n}": _show(i["type"], v)
            for n, (i, v) in enumerate(zip(inputs, values, strict=True))
        }
        return ContractRevertError(contract, entry["name"], args)
    return None


def _abi_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return str(param["type"])


def _show(abi_type: str, value: Any) -> Any:
    if abi_type.startswith("bytes") and isinstance(value, bytes):
        return "0x" + value.hex()
    if abi_type == "address":
        return to_checksum_address(value)
    return value


def revert_data(exc: BaseException) -> str | None:
    """The raw revert data carried by a web3 exception, when it has any."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    return data if isinstance(data, str) and data.startswith("0x") else None


class Transactor:
    """Sends transactions from one local account; safe to share between threads."""

    def __init__(
        self,
        w3: Web3,
        account: LocalAccount,
        *,
        receipt_timeout: float = 120.0,
        gas_margin: float = 1.2,
    ) -> None:
        self.w3 = w3
        self.account = account
        self.receipt_timeout = receipt_timeout
        self.gas_margin = gas_margin
        self._lock = threading.Lock()
        self._next_nonce: int | None = None
        self._chain_id: int | None = None

    @property
    def address(self) -> str:
        return str(self.account.address)

    @property
    def chain_id(self) -> int:
        """The chain's id, read once: an RPC endpoint does not change chains under a running
        client (every transaction is signed for it, so a node on another chain refuses them)."""
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    def send(
        self,
        tx: dict[str, Any],
        *,
        what: str = "transaction",
        abi: Abi = (),
        contract: str = "contract",
    ) -> TxReceipt:
        """Estimate, sign, send and await ``tx``; reverts raise ContractRevertError."""
        w3 = self.w3
        params: dict[str, Any] = {"from": self.address, **tx}
        params.pop("nonce", None)
        try:
            params["chainId"] = self.chain_id
            if "gas" not in params:
                estimate = w3.eth.estimate_gas(cast(TxParams, params))
                params["gas"] = int(estimate * self.gas_margin) + 5_000
            if "maxFeePerGas" not in params and "gasPrice" not in params:
                base = w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0
                tip = w3.eth.max_priority_fee
                params["maxPriorityFeePerGas"] = tip
                params["maxFeePerGas"] = 2 * base + tip
            with self._lock:
                tx_hash = self._send_locked(params)
            receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.receipt_timeout)
        except ContractCustomError as exc:
            raise self._revert(exc, abi, contract, what) from exc
        except ContractLogicError as exc:
            raise self._revert(exc, abi, contract, what) from exc
        except TimeExhausted as exc:
            raise ChainError(f"{what}: no receipt within {self.receipt_timeout:.0f} s") from exc
        except (requests.RequestException, Web3Exception, ValueError, OSError) as exc:
            raise ChainError(f"{what} failed: {exc}") from exc
        if receipt["status"] != 1:
            raise self._mined_revert(params, receipt, abi, contract, what)
        return receipt

    def _send_locked(self, params: dict[str, Any]) -> Any:
        """Assign the next nonce, sign, send. A nonce the node refuses (another client used
        this account meanwhile) resynchronises from the node and is tried once more."""
        for attempt in (1, 2):
            if self._next_nonce is None:
                self._next_nonce = self.w3.eth.get_transaction_count(
                    self.account.address, "pending"
                )
            params["nonce"] = self._next_nonce
            signed = self.account.sign_transaction(params)
            try:
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            except (Web3Exception, ValueError) as exc:
                self._next_nonce = None
                if attempt == 1 and "nonce" in str(exc).lower():
                    continue
                raise
            except BaseException:
                self._next_nonce = None
                raise
            self._next_nonce += 1
            return tx_hash
        raise AssertionError("unreachable")

    def _revert(self, exc: Web3Exception, abi: Abi, contract: str, what: str) -> ChainError:
        data = revert_data(exc)
        if data is not None and (decoded := decode_revert(data, abi, contract)) is not None:
            return decoded
        return ChainError(f"{what} reverted: {exc}")

    def _mined_revert(
        self, params: dict[str, Any], receipt: TxReceipt, abi: Abi, contract: str, what: str
    ) -> ChainError:
        """Replay a transaction that reverted after mining to learn its error."""
        call = {k: params[k] for k in ("from", "to", "data", "value") if k in params}
        try:
            self.w3.eth.call(cast(TxParams, call), block_identifier=receipt["blockNumber"] - 1)
        except (ContractCustomError, ContractLogicError) as exc:
            return self._revert(exc, abi, contract, what)
        except (requests.RequestException, Web3Exception, ValueError):
            pass
        return ChainError(f"{what} reverted (tx 0x{bytes(receipt['transactionHash']).hex()})")


def send(
    w3: Web3,
    account: LocalAccount,
    tx: dict[str, Any],
    *,
    timeout: float = 120.0,
    what: str = "transaction",
) -> TxReceipt:
    """One transaction from ``account`` (a fresh Transactor; for scripts and deployment)."""
    return Transactor(w3, account, receipt_timeout=timeout).send(tx, what=what)
