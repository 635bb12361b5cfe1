#!/usr/bin/env bash
# Benchmark flatbake's compressed writers against qemu-img on the same raw image:
#   qcow2-compressed        vs  qemu-img convert -c -O qcow2 -o compat=0.10
#   vmdk-stream-optimized   vs  qemu-img convert -O vmdk -o subformat=streamOptimized
# Prints wall time, output size and peak RSS side by side with flatbake/qemu ratios,
# and checks every output with `qemu-img compare`.
#
# usage: scripts/bench-formats.sh [RAW_IMAGE]
# Without RAW_IMAGE it builds a 2 GiB sparse image with ~400 MiB of data: 120 MiB
# random (incompressible), 240 MiB of this machine's programs and libraries (compress
# like an OS image), a 32 MiB extent of written zeros, scattered small writes.
# Needs qemu-utils and GNU time (scripts/setup.sh installs both). BENCH_DIR keeps files.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${BENCH_DIR:-$(mktemp -d -p "${TMPDIR:-/var/tmp}" flatbake-bench.XXXXXX)}
mkdir -p "$dir"
img=${1:-$dir/bench.raw}

if [ ! -f "$img" ]; then
    echo "building $img ..." >&2
    truncate -s 2G "$img"
    dd if=/dev/urandom of="$img" bs=1M count=120 seek=1 conv=notrunc,fsync status=none
    # (cat is cut off by head: SIGPIPE, hence the || true)
    { find /usr/lib /usr/bin -type f -size +16k 2>/dev/null | sort | xargs cat 2>/dev/null |
        head -c $((240 << 20)) | dd of="$img" bs=1M seek=200 conv=notrunc status=none iflag=fullblock; } || true
    dd if=/dev/zero of="$img" bs=1M count=32 seek=600 conv=notrunc status=none
    for off in 700 900 1100 1500 2040; do
        dd if=/dev/urandom of="$img" bs=64K count=3 seek=$((off * 16)) conv=notrunc status=none
    done
fi

cargo build --release --quiet --example convert
conv=target/release/examples/convert
data=$(du -B1 "$img" | cut -f1)
printf 'input: %s, %s bytes, %s allocated, %s cores\n\n' "$img" "$(stat -c %s "$img")" "$data" "$(nproc)"

# measure NAME OUTPUT CMD...: sets wall, rss_kib, size
measure() {
    local out=$2
    shift 2
    rm -f "$out"
    sync
    /usr/bin/time -f '%e %M' -o "$dir/time.txt" "$@" 2>"$dir/stderr.txt" || {
        cat "$dir/stderr.txt" >&2
        return 1
    }
    read -r wall rss_kib <"$dir/time.txt"
    size=$(stat -c %s "$out")
    qemu-img compare -q -f raw "$img" "$out" || { echo "MISMATCH: $out" >&2; return 1; }
}

row() { # label tool wall size rss
    printf '%-22s %-9s %8.2f s %12d B %9.1f MiB\n' "$1" "$2" "$3" "$4" "$(echo "$5 / 1024" | bc -l)"
}

printf '%-22s %-9s %10s %14s %13s\n' format tool wall size "peak RSS"
for case in qcow2 vmdk; do
    if [ $case = qcow2 ]; then
        name=qcow2-compressed
        qcmd=(qemu-img convert -c -f raw -O qcow2 -o compat=0.10 "$img" "$dir/q.$case")
    else
        name=vmdk-stream-optimized
        qcmd=(qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$img" "$dir/q.$case")
    fi
    measure "$name" "$dir/f.$case" "$conv" "$name" "$img" "$dir/f.$case"
    fw=$wall fs=$size fr=$rss_kib
    measure "$name" "$dir/q.$case" "${qcmd[@]}"
    qw=$wall qs=$size qr=$rss_kib
    row "$name" flatbake "$fw" "$fs" "$fr"
    row "" qemu-img "$qw" "$qs" "$qr"
    printf '%-22s %-9s %8.2fx %13.3fx %12.2fx\n' "" ratio "$(echo "$fw / $qw" | bc -l)" \
        "$(echo "$fs / $qs" | bc -l)" "$(echo "$fr / $qr" | bc -l)"
done
[ -n "${BENCH_DIR:-}" ] || rm -rf "$dir"
