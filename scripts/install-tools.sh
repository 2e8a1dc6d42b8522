#!/usr/bin/env bash
# Installs the jurisdiction toolchain into <repo>/.tools/ when missing:
#   solc (solcjs) 0.8.37      -> .tools/node_modules/solc/solc.js
#   anvil 1.7.1 (npm package)  -> .tools/bin/anvil (symlink)
# Quiet when everything is already installed. Needs only node and npm.
set -euo pipefail

SOLC_VERSION=0.8.37
ANVIL_VERSION=1.7.1
ANVIL_PKG=@foundry-rs/anvil-linux-amd64

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"

installed_version() { # <package name> -> version or empty
  local pj="$TOOLS/node_modules/$1/package.json"
  [[ -f "$pj" ]] && node -p "require(process.argv[1]).version" "$pj" 2>/dev/null || true
}

missing=()
[[ "$(installed_version solc)" == "$SOLC_VERSION" ]] || missing+=("solc@$SOLC_VERSION")
[[ "$(installed_version "$ANVIL_PKG")" == "$ANVIL_VERSION" ]] || missing+=("$ANVIL_PKG@$ANVIL_VERSION")

if ((${#missing[@]})); then
  command -v npm >/dev/null || { echo "install-tools: npm not found" >&2; exit 1; }
  mkdir -p "$TOOLS"
  echo "install-tools: installing ${missing[*]} into $TOOLS" >&2
  npm install --prefix "$TOOLS" --no-audit --no-fund --save-exact --loglevel=error "${missing[@]}" >&2
fi

anvil_bin=""
for candidate in "$TOOLS/node_modules/$ANVIL_PKG/bin/anvil" "$TOOLS/node_modules/$ANVIL_PKG/anvil"; do
  [[ -f "$candidate" ]] && { anvil_bin="$candidate"; break; }
done
[[ -n "$anvil_bin" ]] || { echo "install-tools: anvil binary not found under $TOOLS/node_modules/$ANVIL_PKG" >&2; exit 1; }
[[ -x "$anvil_bin" ]] || chmod +x "$anvil_bin"

mkdir -p "$TOOLS/bin"
link_target="..${anvil_bin#"$TOOLS"}" # relative, so the tree can move
if [[ "$(readlink "$TOOLS/bin/anvil" 2>/dev/null)" != "$link_target" ]]; then
  ln -sfn "$link_target" "$TOOLS/bin/anvil"
  echo "install-tools: anvil at $TOOLS/bin/anvil -> $anvil_bin" >&2
fi
