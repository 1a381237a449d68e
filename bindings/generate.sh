#!/usr/bin/env bash
# Builds the release libohassist_ffi.so and generates the Kotlin, Swift and Python bindings
# from it (uniffi "library mode": the interface is read from the library's metadata, so the
# bindings always match the binary they ship with).
#
#   bindings/generate.sh            # -> bindings/generated/{kotlin,swift,python}
#   PROFILE=debug bindings/generate.sh
#
# Output goes to bindings/generated/ (gitignored); the library is copied next to the Python
# module so `python3 -c 'import ohassist_ffi'` works from that folder.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE="${PROFILE:-release}"
OUT=bindings/generated
if [ "$PROFILE" = release ]; then
    cargo build -p ohassist-ffi --release
else
    cargo build -p ohassist-ffi
fi
cargo build -p uniffi-bindgen
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
LIB="$TARGET_DIR/$PROFILE/libohassist_ffi.so"
BINDGEN="$TARGET_DIR/debug/uniffi-bindgen"

rm -rf "$OUT"
for lang in kotlin swift python; do
    "$BINDGEN" generate --library "$LIB" --language "$lang" --out-dir "$OUT/$lang" --no-format
done
cp "$LIB" "$OUT/python/"
echo "generated from $LIB into $OUT/{kotlin,swift,python}"
