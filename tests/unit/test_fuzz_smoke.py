"""A smoke of the fuzzer (fuzz/run.py): 1,000 inputs per parser of untrusted bytes, each batch
in a child process. Every input is parsed or refused with a ProvenanceError (an HTTP 4xx for the
explorer): no other exception, no crash. The full run (100,000 per parser) is in the README."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fuzz.run import PARSERS, run_parser  # noqa: E402


@pytest.mark.parametrize("parser", PARSERS)
def test_a_thousand_inputs_per_parser(parser: str) -> None:
    tally = run_parser(parser, 1000, batch=1000, seed=20261202, timeout=600)
    assert tally.inputs == 1000
    assert (tally.other, tally.crashes) == (0, 0), "\n".join(tally.examples)
    assert tally.clean > 0  # the mutator reaches the parser's refusals
