"""The checks of an output receipt against the policy's trust roots.

- ``receipt``: offline, the digests of the given input and output, the record inside its batch
  (Merkle proof) and the batch's sequence range, the node's EIP-712 signature over the batch;
- ``receipt-chain``: the receipt names the policy's chain id, and the RPC serves it;
- ``receipt-contract``: the receipt names the policy's OutputAttestor (a receipt names its
  own contract: asking that contract would let anyone who deploys one vouch for anything);
- ``receipt-anchored``: an OutputsAttested event on the policy's attestor matches the batch
  exactly: root, model id, node, first sequence, count, timestamp (and the block and
  transaction when the receipt names them);
- ``node-authorised``: the node was authorised for that model and the receipt's model digest
  just before the anchoring event, replayed from the NodeAuthorized/NodeDeauthorized events
  (no historical state is read);
- ``receipt-model``: the receipt's model digest is the one registered (ModelRegistered on the
  policy's registry).

Every failure is a failed required check. That the model was revoked after the anchoring is a
warning (:func:`revoked_after_anchoring`): the output was attested while it was active.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from eth_utils.address import is_address, to_checksum_address

from provenance.attest import Receipt, verify_receipt_offline
from provenance.errors import ConfigError, IntegrityError, PolicyError, ProvenanceError
from provenance.verify.report import Check, CheckName, Checks, CheckStatus, digest_text

if TYPE_CHECKING:
    from provenance.chain.attestor import AnchoredBatch, AttestorContract
    from provenance.verify.context import RegistryView
    from provenance.verify.policy import Policy


def _h(raw: bytes) -> str:
    return "0x" + raw.hex()


def offline_check(
    c: Checks,
    receipt: Receipt,
    input_data: bytes | None,
    output_data: bytes | None,
    *,
    input_digest: bytes | None = None,
    output_digest: bytes | None = None,
    model_id: bytes | None = None,
) -> None:
    """``receipt``: the given input and output (raw bytes, hashed as they are) or their
    SHA-256 digests match the record's, the record is the expected ``model_id``'s (when given),
    and the receipt holds together (Merkle proof, sequence range, node signature)."""
    try:
        _expected(receipt, input_digest, output_digest, model_id)
        verify_receipt_offline(receipt, input_data=input_data, output_data=output_data)
    except IntegrityError as exc:
        c.fail(CheckName.RECEIPT, str(exc), IntegrityError)
        return
    given = [
        w
        for w, d, h in (("input", input_data, input_digest), ("output", output_data, output_digest))
        if d is not None or h is not None
    ]
    digests = f"the {' and '.join(given)} match(es) its digests; " if given else ""
    model = f"model 0x{model_id.hex()} as expected; " if model_id is not None else ""
    c.ok(
        CheckName.RECEIPT,
        f"{digests}{model}output {receipt.record.sequence} is in the batch (Merkle proof) signed "
        f"by node {receipt.node}",
    )


def _expected(
    receipt: Receipt,
    input_digest: bytes | None,
    output_digest: bytes | None,
    model_id: bytes | None,
) -> None:
    r = receipt.record
    if model_id is not None and r.model_id != model_id:
        raise IntegrityError(
            f"the receipt is for model {_h(r.model_id)}, not the expected {_h(model_id)}"
        )
    if input_digest is not None and input_digest != r.input_digest:
        raise IntegrityError(
            f"the input digest {digest_text(input_digest)} is not the receipt's "
            f"{_h(r.input_digest)}"
        )
    if output_digest is not None and output_digest != r.output_digest:
        raise IntegrityError(
            f"the output digest {digest_text(output_digest)} is not the receipt's "
            f"{_h(r.output_digest)}"
        )


def trust_checks(
    c: Checks, receipt: Receipt, policy: Policy, rpc_chain_id: int | None = None
) -> bool:
    """``receipt-chain`` and ``receipt-contract`` (offline too: the policy is configuration).
    True when both passed."""
    ok = True
    if policy.chain_id is None:
        c.fail(CheckName.RECEIPT_CHAIN, "no trusted chain id is configured", ConfigError)
        ok = False
    elif receipt.chain_id != policy.chain_id:
        c.fail(
            CheckName.RECEIPT_CHAIN,
            f"the receipt is for chain {receipt.chain_id}, the trusted chain is {policy.chain_id}",
            PolicyError,
        )
        ok = False
    elif rpc_chain_id is not None and rpc_chain_id != policy.chain_id:
        c.fail(
            CheckName.RECEIPT_CHAIN,
            f"the RPC serves chain {rpc_chain_id}, the trusted chain is {policy.chain_id}",
            ConfigError,
        )
        ok = False
    else:
        c.ok(CheckName.RECEIPT_CHAIN, f"for the trusted chain {policy.chain_id}")
    if policy.attestor is None:
        c.fail(
            CheckName.RECEIPT_CONTRACT,
            f"the receipt names OutputAttestor {receipt.contract}, but no OutputAttestor is "
            "trusted: set [chain.contracts] OutputAttestor, deploy one (provenance up), or "
            "pass --attestor",
            PolicyError,
        )
        return False
    named = to_checksum_address(receipt.contract) if is_address(receipt.contract) else None
    if named != policy.attestor:
        c.fail(
            CheckName.RECEIPT_CONTRACT,
            f"the receipt names OutputAttestor {receipt.contract}, not the trusted "
            f"{policy.attestor}",
            PolicyError,
        )
        return False
    c.ok(CheckName.RECEIPT_CONTRACT, f"anchored on the trusted OutputAttestor {policy.attestor}")
    return ok


def chain_checks(
    c: Checks,
    receipt: Receipt,
    policy: Policy,
    registry: RegistryView | None,
    attestor: AttestorContract | None,
) -> dict[str, Any]:
    """The trust checks, then the on-chain ones on the policy's attestor and registry (a
    missing attestor or chain connection fails them). Facts for a report."""
    rpc = None if attestor is None else int(attestor.w3.eth.chain_id)
    trusted = trust_checks(c, receipt, policy, rpc)
    facts: dict[str, Any] = {}
    if attestor is None or registry is None:
        c.fail(
            CheckName.RECEIPT_ANCHORED,
            "not checked: no trusted OutputAttestor on a chain connection to look the batch up",
            PolicyError,
        )
        return facts
    if not trusted:
        c.skip(
            CheckName.RECEIPT_ANCHORED,
            "not looked up: the receipt is not for the trusted chain and OutputAttestor",
        )
        return facts
    try:
        anchored = _anchoring_check(c, receipt, attestor)
        if anchored is None:
            return facts
        facts["anchored_in"] = {"transaction": anchored.transaction, "block": anchored.block}
        _authorisation_check(c, receipt, attestor, anchored, facts)
        _model_check(c, receipt, registry)
        facts["model_status"] = registry.status(receipt.record.model_id).label
    except ProvenanceError as exc:
        c.fail(CheckName.RECEIPT_ANCHORED, f"the chain could not be read: {exc}", type(exc))
    return facts


def _anchoring_check(
    c: Checks, receipt: Receipt, attestor: AttestorContract
) -> AnchoredBatch | None:
    b, r = receipt.batch, receipt.record
    root = _h(b.root)
    found = attestor.anchored_batches(b.root, receipt.node, r.model_id)
    if not found:
        elsewhere = attestor.anchored_batches(b.root, receipt.node)
        where = (
            f"; it is anchored for model {_h(elsewhere[0].model_id)} (block {elsewhere[0].block})"
            if elsewhere
            else ""
        )
        c.fail(
            CheckName.RECEIPT_ANCHORED,
            f"batch root {root} of model {_h(r.model_id)} by {receipt.node} is not anchored on "
            f"{attestor.address}{where}",
            IntegrityError,
        )
        return None
    stated = (b.first_sequence, b.count, b.timestamp)
    for event in found:
        if (event.first_sequence, event.count, event.timestamp) != stated:
            continue
        if receipt.block is not None and receipt.block != event.block:
            continue
        if receipt.transaction is not None and receipt.transaction.lower() != event.transaction:
            continue
        c.ok(
            CheckName.RECEIPT_ANCHORED,
            f"batch root {root} anchored in block {event.block} (tx {event.transaction}): "
            f"model, node, sequences {b.first_sequence}..{b.first_sequence + b.count - 1} and "
            f"timestamp {b.timestamp} as the receipt states",
        )
        return event
    event = found[0]
    c.fail(
        CheckName.RECEIPT_ANCHORED,
        f"batch root {root} is anchored in block {event.block} (tx {event.transaction}) with "
        f"first sequence {event.first_sequence}, count {event.count}, timestamp "
        f"{event.timestamp}; the receipt states first sequence {b.first_sequence}, count "
        f"{b.count}, timestamp {b.timestamp}"
        + (f", block {receipt.block}" if receipt.block is not None else "")
        + (f", tx {receipt.transaction}" if receipt.transaction is not None else ""),
        IntegrityError,
    )
    return None


def _authorisation_check(
    c: Checks,
    receipt: Receipt,
    attestor: AttestorContract,
    anchored: AnchoredBatch,
    facts: dict[str, Any],
) -> None:
    r = receipt.record
    state = attestor.authorisation_at(r.model_id, receipt.node, anchored.block, anchored.log_index)
    later = attestor.deauthorised_after(
        r.model_id, receipt.node, anchored.block, anchored.log_index
    )
    facts["node_authorised_at_anchoring"] = state is not None
    facts["node_still_authorised"] = state is not None and later is None
    if state is None:
        c.fail(
            CheckName.NODE_AUTHORISED,
            f"node {receipt.node} was not authorised for model {_h(r.model_id)} when the batch "
            f"was anchored (block {anchored.block})",
            PolicyError,
        )
        return
    facts["image_id"] = _h(state.image_id)
    if state.model_digest != r.model_digest:
        c.fail(
            CheckName.NODE_AUTHORISED,
            f"node {receipt.node} was authorised for model digest {_h(state.model_digest)} when "
            f"the batch was anchored, not the receipt's {_h(r.model_digest)}",
            IntegrityError,
        )
        return
    since = f"; deauthorised since, in block {later}" if later is not None else ""
    c.ok(
        CheckName.NODE_AUTHORISED,
        f"node {receipt.node} was authorised for this model and digest when the batch was "
        f"anchored (since block {state.block}){since}",
    )


def _model_check(c: Checks, receipt: Receipt, registry: RegistryView) -> None:
    r = receipt.record
    event = registry.registration_event(r.model_id)
    if event is None:
        c.fail(
            CheckName.RECEIPT_MODEL,
            f"model {_h(r.model_id)} is not registered in the trusted registry {registry.address}",
            IntegrityError,
        )
        return
    registered = bytes(event.args["modelDigest"])
    if registered != r.model_digest:
        c.fail(
            CheckName.RECEIPT_MODEL,
            f"the receipt's model digest {_h(r.model_digest)} is not the registered "
            f"{digest_text(registered)}",
            IntegrityError,
        )
        return
    c.ok(CheckName.RECEIPT_MODEL, "the receipt's model digest is the registered one")


def revoked_after_anchoring(checks: list[Check], revoked_in: int | None, anchored_in: int) -> None:
    """A model revoked after its output was anchored: its ``status`` failure becomes a warning
    (the output was attested while the model was active)."""
    if revoked_in is None or revoked_in <= anchored_in:
        return
    for i, check in enumerate(checks):
        if check.name == CheckName.STATUS and check.status is CheckStatus.FAIL:
            checks[i] = replace(
                check,
                status=CheckStatus.WARN,
                required=False,
                detail=f"{check.detail}, after the output was anchored in block {anchored_in}: "
                "it was attested while the model was active",
            )


__all__ = ["chain_checks", "offline_check", "revoked_after_anchoring", "trust_checks"]
