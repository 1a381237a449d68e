#!/usr/bin/env bash
# Tests the generated bindings in their own languages (the glue only; the rules are tested in
# Rust): Kotlin/JVM (coroutines) and Python (asyncio) run the same scenario against a real
# `ohassist` server on loopback, Python also logs in over HTTPS to a server whose certificate
# a test CA signed (made here with openssl); Swift is generated and checked for the exported
# API (no Swift compiler here).
#
#   scripts/bindings-test.sh
#
# Installs what a fresh Debian machine lacks: a JDK and JNA (apt), the Kotlin compiler (npm,
# into bindings/.tools). Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
KOTLIN_VERSION=2.4.20
TOOLS="$ROOT/bindings/.tools"
GEN="$ROOT/bindings/generated"
WORK="$(mktemp -d -t ohassist-bindings-XXXXXX)"
SERVER_PID=""
TLS_PID=""

cleanup() {
    for pid in "$SERVER_PID" "$TLS_PID"; do
        if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }

# ---- prerequisites ---------------------------------------------------------------------
apt_updated=""
apt_install() {
    local SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}
command -v javac >/dev/null || { say "installing a JDK"; apt_install default-jdk-headless; }
[ -f /usr/share/java/jna.jar ] || { say "installing JNA"; apt_install libjna-java; }
command -v npm >/dev/null || { say "installing npm"; apt_install npm; }
command -v python3 >/dev/null || { say "installing python3"; apt_install python3; }
command -v openssl >/dev/null || { say "installing openssl"; apt_install openssl; }
KOTLINC="$TOOLS/node_modules/kotlin-compiler/bin/kotlinc-jvm"
if [ ! -x "$KOTLINC" ]; then
    say "installing kotlin-compiler $KOTLIN_VERSION into bindings/.tools"
    npm install --silent --prefix "$TOOLS" "kotlin-compiler@$KOTLIN_VERSION"
fi
KOTLIN_LIB="$TOOLS/node_modules/kotlin-compiler/lib"
JNA=/usr/share/java/jna.jar
# The generated Kotlin awaits Rust futures with kotlinx.coroutines; the compiler ships it.
COROUTINES="$KOTLIN_LIB/kotlinx-coroutines-core-jvm.jar"
[ -f "$COROUTINES" ] || { echo "no kotlinx-coroutines-core-jvm.jar in $KOTLIN_LIB" >&2; exit 1; }

# ---- build -----------------------------------------------------------------------------
say "building the library and generating the bindings"
bindings/generate.sh
LIB_DIR="$GEN/python"
say "building the server"
cargo build -p ohassist-server --bin ohassist
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
OHASSIST="$TARGET_DIR/debug/ohassist"

