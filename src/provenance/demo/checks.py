"""The demo's own check, beside :mod:`provenance.verify`'s reports: re-running the captured
preprocessing steps from the script as it is now and comparing their code and output digests
with the certificate's (verification from the chain and IPFS does not re-run code). It passes
on the genuine script and must fail once attack 2 edited it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from provenance.capture.tracker import Run
from provenance.certificate import Step
from provenance.errors import CertificateError, IntegrityError

from . import code


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
