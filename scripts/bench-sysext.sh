#!/usr/bin/env bash
# bench-sysext.sh - time and size of `flatbake sysext pack` against mksquashfs.
#
# Usage: scripts/bench-sysext.sh [--size MB] [--keep DIR] [COMPRESSOR...]
#
# Builds a mixed source tree of about MB megabytes (default 250): copies of this
# machine's /usr/bin, /usr/lib/x86_64-linux-gnu (or the arch's equivalent) and
# /usr/share (ELF binaries, libraries, text, many small and duplicate files), plus
# 48 MiB of incompressible data and a duplicated file. Then, for each COMPRESSOR
# (default: gzip zstd xz lz4), packs it with the release flatbake binary and with
# mksquashfs with what flatbake writes: the same compressor, level and block size
# (128 KiB), root ownership, a fixed time, no export or xattr table; both on every CPU.
# It prints wall time, CPU time and image size side by side, and the machine's load
# average before and after (on a shared machine the times are noisy; the ratios come
# from the same run). Every image is checked with `unsquashfs -s`, and flatbake's file
# must be its bytes_used padded to 4 KiB (no stale data). A ratio table (flatbake /
# mksquashfs, size and wall time) follows; the goals are size <= 1.01 and time <= 1.
#
# Requires: cargo (builds target/release/flatbake), mksquashfs, unsquashfs, awk.

set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

size_mb=250
keep=""
comps=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --size) size_mb=$2; shift 2 ;;
        --keep) keep=$2; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        -*) echo "bench-sysext.sh: unknown option $1" >&2; exit 2 ;;
        *) comps+=("$1"); shift ;;
    esac
done
[[ ${#comps[@]} -gt 0 ]] || comps=(gzip zstd xz lz4)

for t in mksquashfs unsquashfs cargo; do
    command -v "$t" >/dev/null || { echo "bench-sysext.sh: missing $t" >&2; exit 1; }
done

cargo build --release --locked --quiet --bin flatbake
bin=$PWD/target/release/flatbake

if [[ -n $keep ]]; then
    work=$keep
    mkdir -p "$work"
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/flatbake-bench.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi
tree=$work/tree

# --- the source tree -------------------------------------------------------------
if [[ ! -d $tree ]]; then
    echo "building a ~${size_mb} MB source tree in $tree"
    mkdir -p "$tree/usr/lib" "$tree/opt/bench"
    budget=$(( size_mb * 1024 * 1024 - 64 * 1024 * 1024 ))
    libdir=/usr/lib/$(uname -m)-linux-gnu
    # a third of the budget each, so binaries, libraries and small data files all appear
    total=$budget
    for src in /usr/bin "$libdir" /usr/share; do
        budget=$(( total / 3 ))
        [[ -d $src ]] || continue
        dst=$tree/usr/lib/copy$(tr / _ <<<"$src")
        mkdir -p "$dst"
        # regular files and symlinks only, in a stable order, until the budget is spent
        while IFS= read -r -d '' f; do
            rel=${f#"$src"/}
            if [[ -L $f ]]; then
                mkdir -p "$dst/$(dirname "$rel")"
                cp -P "$f" "$dst/$rel"
                continue
            fi
            sz=$(stat -c %s "$f")
            (( budget > 4096 )) || break
            (( budget > sz )) || continue
            mkdir -p "$dst/$(dirname "$rel")"
            cp "$f" "$dst/$rel" 2>/dev/null && budget=$(( budget - sz ))
        done < <(find "$src" \( -type f -o -type l \) -readable -print0 | sort -z)
    done
    # incompressible data and a duplicate of it
    if command -v openssl >/dev/null; then
        head -c $(( 48 * 1024 * 1024 )) /dev/zero |
            openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f -iv 00000000000000000000000000000000 >"$tree/opt/bench/random"
    else
        head -c $(( 48 * 1024 * 1024 )) /dev/urandom >"$tree/opt/bench/random"
    fi
    head -c $(( 16 * 1024 * 1024 )) "$tree/opt/bench/random" >"$tree/opt/bench/dup-a"
    cp "$tree/opt/bench/dup-a" "$tree/opt/bench/dup-b"
    find "$tree" -type d -exec chmod 0755 {} +
fi
files=$(find "$tree" -type f | wc -l)
bytes=$(du -sb "$tree" | cut -f1)
printf 'tree: %d files, %d MiB, %d CPUs, load average %s\n\n' "$files" $(( bytes / 1024 / 1024 )) \
    "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"

# --- runs --------------------------------------------------------------------------
export SOURCE_DATE_EPOCH=1700000000
TIMEFORMAT='%R %U %S'
results=()
ratios=()
last_wall=0
last_size=0

# measure LABEL OUT CMD...: run CMD, record wall and CPU seconds and OUT's size
measure() {
    local label=$1 out=$2 t
    shift 2
    rm -f "$out"
    sync
    t=$( { time "$@" >/dev/null 2>"$work/err"; } 2>&1 ) || { cat "$work/err" >&2; exit 1; }
    read -r wall user sys <<<"$t"
    local size used
    used=$(unsquashfs -s "$out" | awk '/^Filesystem size/ { print $3 }')
    size=$(stat -c %s "$out")
    if (( size != (used + 4095) / 4096 * 4096 )); then
        echo "bench-sysext.sh: $label: file is $size bytes, filesystem $used bytes" >&2
        exit 1
    fi
    last_wall=$wall
    last_size=$size
    results+=("$(awk -v l="$label" -v w="$wall" -v u="$user" -v s="$sys" -v b="$size" \
        'BEGIN { printf "%-34s %8.1f s %8.1f s %10.1f MiB", l, w, u + s, b / 1048576 }')")
}

level_args() {
    case $1 in
        gzip) echo "-Xcompression-level 9" ;;
        zstd) echo "-Xcompression-level 15" ;;
        *) echo "" ;;
    esac
}

for c in "${comps[@]}"; do
    img=$work/bench-1-x86-64.raw
    measure "flatbake sysext pack ($c)" "$img" \
        "$bin" sysext pack "$tree" --name bench --version 1 --arch x86-64 --compression "$c" -o "$img"
    fb_wall=$last_wall fb_size=$last_size
    # mksquashfs does not write the extension-release: it is 1 small file, left out
    # shellcheck disable=SC2046
    measure "mksquashfs ($c, $(nproc) procs)" "$work/mk.raw" \
        env -u SOURCE_DATE_EPOCH mksquashfs "$tree" "$work/mk.raw" -noappend -quiet -all-root \
        -no-exports -no-xattrs -comp "$c" $(level_args "$c") -b 131072 -mkfs-time 0 -all-time 0
    ratios+=("$(awk -v c="$c" -v fs="$fb_size" -v ms="$last_size" -v fw="$fb_wall" -v mw="$last_wall" \
        'BEGIN { printf "%-8s %12.4f %12.2f", c, fs / ms, fw / mw }')")
done

printf '%-34s %10s %10s %14s\n' "" "wall" "cpu" "size"
printf '%s\n' "${results[@]}"
printf '\nflatbake / mksquashfs (same compressor, level, block size; load average now %s)\n' \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %12s %12s\n' "comp" "size" "time"
printf '%s\n' "${ratios[@]}"
