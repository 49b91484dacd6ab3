"""The checks of a model's training data: each dataset recomputed from a source (the policy's
``data_sources`` by dataset name, or the dataset's ``ipfs://`` URL for published data): files,
table rows, or the subset of a source; confidential datasets are skipped with the reason."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from provenance.errors import (
    CertificateError,
    ConfigError,
    IntegrityError,
    ProvenanceError,
    StorageError,
)
from provenance.manifest import (
    DatasetRecord,
    FileManifest,
    NotRecomputableError,
    recompute_dataset,
)
from provenance.verify.context import fetch_path
from provenance.verify.report import Check, CheckName, Checks, CheckStatus

if TYPE_CHECKING:
    from provenance.certificate import Certificate
    from provenance.verify.context import Context


def _download_name(record: DatasetRecord) -> str:
    manifest = record.manifest
    if isinstance(manifest, FileManifest) and len(manifest.files) == 1:
        name = manifest.files[0].path
        if "/" not in name:
            return name
    return "data"


def data_checks(body: Certificate, ctx: Context) -> list[Check]:
    checks: list[Check] = []
    sources = ctx.policy.data_sources
    names = {d.name for d in body.data.datasets}
    for unknown in sorted(set(sources) - names):
        checks.append(
            Check(
                CheckName.DATA,
                CheckStatus.FAIL,
                f"a source was given, but the certificate has no dataset {unknown!r} "
                f"(it has: {', '.join(sorted(names)) or 'none'})",
                f"dataset {unknown}",
                True,
                ConfigError,
            )
        )
    for record in body.data.datasets:
        c = Checks(f"dataset {record.name} ({record.role})")
        _dataset_check(c, record, sources.get(record.name), ctx)
        checks.extend(c.items)
    return checks


def _dataset_check(c: Checks, record: DatasetRecord, source: Path | None, ctx: Context) -> None:
    if record.confidential:
        c.skip(
            CheckName.DATA,
            "confidential: only its salted commitment is published (its owner checks it "
            "with the opening: provenance data verify --opening)",
        )
        return
    with tempfile.TemporaryDirectory(prefix="provenance-verify-") as scratch:
        where = str(source)
        if source is None and record.url and record.url.startswith("ipfs://"):
            if not ctx.policy.fetch_data:
                c.skip(
                    CheckName.DATA, f"published at {record.url}; not fetched (fetching disabled)"
                )
                return
            source = Path(scratch) / _download_name(record)
            try:
                fetch_path(
                    ctx.storage, record.url.removeprefix("ipfs://"), source, ctx.fetch_timeout
                )
            except ProvenanceError as exc:
                c.fail(
                    CheckName.DATA,
                    f"the published data {record.url} is not retrievable from IPFS at "
                    f"{ctx.storage.location}: {exc}",
                    StorageError,
                )
                return
            where = record.url
        if source is None:
            c.skip(
                CheckName.DATA, "no source: not published in IPFS; pass one with --data NAME=PATH"
            )
            return
        try:
            matched = recompute_dataset(record, source)
        except NotRecomputableError as exc:
            c.skip(CheckName.DATA, str(exc))
        except (IntegrityError, CertificateError) as exc:
            c.fail(CheckName.DATA, f"recomputed from {where}: {exc}", IntegrityError)
        else:
            c.ok(CheckName.DATA, f"recomputed from {where}: {matched}")


__all__ = ["data_checks"]
