#!/usr/bin/env bash
# One-command, idempotent setup of provenance on a fresh Debian machine.
#
#   scripts/setup.sh            # .venv, native extension, npm tools, kubo, Docker engine, base image
#   scripts/setup.sh --with-ape # ... and a separate .venv-ape with ape + ape-foundry
#   scripts/setup.sh --with-torch-image  # ... and the base of TorchScript model images
#                               # (Debian's python3-torch, about 1.2 GB, two minutes; else it is
#                               # built on the first TorchScript `provenance image build`)
#
# Everything it creates is gitignored: .venv/, .venv-ape/, .tools/.
# A second run checks stamps and versions and changes nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
VENV="$ROOT/.venv"
WITH_APE=0
WITH_TORCH_IMAGE=0
for arg in "$@"; do
  case "$arg" in
    --with-ape) WITH_APE=1 ;;
    --with-torch-image) WITH_TORCH_IMAGE=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "setup: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }
stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

mkdir -p "$TOOLS/bin"

# --- Python ---------------------------------------------------------------
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || die "python3 not found; install Python >= 3.11"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "Python >= 3.11 is required, found $("$PY" --version 2>&1)"
want="$(stamp_of "$ROOT/pyproject.toml")"
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV"
  "$PY" -m venv "$VENV"
fi
if [[ "$(cat "$VENV/.provenance-stamp" 2>/dev/null)" != "$want" ]]; then
  say "installing provenance and its test extras into .venv"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[test,server,export,mlflow,native,onnx,torch,hf,boost]"
  echo "$want" > "$VENV/.provenance-stamp"
else
  say ".venv is up to date"
fi

# --- native leaf and tree loop of output attestation (Rust; optional) -------
# Without cargo it says so in one line and provenance uses the pure-Python loop.
"$ROOT/scripts/build-native.sh" "$VENV"

