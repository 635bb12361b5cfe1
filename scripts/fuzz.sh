#!/usr/bin/env bash
# fuzz.sh - build the cargo-fuzz targets under fuzz/ and run each for a bounded time.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  per target (default 30); TARGETs default to all of them.
#   FUZZ_BUILD=0 runs the binaries already built (one `cargo fuzz build -s none -a`
#   builds every target; on a shared 2-core machine that is ~5 minutes, run it
#   `nice -n 19`).
#
# Targets: gpt (disk::gpt::Gpt::parse on a whole disk image), release_file
# (extension-release), version_txt, sha256sums, digests, squashfs (our superblock
# check, backhand's tables, our directory depth pre-scan, backhand's tree), erofs (our
# reader and its bounded walk), fat (the ESP's arch probe and first_boot lookup),
# btrfs_tree (the OEM btrfs metadata reader and its bounded tree walks; input is sparse
# records, see the target) and ext4_super (ROOT's superblock checks). Seeds are written to fuzz/corpus/TARGET
# when it is empty; crashes land in fuzz/artifacts/TARGET. Exits 1 if any target
# crashed (or failed to run), after a summary line per target.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). cargo-fuzz needs nightly
# flags; on a stable toolchain RUSTC_BOOTSTRAP=1 allows them. Built without a
# sanitizer (safe Rust; -s none builds and runs much faster) but with debug
# assertions and overflow checks. Not part of scripts/test.sh.

set -uo pipefail

secs=${1:-30}
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
all=(gpt release_file version_txt sha256sums digests squashfs erofs fat btrfs_tree ext4_super)
[[ $# -gt 0 ]] && targets=("$@") || targets=("${all[@]}")
export RUSTC_BOOTSTRAP=1
cd "$root/fuzz"

command -v cargo-fuzz >/dev/null || { echo "fuzz.sh: cargo-fuzz missing: cargo install cargo-fuzz --locked" >&2; exit 2; }

seed() { # TARGET: write a few valid inputs when the corpus is empty
    local t=$1 dir=corpus/$1
    mkdir -p "$dir"
    [[ -n $(ls -A "$dir") ]] && return
    case $t in
    gpt)
        truncate -s 64K "$dir/disk"
        sgdisk -a 1 -n 1:34:60 -c 1:EFI-SYSTEM -n 2:61:90 -c 2:ROOT "$dir/disk" >/dev/null
        ;;
    release_file)
        printf 'ID=flatcar\nSYSEXT_LEVEL=1.0\nARCHITECTURE=x86-64\n' >"$dir/a"
        printf '# c\nID=_any\nNAME="A \\"q\\""\nX='"'"'b c'"'"'\n' >"$dir/b"
        ;;
    version_txt)
        printf 'FLATCAR_BUILD=4593\nFLATCAR_BRANCH=2\nFLATCAR_PATCH=5\nFLATCAR_VERSION=4593.2.5\nFLATCAR_VERSION_ID=4593.2.5\nFLATCAR_BUILD_ID="2025-01-01"\nFLATCAR_SDK_VERSION=4593.0.0\n' >"$dir/a"
        ;;
    sha256sums)
        printf '%064d  flatcar_production_image.bin.bz2\n%064x *wasmtime-v24.0.0-x86-64.raw\n' 0 255 >"$dir/a"
        ;;
    digests)
        printf '# MD5 HASH\nd41d8cd98f00b204e9800998ecf8427e  x.bin\n# SHA1 HASH\nda39a3ee5e6b4b0d3255bfef95601890afd80709  x.bin\n# SHA512 HASH\n%0128d  flatcar_production_image.bin.bz2\n' 0 >"$dir/a"
        ;;
    squashfs)
        cp "$root"/fixtures/hostile/release-*.raw "$dir/"
        ;;
    erofs)
        local tree
        tree=$(mktemp -d)
        mkdir -p "$tree/usr/lib/extension-release.d"
        printf 'ID=_any\n' >"$tree/usr/lib/extension-release.d/extension-release.x"
        head -c 5000 /dev/zero | tr '\0' 'a' >"$tree/usr/big"
        mkfs.erofs --quiet "$dir/x.erofs" "$tree" >/dev/null
        rm -rf "$tree"
        ;;
    fat)
        local a
        for a in x64 aa64; do
            mkfs.fat -C "$dir/$a.img" 64 >/dev/null
            mmd -i "$dir/$a.img" ::EFI ::EFI/boot ::flatcar
            : | mcopy -i "$dir/$a.img" - "::EFI/boot/boot$a.efi"
        done
        : | mcopy -i "$dir/x64.img" - ::flatcar/first_boot
        ;;
    btrfs_tree)
        local tree img
        tree=$(mktemp -d)
        img=$(mktemp)
        mkdir -p "$tree/sysext" "$tree/bin"
        printf 'set linux_append=""\n' >"$tree/grub.cfg"
        ln -s ../grub.cfg "$tree/bin/link"
        truncate -s 120M "$img"
        mkfs.btrfs -q -m single -d single --rootdir "$tree" "$img" >/dev/null 2>&1
        # sparse records: [u32 LE sector][u16 LE length][bytes] for each non-zero run
        python3 - "$img" "$dir/oem" <<'PY'
