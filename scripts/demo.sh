#!/usr/bin/env bash
# The main job end to end on built-in sample data, no internet: build a small
# Flatcar-faithful image and sample sysexts, bake two sysexts into it (one into ROOT
# with its sysupdate config, one into OEM), then show what was baked, read back with
# e2fsprogs and btrfs-progs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked --quiet
FB="$PWD/target/debug/flatbake"
W="$PWD/work/demo"
rm -rf "$W" && mkdir -p "$W"

echo "== building sample data in $W"
bash scripts/make-fixture-image.sh "$W/flatcar_production_image.bin" >/dev/null
bash scripts/make-fixture-sysexts.sh "$W/sysexts" >/dev/null

echo "== baking"
"$FB" --image "$W/flatcar_production_image.bin" --output "$W/baked.bin" \
    --install-to myext=oem:/sysext \
    wasmtime:"$W/sysexts/wasmtime-24.0.0-x86-64.raw" myext:"$W/sysexts/myext-1.0-x86-64.raw"

echo "== what ROOT holds now (debugfs)"
root=$(sgdisk -i 9 "$W/baked.bin" | awk '/First sector/ {print $3 * 512}')
for d in /etc/extensions /opt/extensions/wasmtime /etc/sysupdate.wasmtime.d; do
    echo "-- $d"
    debugfs -R "ls -l $d" "$W/baked.bin?offset=$root" 2>/dev/null
done
e2fsck -fn "$W/baked.bin?offset=$root" >/dev/null && echo "ROOT: e2fsck -fn clean"
sgdisk -v "$W/baked.bin" | grep -q "No problems found" && echo "GPT: sgdisk -v clean"
echo "== done: $W/baked.bin"
