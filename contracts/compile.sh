#!/usr/bin/env bash
# Compiles contracts/src into the committed artifacts contracts/out/<Name>.json
# (or into the directory given as $1). Installs solc into .tools/ first if needed.
set -euo pipefail
CONTRACTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$CONTRACTS/../scripts/install-tools.sh"
node "$CONTRACTS/compile.js" "${1:-$CONTRACTS/out}"
