#!/usr/bin/env bash
# bench-target.sh - time of reading a target image's /usr/lib/os-release:
# `flatbake sysext check --target IMAGE ext.raw` (reads USR-A's btrfs in place) against
# what one would otherwise run (and flatbake ran before): USR-A copied out sparse and
# `btrfs restore --path-regex` of that one file.
#
# Usage: scripts/bench-target.sh [--usr-data-mib N] [--bin FLATBAKE]
#
# Makes a fixture image (scripts/make-fixture-image.sh --layout full) with N MiB
# (default 400) of mostly incompressible data in USR-A, a matching sysext, and prints
# both wall times and their ratio in one run. Requires: make-fixture-image.sh's tools,
# mksquashfs, btrfs, sgdisk, awk.

set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

mib=400
bin=target/debug/flatbake
while [[ $# -gt 0 ]]; do
    case $1 in
        --usr-data-mib) mib=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "bench-target.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ -x $bin ]] || cargo build -q
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
scripts/make-fixture-image.sh "$dir/img.bin" --layout full --usr-data-mib "$mib" >/dev/null
mkdir -p "$dir/ext/usr/lib/extension-release.d"
printf 'ID=flatcar\nSYSEXT_LEVEL=1.0\n' >"$dir/ext/usr/lib/extension-release.d/extension-release.ext"
mksquashfs "$dir/ext" "$dir/ext.raw" -quiet -noappend -all-root >/dev/null

now() { date +%s.%N; }
t0=$(now)
"$bin" sysext check --target "$dir/img.bin" "$dir/ext.raw" >/dev/null
t1=$(now)
read -r start end < <(sgdisk -i 3 "$dir/img.bin" | awk '/^First sector/{s=$3} /^Last sector/{e=$3} END{print s, e}')
dd if="$dir/img.bin" of="$dir/usr.img" bs=512 skip="$start" count=$((end - start + 1)) \
    conv=sparse status=none
mkdir "$dir/out"
btrfs restore --path-regex='^/(|lib(|/os-release))$' "$dir/usr.img" "$dir/out" >/dev/null
t2=$(now)
cmp -s "$dir/out/lib/os-release" <(printf '') && { echo "restore gave nothing" >&2; exit 1; }
awk -v a="$t0" -v b="$t1" -v c="$t2" -v m="$mib" 'BEGIN {
    printf "USR-A data %d MiB\n", m
    printf "flatbake sysext check --target: %6.2f s\n", b - a
    printf "sparse copy + btrfs restore:    %6.2f s (%.0fx)\n", c - b, (c - b) / (b - a)
}'
