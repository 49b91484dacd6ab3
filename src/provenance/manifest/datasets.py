"""Dataset records: what a certificate says about each dataset (a file or table manifest, the
subset it was selected as), the one data commitment anchored on chain, and recomputing a dataset
from its source.

**Confidential datasets** publish only ``HMAC-SHA256(salt, manifest digest)`` with a random
32-byte salt that the owner keeps (in a :class:`DatasetOpening`): without the salt nobody can
confirm a guessed dataset, however small or well known, against the published value.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, model_validator

from provenance.errors import CertificateError, ConfigError
from provenance.hashing import format_digest, merkle_root, parse_digest
from provenance.manifest.files import FileManifest, check_extractable, verify_manifest
from provenance.manifest.subsets import SubsetOf, verify_subset
from provenance.manifest.tables import TableManifest, _compare, open_table, verify_table
from provenance.schema import Digest, Frozen, HexBytes


def salted_commitment(digest: str, salt: bytes) -> str:
    """``HMAC-SHA256(key=salt, message=the 32 digest bytes)`` as ``sha256:<hex>``."""
    if len(salt) < 16:
        raise CertificateError(f"a salt needs at least 16 bytes, got {len(salt)}")
    return format_digest(hmac.new(salt, parse_digest(digest), hashlib.sha256).digest())


Manifest = Annotated[FileManifest | TableManifest, Field(discriminator="kind")]


class DatasetRecord(Frozen):
    """One dataset a model was trained on (or evaluated with: ``role``).

    Public: ``manifest`` (and ``subset`` when the rows were selected from a larger source) and
    ``commitment`` = the manifest's digest. Confidential: the ``commitment`` only, salted; the
    manifest, subset and salt stay with the owner in a :class:`DatasetOpening`.
    """

    name: Annotated[str, Field(min_length=1)]
    role: Annotated[str, Field(min_length=1)] = "train"
    commitment: Digest
    confidential: bool = False
    manifest: Manifest | None = None
    subset: SubsetOf | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DatasetRecord:
        if self.confidential:
            if self.manifest is not None or self.subset is not None or self.url is not None:
                raise ValueError(
                    f"confidential dataset {self.name!r} may publish its commitment only"
                )
            return self
        if self.manifest is None:
            raise ValueError(f"dataset {self.name!r} needs a manifest (or confidential: true)")
        if self.commitment != self.manifest.digest:
            raise ValueError(
                f"dataset {self.name!r}: commitment {self.commitment} is not its manifest digest "
                f"{self.manifest.digest}"
            )
        if self.subset is not None and not isinstance(self.manifest, TableManifest):
            raise ValueError(f"dataset {self.name!r}: only a table can be a subset")
        if isinstance(self.manifest, FileManifest):
            check_extractable(self.manifest, f"dataset {self.name!r}")
        return self


class DatasetOpening(Frozen):
    """What the owner of a confidential dataset keeps: the salt, the manifest (and subset)."""

    name: str
    role: str = "train"
    salt: HexBytes
    manifest: Manifest
    subset: SubsetOf | None = None

    @property
    def commitment(self) -> str:
        return salted_commitment(self.manifest.digest, bytes.fromhex(self.salt[2:]))

    def record(self) -> DatasetRecord:
        return DatasetRecord(
            name=self.name, role=self.role, commitment=self.commitment, confidential=True
        )


def dataset_record(
    name: str,
    manifest: FileManifest | TableManifest,
    *,
    role: str = "train",
    subset: SubsetOf | None = None,
    url: str | None = None,
    confidential: bool = False,
    salt: bytes | None = None,
) -> tuple[DatasetRecord, DatasetOpening | None]:
    """A dataset's record, and for a confidential one the opening its owner must keep."""
    if not confidential:
        return (
            DatasetRecord(
                name=name,
                role=role,
                commitment=manifest.digest,
                manifest=manifest,
                subset=subset,
                url=url,
            ),
            None,
        )
    if url is not None:
        raise CertificateError(f"confidential dataset {name!r} cannot have a public URL")
    opening = DatasetOpening(
        name=name,
        role=role,
        salt="0x" + (salt if salt is not None else os.urandom(32)).hex(),
        manifest=manifest,
        subset=subset,
    )
    return opening.record(), opening


def data_commitment(datasets: Sequence[DatasetRecord]) -> str:
    """The one value anchored on chain for all datasets: the Merkle root over their
    commitments (32 bytes each), in recorded order; ``sha256:`` of nothing when none."""
    return format_digest(merkle_root(parse_digest(d.commitment) for d in datasets))


def verify_opening(record: DatasetRecord, opening: DatasetOpening) -> None:
    """Check that an owner's opening matches a published confidential record."""
    _compare(f"commitment of dataset {record.name!r}", record.commitment, opening.commitment)


class NotRecomputableError(ConfigError):
    """A table hashed from an in-memory frame: there is no file to recompute it from."""


def source_table(source: Path, manifest: TableManifest) -> Any:
    """The table at ``source`` read as ``manifest`` was hashed (CSV or Parquet)."""
    if manifest.format not in ("csv", "parquet"):
        raise NotRecomputableError(
            f"hashed from an in-memory {manifest.format}: recompute it with provenance.manifest "
            "from Python"
        )
    if manifest.format == "parquet":
        return open_table(source, format="parquet")
    # a CSV is read as it was hashed: with its header row unless the manifest says it has none
    return open_table(
        source, format="csv", delimiter=manifest.delimiter, header=manifest.header is not False
    )


def recompute_dataset(
    record: DatasetRecord, source: Path, opening: DatasetOpening | None = None
) -> str:
    """Recompute a dataset from its source: the files, the table's rows, or the subset of a
    source table (a confidential one through its owner's ``opening``). Raises IntegrityError on
    a difference; returns what matched."""
    if opening is not None:
        verify_opening(record, opening)
    manifest = opening.manifest if opening else record.manifest
    subset = opening.subset if opening else record.subset
    if isinstance(manifest, FileManifest):
        verify_manifest(manifest, source)
        return f"{len(manifest.files)} file(s) match {manifest.root}"
    if manifest is None:
        raise CertificateError(f"dataset {record.name!r} publishes no manifest")
    if subset is not None:
        verify_subset(manifest, subset, source_table(source, subset.source))
        return (
            f"{manifest.rows} of {subset.source.rows} rows selected by {subset.selection.kind}, "
            f"subset root {manifest.root} matches"
        )
    verify_table(manifest, source_table(source, manifest))
    return f"{manifest.rows} rows match {manifest.root}"
