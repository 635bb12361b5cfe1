#!/usr/bin/env bash
# Benchmarks flatbake's parallel bzip2 -> sparse decompression against bunzip2 and
# lbzip2 -d on the same multi-block file, printing wall time, speed ratio (vs bunzip2)
# and peak RSS in one table.
#
# Usage: scripts/bench-decompress.sh [SIZE_MIB] [WORKDIR]
#   SIZE_MIB  uncompressed test image size (default 512), mostly zeros, ~10% random data
#   WORKDIR   where to put the files (default: a temp dir, removed afterwards)
# Needs: lbzip2, bzip2, time (GNU /usr/bin/time), cargo.
set -euo pipefail

size_mib=${1:-512}
repo=$(cd "$(dirname "$0")/.." && pwd)
if [[ -n ${2:-} ]]; then
    work=$2
    mkdir -p "$work"
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi
for tool in lbzip2 bunzip2 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install lbzip2 bzip2 time)" >&2; exit 1; }
done

echo "building examples/decompress (release)..." >&2
(cd "$repo" && cargo build --quiet --release --example decompress)
bin=${CARGO_TARGET_DIR:-$repo/target}/release/examples/decompress

img=$work/bench.img
if [[ ! -f $img.bz2 ]]; then
    echo "making a ${size_mib} MiB test image..." >&2
    : >"$img"
    # 16 MiB chunks: 1.5 MiB random + a little text, the rest zeros (like a disk image).
    chunks=$(( (size_mib + 15) / 16 ))
    for ((i = 0; i < chunks; i++)); do
        head -c $((1536 * 1024)) /dev/urandom >>"$img"
        seq 1 20000 >>"$img"
        truncate -s $(( (i + 1) * 16 * 1024 * 1024 )) "$img"
    done
    truncate -s $((size_mib * 1024 * 1024)) "$img"
    lbzip2 -9 -f -k "$img"
    rm -f "$img"
fi
in=$img.bz2
out=$work/out.bin
csize=$(stat -c %s "$in")

run() { # name command...
    local name=$1; shift
    rm -f "$out"
    /usr/bin/time -f "%e %M" -o "$work/time.txt" "$@" >/dev/null
    read -r wall rss <"$work/time.txt"
    echo "$name $wall $rss"
}

results=()
results+=("$(run bunzip2 sh -c "bunzip2 -c '$in' > '$out'")")
ref=$(sha256sum <"$out" | cut -d' ' -f1)
results+=("$(run 'lbzip2 -d' sh -c "lbzip2 -d -c '$in' > '$out'")")
results+=("$(run 'flatbake 1 thread' "$bin" "$in" "$out" 1)")
results+=("$(run 'flatbake all cores' "$bin" "$in" "$out" 0)")
got=$(sha256sum <"$out" | cut -d' ' -f1)
[[ $got == "$ref" ]] || { echo "MISMATCH: flatbake output differs from bunzip2" >&2; exit 1; }
alloc=$(( $(stat -c %b "$out") * $(stat -c %B "$out") ))

base=$(echo "${results[0]}" | awk '{print $(NF-1)}')
printf '\ninput: %s (%d MiB compressed, %d MiB raw), %s cores\n' \
    "$in" $((csize >> 20)) "$size_mib" "$(nproc)"
printf 'flatbake output: %d MiB allocated of %d MiB (sparse), sha256 matches bunzip2\n\n' \
    $((alloc >> 20)) "$size_mib"
printf '%-20s %10s %14s %14s\n' tool "wall (s)" "vs bunzip2" "peak RSS (MiB)"
for r in "${results[@]}"; do
    wall=$(echo "$r" | awk '{print $(NF-1)}')
    rss=$(echo "$r" | awk '{print $NF}')
    name=${r% * *}
    ratio=$(awk -v b="$base" -v w="$wall" 'BEGIN { if (w > 0) printf "%.2fx", b / w; else print "-" }')
    printf '%-20s %10s %14s %14d\n' "$name" "$wall" "$ratio" $((rss / 1024))
done
