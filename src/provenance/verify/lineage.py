"""The checks of a model's ancestry: no ancestor is revoked (else the model is tainted), then
for every ancestor, nearest first, lighter checks: registered, certificate, creator, status."""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING

from provenance.certificate import raw_block_cid
from provenance.chain.types import Status
from provenance.errors import PolicyError
from provenance.verify.registration import model_checks
from provenance.verify.report import Check, CheckName, CheckStatus, generation, subject_of

if TYPE_CHECKING:
    from provenance.verify.context import Context, RegistryView


def _collapse(
    name: str, items: list[Check], subject: str, passed: str | None = None
) -> Check | None:
    """One line for several checks: the first required failure, else the first warning or
    skip, else a pass (``passed``, or their details joined)."""
    if not items:
        return None
    worst = next((i for i in items if i.failed), None)
    for status in (CheckStatus.FAIL, CheckStatus.WARN, CheckStatus.SKIP):
        worst = worst or next((i for i in items if i.status is status), None)
    if worst is not None:
        return replace(worst, name=name, subject=subject)
    detail = passed or "; ".join(i.detail for i in items)
    return Check(name, CheckStatus.PASS, detail, subject)


def ancestors(registry: RegistryView, model_id: bytes) -> list[tuple[bytes, int]]:
    """Every ancestor with its distance, nearest first (breadth-first over parent links)."""
    seen: dict[bytes, int] = {}
    queue = deque((p.id, 1) for p in registry.parents(model_id))
    while queue:
        node, depth = queue.popleft()
        if node in seen or node == model_id:
            continue
        seen[node] = depth
        queue.extend((p.id, depth + 1) for p in registry.parents(node))
    return list(seen.items())


_CERTIFICATE = (
    CheckName.CERTIFICATE_FETCHED,
    CheckName.CERTIFICATE_DIGEST,
    CheckName.CERTIFICATE_SCHEMA,
    CheckName.MODEL_DIGEST,
    CheckName.DATA_COMMITMENT,
    CheckName.PARENTS,
)
_CREATOR = (CheckName.SIGNATURE, CheckName.REGISTRANT, CheckName.TRUSTED)


def lineage_checks(model_id: bytes, ctx: Context) -> list[Check]:
    subject = subject_of(model_id)
    found = ancestors(ctx.registry, model_id)
    per_ancestor: list[Check] = []
    revoked: list[tuple[bytes, int]] = []
    for ancestor, depth in found:
        role = generation(depth)
        items, anchor, _ = model_checks(ancestor, ctx, role=role, ancestor=True)
        sub = subject_of(ancestor, role)
        by_name: dict[str, list[Check]] = {}
        for item in items:
            by_name.setdefault(item.name, []).append(item)
        groups = {
            CheckName.ANCESTOR_REGISTERED: by_name.get(CheckName.REGISTERED, []),
            CheckName.ANCESTOR_CERTIFICATE: [i for n in _CERTIFICATE for i in by_name.get(n, [])],
            CheckName.ANCESTOR_CREATOR: [i for n in _CREATOR for i in by_name.get(n, [])],
            CheckName.ANCESTOR_STATUS: by_name.get(CheckName.STATUS, []),
        }
        certificate_summary = (
            f"certificate {raw_block_cid(anchor.certificate_digest)} fetched; its digest, "
            "schema, model digest, data commitment and parents match the chain"
            if anchor is not None
            else None
        )
        for name, group in groups.items():
            passed = certificate_summary if name is CheckName.ANCESTOR_CERTIFICATE else None
            line = _collapse(name, group, sub, passed)
            if line is not None:
                per_ancestor.append(line)
        if anchor is not None and anchor.status is Status.REVOKED:
            revoked.append((ancestor, depth))
    if revoked:
        first, depth = revoked[0]
        more = f" (and {len(revoked) - 1} more revoked ancestor(s))" if len(revoked) > 1 else ""
        summary = Check(
            CheckName.LINEAGE,
            CheckStatus.FAIL,
            f"tainted: ancestor 0x{first.hex()} ({generation(depth)}) revoked{more}",
            subject,
            True,
            PolicyError,
        )
    elif found:
        summary = Check(
            CheckName.LINEAGE, CheckStatus.PASS, f"{len(found)} ancestor(s), none revoked", subject
        )
    else:
        summary = Check(CheckName.LINEAGE, CheckStatus.PASS, "a root model: no ancestors", subject)
    return [summary, *per_ancestor]


__all__ = ["ancestors", "lineage_checks"]