# --- npm tools: anvil, solc-js, OpenZeppelin -------------------------------
command -v npm >/dev/null || die "npm not found; install Node.js >= 18 and npm (Debian: apt-get install nodejs npm)"
NPM_DIR="$TOOLS/npm"
want="$(stamp_of "$ROOT/tools/npm/package.json" "$ROOT/tools/npm/package-lock.json")"
if [[ "$(cat "$NPM_DIR/.stamp" 2>/dev/null)" != "$want" || ! -d "$NPM_DIR/node_modules" ]]; then
  say "installing pinned npm packages into .tools/npm"
  mkdir -p "$NPM_DIR"
  cp "$ROOT/tools/npm/package.json" "$ROOT/tools/npm/package-lock.json" "$ROOT/tools/npm/.npmrc" "$NPM_DIR/"
  (cd "$NPM_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > "$NPM_DIR/.stamp"
else
  say "npm tools are up to date"
fi
ln -sfn "$NPM_DIR/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil" "$TOOLS/bin/anvil"
ln -sfn "$ROOT/scripts/solcjs-shim.js" "$TOOLS/bin/solcjs-shim"

# --- kubo (the reference IPFS node) ----------------------------------------
KUBO_VERSION="$(grep -oE 'github\.com/ipfs/kubo v[0-9][^ ]*' "$ROOT/tools/kubo/go.mod" | head -1 | cut -d' ' -f2)"
[[ -n "$KUBO_VERSION" ]] || die "tools/kubo/go.mod does not require github.com/ipfs/kubo"
if command -v ipfs >/dev/null && [[ "$(command -v ipfs)" != "$TOOLS/bin/ipfs" && "$(command -v ipfs)" != "$VENV/bin/ipfs" ]]; then
  say "using ipfs from PATH: $(command -v ipfs) ($(ipfs version --number 2>/dev/null || echo '?'))"
elif [[ -x "$TOOLS/bin/ipfs" && "v$("$TOOLS/bin/ipfs" version --number 2>/dev/null)" == "$KUBO_VERSION" ]]; then
  say "kubo $KUBO_VERSION is built"
else
  command -v go >/dev/null || die "neither 'ipfs' nor Go is on PATH: install kubo's ipfs, or Go >= 1.25 to build kubo $KUBO_VERSION"
  say "building kubo $KUBO_VERSION from its Go module into .tools/bin (a few minutes the first time)"
  (cd "$ROOT/tools/kubo" && GOFLAGS=-mod=readonly go build -trimpath -o "$TOOLS/bin/ipfs" github.com/ipfs/kubo/cmd/ipfs)
fi
if [[ -x "$TOOLS/bin/ipfs" ]]; then ln -sfn "$TOOLS/bin/ipfs" "$VENV/bin/ipfs"; fi
ln -sfn "$TOOLS/bin/anvil" "$VENV/bin/anvil"

# --- Docker engine ---------------------------------------------------------
docker_answers() {
  [[ -S /var/run/docker.sock ]] && command -v docker >/dev/null \
    && DOCKER_HOST=unix:///var/run/docker.sock timeout 10 docker info >/dev/null 2>&1
}
need_pkgs=()
if ! docker_answers && ! command -v dockerd >/dev/null; then need_pkgs+=(docker.io); fi
if ! command -v mmdebstrap >/dev/null; then need_pkgs+=(mmdebstrap); fi
# graphviz lays out `provenance tree --format svg`; chromium runs the explorer's browser test
if ! command -v dot >/dev/null; then need_pkgs+=(graphviz); fi
if ! command -v chromium >/dev/null; then need_pkgs+=(chromium); fi
if (( ${#need_pkgs[@]} )); then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    echo "setup: warning: apt-get is not usable as this user; install ${need_pkgs[*]}" \
         "yourself (or point DOCKER_HOST at an engine)" >&2
  fi
else
  say "Docker engine, mmdebstrap, graphviz and chromium are available"
fi

# --- base image of model images: Debian packages, no registry (cached) ------
if command -v mmdebstrap >/dev/null; then
  "$ROOT/scripts/base-image.sh" "$TOOLS/images"
  if (( WITH_TORCH_IMAGE )); then "$ROOT/scripts/base-image.sh" --torch "$TOOLS/images"; fi
else
  echo "setup: warning: mmdebstrap is missing; model images need scripts/base-image.sh" >&2
fi

# --- ape (optional, its own environment: ape pins web3 < 8) -----------------
if (( WITH_APE )); then
  APE_VENV="$ROOT/.venv-ape"
  want="$(stamp_of "$ROOT/pyproject.toml" "$ROOT/tools/ape-requirements.txt")"
  if [[ "$(cat "$APE_VENV/.provenance-stamp" 2>/dev/null)" != "$want" ]]; then
    say "creating .venv-ape with ape and ape-foundry"
    "$PY" -m venv "$APE_VENV"
    "$APE_VENV/bin/python" -m pip install --quiet --upgrade pip
    "$APE_VENV/bin/python" -m pip install --quiet -r "$ROOT/tools/ape-requirements.txt" -e "$ROOT"
    echo "$want" > "$APE_VENV/.provenance-stamp"
  else
    say ".venv-ape is up to date"
  fi
  ln -sfn "$TOOLS/bin/anvil" "$APE_VENV/bin/anvil"
  # ape-solidity compiles through py-solc-x, which would download solc (unreachable here):
  # give it the solc-js shim as its installed 0.8.37, and point it there by default.
  mkdir -p "$APE_VENV/solcx"
  ln -sfn "$TOOLS/bin/solcjs-shim" "$APE_VENV/solcx/solc-v0.8.37"
  site="$("$APE_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
  echo "import os; os.environ.setdefault('SOLCX_BINARY_PATH', '$APE_VENV/solcx')" > "$site/provenance-solcx.pth"
fi

say "setup done: $("$VENV/bin/provenance" --version)"
