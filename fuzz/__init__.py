"""Fuzzing of every parser of untrusted bytes (see ``fuzz/run.py`` and the README's "Hostile
input" section). Not part of the package; the test suite runs a smoke of it."""
