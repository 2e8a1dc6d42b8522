#!/usr/bin/env bash
# Fails when the committed artifacts in contracts/out/ are not what contracts/src compiles to.
set -euo pipefail
CONTRACTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
bash "$CONTRACTS/compile.sh" "$tmp"
if ! diff -rq "$CONTRACTS/out" "$tmp" >&2; then
  echo "contracts/check: contracts/out/ is stale: it differs from a fresh compile of contracts/src." >&2
  echo "contracts/check: run contracts/compile.sh and commit contracts/out/." >&2
  exit 1
fi
