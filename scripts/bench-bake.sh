#!/usr/bin/env bash
# End-to-end bake from a cached flatcar_production_image.bin.bz2, flatbake against the
# bash way, in one run, on a full-size (8 GiB sparse) Flatcar-faithful image:
#   flatbake:  decompress (parallel, sparse) + `flatbake --image ... NAME:FILE`
#   bash way:  bunzip2 (and lbzip2 -d) + losetup -P + mount ROOT + cp + ln -s + umount + losetup -d
# Prints wall time, peak RSS and the flatbake/bash ratio. Needs root (the bash way
# mounts) and the packages of scripts/setup.sh. BENCH_DIR keeps the files.
# Usage: scripts/bench-bake.sh [USR_DATA_MIB]   (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-bake.sh: the bash way needs root (losetup, mount)" >&2; exit 1; }
data=${1:-300}
dir=${BENCH_DIR:-$(mktemp -d -p "${TMPDIR:-/var/tmp}" flatbake-bench.XXXXXX)}
mkdir -p "$dir"
cargo build --quiet --release --bin flatbake --example decompress
fb=target/release/flatbake
dec=target/release/examples/decompress

if [ ! -f "$dir/flatcar_production_image.bin.bz2" ]; then
    echo "building a full-size image with ${data} MiB in /usr and compressing it (lbzip2)..." >&2
    bash scripts/make-fixture-image.sh "$dir/flatcar_production_image.bin" --layout full --usr-data-mib "$data" >/dev/null
    lbzip2 -f "$dir/flatcar_production_image.bin"
    bash scripts/make-fixture-sysexts.sh "$dir/sysexts" >/dev/null
fi
ext="$dir/sysexts/wasmtime-v24.0.0-x86-64.raw"

t() { # command...: wall seconds and peak RSS (KiB) into $wall/$rss
    /usr/bin/time -f '%e %M' -o "$dir/time.txt" "$@" >/dev/null 2>"$dir/cmd.err" ||
        { cat "$dir/cmd.err" >&2; exit 1; }
    read -r wall rss < "$dir/time.txt"
}

rm -f "$dir/fb.bin" "$dir/fb-baked.bin"
t "$dec" "$dir/flatcar_production_image.bin.bz2" "$dir/fb.bin"; fb_dec=$wall; fb_dec_rss=$rss
t "$fb" --image "$dir/fb.bin" --output "$dir/fb-baked.bin" "wasmtime:$ext"; fb_bake=$wall; fb_bake_rss=$rss

bash_way() { # decompressor
    local img="$dir/bash.bin" mnt="$dir/mnt" dev
    rm -f "$img"
    "$1" -dc "$dir/flatcar_production_image.bin.bz2" > "$img"
    dev=$(losetup -fP --show "$img")
    mkdir -p "$mnt"
    mount "${dev}p9" "$mnt"
    mkdir -p "$mnt/opt/extensions/wasmtime" "$mnt/etc/extensions"
    cp "$ext" "$mnt/opt/extensions/wasmtime/"
    ln -sf /opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw "$mnt/etc/extensions/wasmtime.raw"
    umount "$mnt"
    losetup -d "$dev"
}
export -f bash_way; export dir ext
t bash -c 'bash_way bunzip2'; bz_wall=$wall; bz_rss=$rss
t bash -c 'bash_way lbzip2'; lbz_wall=$wall; lbz_rss=$rss

fb_total=$(echo "$fb_dec + $fb_bake" | bc)
ratio() { echo "scale=2; $1 / $2" | bc; }
printf '\n%-44s %9s %12s %12s\n' "end-to-end bake (8 GiB image, ${data} MiB /usr)" "wall s" "peak RSS MiB" "vs bash+bunzip2"
printf '%-44s %9s %12s %12s\n' "flatbake decompress (all cores, sparse)" "$fb_dec" "$((fb_dec_rss / 1024))" ""
printf '%-44s %9s %12s %12s\n' "flatbake bake (rootless)" "$fb_bake" "$((fb_bake_rss / 1024))" ""
printf '%-44s %9s %12s %12s\n' "flatbake total" "$fb_total" "" "$(ratio "$fb_total" "$bz_wall")x"
printf '%-44s %9s %12s %12s\n' "bash: bunzip2 + losetup/mount/cp/umount" "$bz_wall" "$((bz_rss / 1024))" "1.00x"
printf '%-44s %9s %12s %12s\n' "bash: lbzip2 -d + losetup/mount/cp/umount" "$lbz_wall" "$((lbz_rss / 1024))" "$(ratio "$lbz_wall" "$bz_wall")x"
printf 'allocated: flatbake output %s, bash output %s (of %s)\n' \
    "$(du -h "$dir/fb-baked.bin" | cut -f1)" "$(du -h "$dir/bash.bin" | cut -f1)" "$(du -h --apparent-size "$dir/bash.bin" | cut -f1)"
