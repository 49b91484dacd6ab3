"""The checks the demo runs, first on the genuine material (they pass) and then on what each
attack changed (they must fail). Each one is a ``verify_*``-style function: it returns None or
raises a specific :class:`~provenance.errors.ProvenanceError`; most are the library's own
checks, called exactly as the CLI calls them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from provenance.capture.tracker import Run
from provenance.certificate import Step
from provenance.chain.registry import Registry
from provenance.errors import CertificateError, IntegrityError
from provenance.manifest import (
    DatasetRecord,
    TableManifest,
    open_table,
    verify_subset,
    verify_table,
)

from . import code


def verify_training_data(record: DatasetRecord, source: Path) -> None:
    """What ``provenance data verify SOURCE -c CERT`` does for a table: recompute the source's
    row Merkle root, re-apply the recorded selection and compare the subset root."""
    manifest = record.manifest
    if not isinstance(manifest, TableManifest):
        raise CertificateError(f"dataset {record.name} is not a table")
    table_manifest = record.subset.source if record.subset is not None else manifest
    table = open_table(source, format=table_manifest.format, delimiter=table_manifest.delimiter)
    if record.subset is not None:
        verify_subset(manifest, record.subset, table)
    else:
        verify_table(manifest, table)


def rerun_steps(script: Path, data: Path, recorded: Sequence[Step]) -> tuple[Step, ...]:
    """Run the recorded preprocessing steps again, from the script as it is now, on ``data``
    (the recorded arguments; each step's output feeds the next), captured as in training."""
    module = code.load(script)
    run = Run("re-run of the preprocessing", environment=False, output_dir=script.parent)
    frame: object = pd.read_csv(data)
    for step in recorded:
        module_name, _, name = step.name.partition(":")
        if module_name != code.MODULE:
            raise CertificateError(f"step {step.name} is not from the demo's {code.MODULE}.py")
        frame = run.step(code.function(module, name))(frame, **step.arguments)
    return run.steps


def verify_step_code(recorded: Sequence[Step], rerun: Sequence[Step]) -> None:
    """Each recorded step's code digest (SHA-256 of its function's source) and output digest
    must equal those of the re-run; raises IntegrityError naming the first difference."""
    if [s.name for s in recorded] != [s.name for s in rerun]:
        raise IntegrityError(
            f"steps differ: recorded {[s.name for s in recorded]}, re-run {[s.name for s in rerun]}"
        )
    for old, new in zip(recorded, rerun, strict=True):
        if old.source_digest != new.source_digest:
            raise IntegrityError(
                f"step {old.name}: code digest differs: recorded {old.source_digest}, "
                f"recomputed {new.source_digest}"
            )
        old_out = [o.digest for o in old.outputs]
        new_out = [o.digest for o in new.outputs]
        if old_out != new_out:
            raise IntegrityError(
                f"step {old.name}: output digest differs: recorded {old_out}, recomputed {new_out}"
            )


def verify_registrant(registry: Registry, model_id: bytes, trusted: Mapping[str, str]) -> None:
    """The account that registered ``model_id`` on chain must be one of ``trusted``
    (address -> who); raises IntegrityError otherwise."""
    record = registry.record(model_id)
    if not record.exists:
        raise IntegrityError(f"model 0x{model_id.hex()} is not registered")
    known = {address.lower(): who for address, who in trusted.items()}
    if record.registrant.lower() not in known:
        names = ", ".join(f"{who} {address}" for address, who in trusted.items())
        raise IntegrityError(
            f"model 0x{model_id.hex()} was registered by {record.registrant}, "
            f"who is not a trusted registrant ({names})"
        )


def verify_registered(registry: Registry, model_id: bytes, certificate_digest: bytes) -> None:
    """The chain's registration event for ``model_id`` must carry this certificate digest."""
    event = registry.registration_event(model_id)
    if event is None:
        raise IntegrityError(f"model 0x{model_id.hex()} is not registered")
    found = bytes(event.args["certificateDigest"])
    if found != certificate_digest:
        raise IntegrityError(
            f"model 0x{model_id.hex()} is registered with certificate digest 0x{found.hex()}, "
            f"not 0x{certificate_digest.hex()}"
        )
