#!/usr/bin/env bash
# Every check and test of the project, installing what it needs first. CI runs exactly this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "tools (solc, anvil) into .tools/ when missing"
bash scripts/install-tools.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "contract artifacts match the sources"
bash contracts/check.sh

step "cargo test"
cargo test --workspace --locked