import struct, sys
data = open(sys.argv[1], 'rb').read()
runs = []
for s in range(0, len(data), 512):
    if any(data[s:s + 512]):
        if runs and runs[-1][1] == s and runs[-1][1] - runs[-1][0] < 65024:
            runs[-1][1] = s + 512
        else:
            runs.append([s, s + 512])
with open(sys.argv[2], 'wb') as out:
    for a, b in runs:
        out.write(struct.pack('<IH', a // 512, b - a) + data[a:b])
PY
        rm -rf "$tree" "$img"
        ;;
    ext4_super)
        local img
        img=$(mktemp)
        truncate -s 64M "$img"
        mkfs.ext4 -q -F "$img"
        { printf '\x00\x00\x00\x04\x00\x00\x00\x00'; dd if="$img" bs=1024 skip=1 count=1 status=none; } >"$dir/root"
        rm -f "$img"
        ;;
    esac
}

max_len() {
    case $1 in
    gpt | squashfs | erofs | fat) echo 65536 ;;
    btrfs_tree) echo 131072 ;;
    *) echo 4096 ;;
    esac
}

if [[ ${FUZZ_BUILD:-1} != 0 ]]; then
    echo "fuzz.sh: building ${targets[*]}"
    cargo fuzz build -s none -a >/dev/null 2>build.log || { cat build.log >&2; exit 1; }
    rm -f build.log
fi
bin=target/$(rustc -vV | sed -n 's/^host: //p')/release

fail=0
summary=()
for t in "${targets[@]}"; do
    seed "$t"
    mkdir -p "artifacts/$t" "regressions/$t"
    log=$(mktemp)
    # run the built binary itself (cargo fuzz run would rebuild for another profile);
    # -timeout: one input taking 10 s is a hang
    "$bin/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$secs" -max_len="$(max_len "$t")" \
        -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "corpus/$t" "regressions/$t" >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    crashes=$(find "artifacts/$t" -type f | wc -l)
    if [[ $rc -ne 0 ]]; then
        fail=1
        summary+=("$t: FAILED (exit $rc) after ${execs:-?} runs; artifacts/$t: $crashes file(s); log: $(grep -m1 -E 'panicked|ERROR|error' "$log")")
        cp "$log" "artifacts/$t/last.log"
    else
        summary+=("$t: ok, ${execs:-?} runs in ${secs}s, corpus $(ls "corpus/$t" | wc -l) inputs")
    fi
    rm -f "$log"
done
echo "fuzz.sh summary (${secs}s per target):"
printf '  %s\n' "${summary[@]}"
exit $fail
