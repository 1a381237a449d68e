#!/usr/bin/env bash
# Runs every test of ohassist, as CI does. Installs what a fresh machine lacks.
#   ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

step "toolchain"
cargo --version
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done

step "browser for the console tests (Debian chromium + chromedriver, CJK fonts)"
./scripts/install-browser.sh

step "office software for the XLSX render check (LibreOffice Calc headless, poppler)"
./scripts/install-office.sh

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests (unit, property with ${PROPTEST_CASES:=1000} cases, crash, end-to-end)"
export PROPTEST_CASES
cargo test --workspace --locked

step "bindings: Kotlin and Python against a real server, Swift generated"
PROFILE=debug ./scripts/bindings-test.sh

echo
echo "all tests passed"
