#!/usr/bin/env bash
# Runs every test of ohassist, as CI does. Installs what a fresh machine lacks.
#   ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step prints its title, and the time the previous one took.
STEP_START=$SECONDS
STEP_NAME=""
step() {
  if [ -n "$STEP_NAME" ]; then printf '=== %s: %d s\n' "$STEP_NAME" "$((SECONDS - STEP_START))"; fi
  STEP_NAME="$*"; STEP_START=$SECONDS
  printf '\n=== %s\n' "$*"
}

step "toolchain"
cargo --version
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done

step "system packages: libssl-dev (SQLCipher links libcrypto), sqlite3 (the encryption test checks it cannot read a store)"
# The system libcrypto builds in seconds; a vendored OpenSSL (the `vendored-openssl` feature,
# for Android) adds minutes to every clean build on this machine (ADR 0003).
missing=()
[ -f /usr/include/openssl/evp.h ] || missing+=(libssl-dev pkg-config)
command -v sqlite3 >/dev/null || missing+=(sqlite3)
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step "PostgreSQL server binaries (the contract suite and the end-to-end run on PostgreSQL start a throwaway cluster)"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi

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

step "end-to-end on PostgreSQL: the same suite, every server on its own database of a throwaway cluster (ADR 0008)"
# backup/restore and the demo are the SQLite data directory's (PostgreSQL's backup is pg_dump).
OHASSIST_TEST_ENGINE=postgres cargo test --workspace --locked -p ohassist-tests --test e2e -- \
  --skip backup:: --skip demo::

step "API conformance: schemathesis against the seeded server, every operation, all checks"
./scripts/conformance.sh

step "bindings: Kotlin and Python against a real server, Swift generated"
PROFILE=debug ./scripts/bindings-test.sh

step "done"
echo "all tests passed in $SECONDS s"
