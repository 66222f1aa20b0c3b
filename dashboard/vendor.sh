#!/usr/bin/env bash
# Install 3Dmol.js 2.5.5 (the version py3Dmol 2.5.5 expects) into dashboard/static/vendor/, so
# that the 3D structure views work offline. Idempotent; the folder is git-ignored.
set -euo pipefail
cd "$(dirname "$0")"
dest=static/vendor
if [ -s "$dest/3Dmol-min.js" ] && grep -q "2.5.5" "$dest/VERSION" 2>/dev/null; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "warning: npm not found; the 3D viewer will load 3Dmol.js from the internet" >&2
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm install --silent --no-audit --no-fund --no-save 3dmol@2.5.5 >/dev/null)
mkdir -p "$dest"
cp "$tmp/node_modules/3dmol/build/3Dmol-min.js" "$dest/3Dmol-min.js"
cp "$tmp/node_modules/3dmol/LICENSE" "$dest/3Dmol-LICENSE" 2>/dev/null || true
echo "3dmol 2.5.5" > "$dest/VERSION"
