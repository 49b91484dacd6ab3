"""What the OutputAttestor's event log says: which nodes are authorised for which models, and
which outputs were attested.

    nodes = authorized_nodes(attestor, [model_id, *descendants])   # NodeAuthorized - Deauthorized
    batches = output_attestations(attestor, model_id)              # OutputsAttested, in order

Both read ``eth_getLogs`` (filtered by the indexed model id), from ``from_block`` (the
attestor's deployment block) to the head.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import requests
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3.exceptions import Web3Exception

from provenance.chain.attestor import AttestorContract
from provenance.errors import ChainError


@dataclass(frozen=True)
class NodeAuthorization:
    """``node`` may attest outputs of ``model_id`` made with ``model_digest`` in ``image_id``;
    granted in ``block`` by ``transaction``."""

    model_id: bytes
    node: str
    model_digest: bytes
    image_id: bytes
    block: int
    transaction: str

    def to_json(self) -> dict[str, Any]:
        return {
            "model": "0x" + self.model_id.hex(),
            "node": self.node,
            "model_digest": "sha256:" + self.model_digest.hex(),
            "image_id": "0x" + self.image_id.hex(),
            "block": self.block,
            "transaction": self.transaction,
        }


@dataclass(frozen=True)
class OutputAttestation:
    """One ``OutputsAttested`` event: ``count`` outputs of ``model_id`` under ``root``."""

    root: bytes
    model_id: bytes
    node: str
    first_sequence: int
    count: int
    timestamp: int
    block: int
    transaction: str

    def to_json(self) -> dict[str, Any]:
        return {
            "root": "0x" + self.root.hex(),
            "model": "0x" + self.model_id.hex(),
            "node": self.node,
            "first_sequence": self.first_sequence,
            "count": self.count,
            "timestamp": self.timestamp,
            "block": self.block,
            "transaction": self.transaction,
        }


def _logs(attestor: AttestorContract, topics: list[Any], from_block: int) -> list[Any]:
    try:
        logs = attestor.w3.eth.get_logs(
            {
                "address": attestor.address,
                "fromBlock": from_block,
                "toBlock": "latest",
                "topics": topics,
            }
        )
    except (requests.RequestException, Web3Exception, OSError) as exc:
        raise ChainError(
            f"{attestor.name} at {attestor.address}: the chain RPC failed: {exc}"
        ) from exc
    return sorted(logs, key=lambda log: (int(log["blockNumber"]), int(log["logIndex"])))


def authorized_nodes(
    attestor: AttestorContract, model_ids: Iterable[bytes] | None, *, from_block: int = 0
) -> list[NodeAuthorization]:
    """The nodes authorised now for any of ``model_ids`` (for every model when None): every
    ``NodeAuthorized`` not followed by a ``NodeDeauthorized`` of the same (model, node); by
    model (in the order given, else of the first grant), then grant order."""
    wanted = None if model_ids is None else list(dict.fromkeys(model_ids))
    if wanted == []:
        return []
    events = attestor.contract.events
    granted, withdrawn = events.NodeAuthorized(), events.NodeDeauthorized()
    topics: list[Any] = [[granted.topic, withdrawn.topic]]
    if wanted is not None:
        topics.append([HexBytes(m) for m in wanted])
    current: dict[tuple[bytes, str], NodeAuthorization] = {}
    for log in _logs(attestor, topics, from_block):
        if HexBytes(log["topics"][0]) == HexBytes(granted.topic):
            args = granted.process_log(log)["args"]
            auth = NodeAuthorization(
                model_id=bytes(args["modelId"]),
                node=to_checksum_address(args["node"]),
                model_digest=bytes(args["modelDigest"]),
                image_id=bytes(args["imageId"]),
                block=int(log["blockNumber"]),
                transaction="0x" + bytes(log["transactionHash"]).hex(),
            )
            current.pop((auth.model_id, auth.node), None)  # a re-grant moves to the end
            current[(auth.model_id, auth.node)] = auth
        else:
            args = withdrawn.process_log(log)["args"]
            current.pop((bytes(args["modelId"]), to_checksum_address(args["node"])), None)
    if wanted is None:
        wanted = list(dict.fromkeys(a.model_id for a in sorted(current.values(), key=_granted)))
    rank = {m: i for i, m in enumerate(wanted)}
    return sorted(current.values(), key=lambda a: rank[a.model_id])


def _granted(auth: NodeAuthorization) -> int:
    return auth.block


def output_attestations(
    attestor: AttestorContract, model_id: bytes, *, from_block: int = 0
) -> list[OutputAttestation]:
    """Every batch of outputs attested for ``model_id``, in chain order."""
    event = attestor.contract.events.OutputsAttested()
    found = []
    for log in _logs(attestor, [event.topic, None, HexBytes(model_id)], from_block):
        args = event.process_log(log)["args"]
        found.append(
            OutputAttestation(
                root=bytes(args["root"]),
                model_id=bytes(args["modelId"]),
                node=to_checksum_address(args["node"]),
                first_sequence=int(args["firstSequence"]),
                count=int(args["count"]),
                timestamp=int(args["timestamp"]),
                block=int(log["blockNumber"]),
                transaction="0x" + bytes(log["transactionHash"]).hex(),
            )
        )
    return found


__all__ = ["NodeAuthorization", "OutputAttestation", "authorized_nodes", "output_attestations"]