# A fresh server (own data directory, one inspector in county 350121) per language, so
# each scenario starts from an empty server. Sets OHASSIST_URL, OHASSIST_USER, OHASSIST_PASSWORD.
# With `tls` as $2, the server speaks HTTPS with a certificate the test CA signed.
start_server() {
    local data="$WORK/server-$1" log="$WORK/server-$1.log" tls=()
    mkdir -p "$data"
    export OHASSIST_USER=inspector1 OHASSIST_PASSWORD="pw-$RANDOM-$RANDOM-bindings"
    echo "$OHASSIST_PASSWORD" | "$OHASSIST" user add --data "$data" --username "$OHASSIST_USER" \
        --display-name "测试检查员" --role inspector --org-unit 350121 --password-stdin >/dev/null
    export OHASSIST_ADMIN=admin1 OHASSIST_ADMIN_PASSWORD="pw-$RANDOM-$RANDOM-admin"
    echo "$OHASSIST_ADMIN_PASSWORD" | "$OHASSIST" user add --data "$data" --username "$OHASSIST_ADMIN" \
        --display-name "测试管理员" --role admin --org-unit 350121 --password-stdin >/dev/null
    [ "${2:-}" = tls ] && tls=(--tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key")
    "$OHASSIST" serve --listen 127.0.0.1:0 --data "$data" "${tls[@]}" >"$log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        OHASSIST_URL="$(sed -n 's/^listening on \(https\{0,1\}:\/\/[0-9.:]*\).*/\1/p' "$log" | head -n1)"
        [ -n "$OHASSIST_URL" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log"; echo "server exited" >&2; exit 1; }
        sleep 0.1
    done
    [ -n "$OHASSIST_URL" ] || { cat "$log"; echo "server did not start" >&2; exit 1; }
    export OHASSIST_URL
    echo "server at $OHASSIST_URL"
}
stop_server() {
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
}

# A county's own CA and the server certificate it signs (for 127.0.0.1), as an admin would
# make them for a LAN; the phone trusts the CA only when it is passed at login.
make_ca() {
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ohassist test county CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
        -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$WORK/server.ext"
    openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial -days 2 \
        -extfile "$WORK/server.ext" -out "$WORK/server.pem" 2>/dev/null
}

# ---- Kotlin ----------------------------------------------------------------------------
say "Kotlin: compiling the generated bindings, the Flow helper and the test with -Werror"
"$KOTLINC" -Werror -cp "$JNA:$COROUTINES" -d "$WORK/kotlin-test.jar" \
    $(find "$GEN/kotlin" -name '*.kt') bindings/kotlin/OhassistFlow.kt bindings/tests/kotlin/Test.kt
say "Kotlin: running"
start_server kotlin
java -Djna.library.path="$LIB_DIR" -cp "$WORK/kotlin-test.jar:$JNA:$COROUTINES:$KOTLIN_LIB/kotlin-stdlib.jar" TestKt
stop_server

# ---- Python ----------------------------------------------------------------------------
say "Python: running"
make_ca
start_server python-tls tls
export OHASSIST_TLS_URL="$OHASSIST_URL" OHASSIST_TLS_PASSWORD="$OHASSIST_PASSWORD" OHASSIST_CA_PEM="$WORK/ca.pem"
TLS_PID="$SERVER_PID"
start_server python
PYTHONPATH="$GEN/python" python3 bindings/tests/python/test_bindings.py
stop_server
SERVER_PID="$TLS_PID" TLS_PID=""
stop_server

# ---- the README's phone script ---------------------------------------------------------
say "README: the phone script, as written, against a demo server"
DEMO_DATA="$WORK/demo" DEMO_LOG="$WORK/demo.log"
"$OHASSIST" --data "$DEMO_DATA" demo --listen 127.0.0.1:0 >"$DEMO_LOG" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do
    grep -q "demo ready in" "$DEMO_LOG" && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$DEMO_LOG"; echo "the demo exited" >&2; exit 1; }
    sleep 0.5
done
grep -q "demo ready in" "$DEMO_LOG" || { cat "$DEMO_LOG"; echo "the demo was not ready" >&2; exit 1; }
DEMO_URL="$(sed -n 's/^listening on \(http:\/\/[0-9.:]*\).*/\1/p' "$DEMO_LOG" | head -n1)"
DEMO_PASSWORD="$(awk '$1 == "inspector" && $2 == "inspector-210102" { print $4 }' "$DEMO_LOG")"
# The first ```python block after the marker, exactly as the README shows it.
awk '/<!-- phone-script/ { found = 1; next } found && /^```python/ { inside = 1; next } inside && /^```/ { exit } inside' \
    README.md >"$WORK/phone.py"
[ "$(wc -l <"$WORK/phone.py")" -ge 10 ] || { echo "no phone script found in README.md" >&2; exit 1; }
(cd "$WORK" && PYTHONPATH="$GEN/python" python3 phone.py "$DEMO_URL" inspector-210102 "$DEMO_PASSWORD") | tee "$WORK/phone.out"
grep -q "pushed [1-9][0-9]* changes; 0 left on the phone" "$WORK/phone.out" || { echo "the script did not sync" >&2; exit 1; }
stop_server
# What the script registered is on the server, under the inspector's county.
found="$(python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute("SELECT count(*) FROM enterprises e JOIN visits v ON v.enterprise_id = e.credit_code WHERE e.credit_code = ? AND e.county_code = ?", ("91210102MA00PY0018", "210102")).fetchone()[0])' "$DEMO_DATA/ohassist.db")"
[ "$found" = 1 ] || { echo "the script's enterprise and visit are not on the server ($found)" >&2; exit 1; }
echo "readme: the phone script registered an enterprise and a visit on the demo server"

# ---- Swift -----------------------------------------------------------------------------
say "Swift: checking the generated API"
SWIFT="$GEN/swift/OhassistFFI.swift"
for api in 'static func `open`(path: String, key: Data)' 'func generateStoreKey() -> Data' 'case WrongKey' 'case DeviceErased(reason: String' 'func login(serverUrl: String, username: String, password: String, options: LoginOptions) async throws' \
    'func sync(progress: SyncProgressCallback) async throws  -> SyncReport' 'func logout() async throws' \
    'func createVisit(visit: Visit)' 'func updateVisit(id: String, visit: Visit, version: [String])' \
    'func listConflicts(id: String)' 'func resolveConflict(id: String, path: String, valueJson: String)' \
    'func table1Status(enterpriseId: String, year: Int32)' 'public protocol SyncProgressCallback' \
    'enum OhassistError: Swift.Error' 'public struct Visit' 'public struct LoginOptions' \
    'func addAttachment(visitId: String, path: String, attachment: NewAttachment)' 'func fetchAttachment(visitId: String, sha256: String) async throws  -> Data' 'func signVisit(visitId: String' 'func heldRecords()'; do
    grep -qF -- "$api" "$SWIFT" || { echo "Swift bindings lack: $api" >&2; exit 1; }
done
for f in OhassistFFIFFI.h OhassistFFIFFI.modulemap; do
    [ -f "$GEN/swift/$f" ] || { echo "Swift bindings lack $f" >&2; exit 1; }
done
echo "swift: generated, exported API present"

say "bindings: all passed"
