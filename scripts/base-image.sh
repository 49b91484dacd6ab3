#!/usr/bin/env bash
# Bases of model images, from Debian packages only (nothing is pulled from a registry), as root
# file system tarballs made by mmdebstrap with SOURCE_DATE_EPOCH, so the same package versions
# give the same bytes:
#
#   scripts/base-image.sh [OUT_DIR]          # base-bookworm.tar: python3 (3.11, as the venv
#                                            # needs), libstdc++6, libgomp1 (LightGBM needs it)
#   scripts/base-image.sh --torch [OUT_DIR]  # torch-bookworm.tar: ... and Debian's CPU build of
#                                            # PyTorch (python3-torch 1.13.1), for TorchScript
#
# OUT_DIR defaults to .tools/images. Cached: nothing is done when the tarball exists and its
# stamp is the hash of this recipe and the variant. provenance loads a tarball into an engine
# when the engine lacks its tag (provenance/base:bookworm, provenance/torch:bookworm;
# provenance.images.ensure_base_image); the image id depends only on the tarball's bytes.
#
# Why Debian's torch and bookworm: a copy of the training environment's torch wheel would bring
# its CUDA libraries (about 4 GB); bookworm's python3-torch is a CPU build for the same Python
# 3.11 as the base (trixie's 2.6 is for Python 3.13), and TorchScript archives saved by torch 2.x
# of the operators ordinary models use load in it (tests/integration/test_images_formats.py).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VARIANT=base
if [[ "${1:-}" == "--torch" ]]; then VARIANT=torch; shift; fi
OUT="${1:-$ROOT/.tools/images}"
SUITE=bookworm
PACKAGES=python3,libstdc++6,libgomp1
APTOPTS=(--aptopt='Acquire::Languages "none"')
if [[ "$VARIANT" == torch ]]; then
  PACKAGES="$PACKAGES,python3-torch"
  # its Recommends are a compiler tool chain and headers (libtorch-dev, build-essential)
  APTOPTS+=(--aptopt='APT::Install-Recommends "false"')
fi
EPOCH=1686355200 # 2023-06-10, bookworm's release
# the host's own Debian sources (apt's configuration), so the recipe names no mirror
SOURCES="${BASE_IMAGE_SOURCES:-/etc/apt/sources.list.d/debian.sources}"
[[ -f "$SOURCES" ]] || SOURCES=/etc/apt/sources.list
TARBALL="$OUT/$VARIANT-$SUITE.tar"

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
die() { printf 'base-image: %s\n' "$*" >&2; exit 1; }

want="$( (cat "${BASH_SOURCE[0]}"; echo "$VARIANT") | sha256sum | cut -d' ' -f1)"
if [[ -f "$TARBALL" && "$(cat "$TARBALL.stamp" 2>/dev/null)" == "$want" ]]; then
  say "$VARIANT image root file system is up to date ($TARBALL)"
  exit 0
fi
command -v mmdebstrap >/dev/null || die "mmdebstrap not found (Debian: apt-get install mmdebstrap)"
mkdir -p "$OUT"
if [[ "$VARIANT" == torch ]]; then
  say "building the torch image root file system from Debian $SUITE packages (a few minutes)"
else
  say "building the base image root file system from Debian $SUITE packages (about a minute)"
fi
start=$SECONDS
SOURCE_DATE_EPOCH=$EPOCH mmdebstrap --quiet --variant=apt --include="$PACKAGES" --format=tar \
  "${APTOPTS[@]}" \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  "$SUITE" "$TARBALL.tmp" "$SOURCES" \
  || { rm -f "$TARBALL.tmp"; die "mmdebstrap failed"; }
mv "$TARBALL.tmp" "$TARBALL"
echo "$want" > "$TARBALL.stamp"
say "wrote $TARBALL ($(du -m "$TARBALL" | cut -f1) MiB, sha256 $(sha256sum "$TARBALL" | cut -c1-16)...) in $((SECONDS - start)) s"
