#!/usr/bin/env bash
# Build the native leaf and tree loop of output attestation (native/: Rust, pyo3) and install
# it into a venv. scripts/setup.sh runs it; by hand:
#
#   scripts/build-native.sh [VENV]      # default: .venv (needs maturin: the `native` extra)
#
# Every crate is pinned by native/Cargo.lock (built with --locked). Without cargo, or when the
# build fails, it says so in one line and exits 0: provenance then runs the pure-Python leaf
# and tree loop (same bytes, slower); `provenance.attest.native.implementation()` and
# benchmarks/attest.py say which one runs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv}"
CRATE="$ROOT/native"
say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
fallback() {
  echo "setup: $1: output attestation uses the pure-Python leaf and tree loop (same results, about half the batched throughput)" >&2
  exit 0
}

[[ -f "$CRATE/Cargo.lock" ]] || fallback "native/ is not in this source tree"
command -v cargo >/dev/null \
  || fallback "cargo not found, so the native extension is not built (install Rust's cargo and rerun scripts/setup.sh to build it)"
[[ -x "$VENV/bin/maturin" ]] \
  || fallback "maturin is not in $VENV (install the 'native' extra), so the native extension is not built"

want="$(cat "$CRATE/Cargo.toml" "$CRATE/Cargo.lock" "$CRATE/pyproject.toml" "$CRATE"/src/*.rs | sha256sum | cut -d' ' -f1)"
stamp="$VENV/.provenance-native-stamp"
if [[ "$(cat "$stamp" 2>/dev/null)" == "$want" ]] && "$VENV/bin/python" -c 'import provenance_native' 2>/dev/null; then
  say "native attestation extension is up to date"
  exit 0
fi
say "building the native attestation extension (native/, $(cargo --version | cut -d' ' -f1-2), pinned by Cargo.lock)"
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
if ! CARGO_TARGET_DIR="$ROOT/.tools/native-target" "$VENV/bin/maturin" build --quiet --release --locked \
     --manifest-path "$CRATE/Cargo.toml" --interpreter "$VENV/bin/python" --out "$wheels"; then
  fallback "building native/ failed (the reason is above)"
fi
"$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps "$wheels"/provenance_native-*.whl
"$VENV/bin/python" -c 'import provenance_native' \
  || fallback "the built native extension does not import"
echo "$want" > "$stamp"
say "native attestation extension installed ($("$VENV/bin/python" -c 'from provenance.attest.native import implementation; print(implementation())' 2>/dev/null || echo provenance_native))"
