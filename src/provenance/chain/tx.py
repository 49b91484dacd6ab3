"""Sending transactions signed locally and waiting for their receipts."""

from __future__ import annotations

from typing import Any, cast

import requests
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import TimeExhausted, Web3Exception
from web3.types import TxParams, TxReceipt

from provenance.errors import ChainError


def send(
    w3: Web3,
    account: LocalAccount,
    tx: dict[str, Any],
    *,
    timeout: float = 120.0,
    what: str = "transaction",
) -> TxReceipt:
    """Fill in nonce, gas and fees, sign with ``account``, send, await the receipt."""
    params: dict[str, Any] = {"from": account.address, "chainId": w3.eth.chain_id, **tx}
    try:
        params.setdefault("nonce", w3.eth.get_transaction_count(account.address, "pending"))
        if "gas" not in params:
            params["gas"] = int(w3.eth.estimate_gas(cast(TxParams, params)) * 1.2) + 10_000
        if "maxFeePerGas" not in params and "gasPrice" not in params:
            base = w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0
            tip = w3.eth.max_priority_fee
            params["maxPriorityFeePerGas"] = tip
            params["maxFeePerGas"] = 2 * base + tip
        signed = account.sign_transaction(params)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)
    except TimeExhausted as exc:
        raise ChainError(f"{what}: no receipt within {timeout:.0f} s") from exc
    except (requests.RequestException, Web3Exception, ValueError) as exc:
        raise ChainError(f"{what} failed: {exc}") from exc
    if receipt["status"] != 1:
        raise ChainError(f"{what} reverted (tx {receipt['transactionHash'].hex()})")
    return receipt
