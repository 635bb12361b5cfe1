#!/usr/bin/env bash
# The main job end to end on built-in sample data, no internet:
#   flatbake --fetch --vendor qemu_uefi wasmtime:wasmtime-v24.0.0-x86-64.raw
# against a sample Flatcar release and bakery served on 127.0.0.1 (signed with a
# throwaway key, see scripts/serve-sample-release.sh), then `flatbake inspect` of the
# result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked --quiet
FB="$PWD/target/debug/flatbake"
W="$PWD/work/demo"
rm -rf "$W" && mkdir -p "$W/out"
port=${DEMO_PORT:-18321}

echo "== serving a sample Flatcar release and bakery on 127.0.0.1:$port"
pid=$(bash scripts/serve-sample-release.sh "$W/server" "$port")
trap 'kill "$pid" 2>/dev/null || true' EXIT

export FLATBAKE_RELEASE_URL="http://127.0.0.1:$port"
export FLATBAKE_BAKERY_URL="http://127.0.0.1:$port"
echo "== flatbake --fetch --vendor qemu_uefi wasmtime:wasmtime-v24.0.0-x86-64.raw"
"$FB" --fetch --vendor qemu_uefi --sysupdate \
    --signing-key "$W/server/signing-key.asc" --image-cache "$W/cache" --output-dir "$W/out" \
    wasmtime:wasmtime-v24.0.0-x86-64.raw

echo "== outputs"
ls -la "$W/out"
echo "== again: everything comes from the cache"
"$FB" fetch --signing-key "$W/server/signing-key.asc" --image-cache "$W/cache" >/dev/null
echo "== done: $W/out"
