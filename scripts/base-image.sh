#!/usr/bin/env bash
# The base of model images, from Debian packages only (nothing is pulled from a registry):
# Debian bookworm with python3 (3.11, as the venv needs) as a root file system tarball, made by
# mmdebstrap with SOURCE_DATE_EPOCH, so the same package versions give the same bytes.
#
#   scripts/base-image.sh [OUT_DIR]    # default .tools/images; writes base-bookworm.tar
#
# Cached: nothing is done when the tarball exists and its stamp is the hash of this recipe.
# provenance loads the tarball into an engine as provenance/base:bookworm when the engine lacks
# it (provenance.images.ensure_base_image); the image id depends only on the tarball's bytes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/.tools/images}"
SUITE=bookworm
PACKAGES=python3,libstdc++6
EPOCH=1686355200 # 2023-06-10, bookworm's release
# the host's own Debian sources (apt's configuration), so the recipe names no mirror
SOURCES="${BASE_IMAGE_SOURCES:-/etc/apt/sources.list.d/debian.sources}"
[[ -f "$SOURCES" ]] || SOURCES=/etc/apt/sources.list
TARBALL="$OUT/base-$SUITE.tar"

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
die() { printf 'base-image: %s\n' "$*" >&2; exit 1; }

want="$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"
if [[ -f "$TARBALL" && "$(cat "$TARBALL.stamp" 2>/dev/null)" == "$want" ]]; then
  say "base image root file system is up to date ($TARBALL)"
  exit 0
fi
command -v mmdebstrap >/dev/null || die "mmdebstrap not found (Debian: apt-get install mmdebstrap)"
mkdir -p "$OUT"
say "building the base image root file system from Debian $SUITE packages (about a minute)"
start=$SECONDS
SOURCE_DATE_EPOCH=$EPOCH mmdebstrap --quiet --variant=apt --include="$PACKAGES" --format=tar \
  --aptopt='Acquire::Languages "none"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  "$SUITE" "$TARBALL.tmp" "$SOURCES" \
  || { rm -f "$TARBALL.tmp"; die "mmdebstrap failed"; }
mv "$TARBALL.tmp" "$TARBALL"
echo "$want" > "$TARBALL.stamp"
say "wrote $TARBALL ($(du -m "$TARBALL" | cut -f1) MiB, sha256 $(sha256sum "$TARBALL" | cut -c1-16)...) in $((SECONDS - start)) s"
