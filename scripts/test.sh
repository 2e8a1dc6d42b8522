#!/usr/bin/env bash
# Every check and test of the project, installing what it needs first. CI runs exactly this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "tools (solc, anvil) into .tools/ when missing"
bash scripts/install-tools.sh

# The console's end-to-end test drives the real binary in tmux (a Debian package).
if ! command -v tmux >/dev/null; then
  step "tmux (for the console's end-to-end test)"
  if command -v apt-get >/dev/null; then
    apt-get install -y -qq tmux >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq tmux; }
  fi
  command -v tmux >/dev/null || { echo "tmux is needed by the console test; install it" >&2; exit 1; }
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "contract artifacts match the sources"
bash contracts/check.sh

step "cargo test"
cargo test --workspace --locked
