#!/usr/bin/env bash
# make-hostile-fixtures.sh - (re)build the small hostile-input corpus under
# fixtures/hostile/ that tests/hostile.rs feeds to flatbake. The files are committed;
# run this only to regenerate them after changing a recipe here.
#
# Usage: scripts/make-hostile-fixtures.sh [OUTDIR]   (default: fixtures/hostile)
#
# Writes:
#   sqfs-bad-magic-version.raw   a sysext squashfs claiming squashfs version 9.9
#   sqfs-bad-block-size.raw      block_size 12345 (not a power of two)
#   sqfs-bad-compressor.raw      compressor id 99
#   sqfs-tables-past-end.raw     inode/directory table offsets past the end of the file
#   sqfs-short.raw               the first 200 bytes of a squashfs only
#   release-huge-1.0-x86-64.raw      extension-release.release-huge of 128 KiB
#   release-binary-1.0-x86-64.raw    extension-release.release-binary of binary bytes
#   release-noid-1.0-x86-64.raw      extension-release.release-noid without an ID= line
#   release-garbage-1.0-x86-64.raw   extension-release.release-garbage with a non KEY=value line
#   release-dir-1.0-x86-64.raw       extension-release.release-dir is a directory
#   sysupdate-not-unit.conf      JSON, not a unit-style file
#   sysupdate-binary.conf        binary bytes
#   qcow2-bad-cluster-bits.qcow2 qcow2 header with cluster_bits 40
#   qcow2-l1-past-end.qcow2      qcow2 header whose L1 table lies past the end of the file
#   qcow2-version-7.qcow2        qcow2 version 7
#   truncated.bin.bz2            a bzip2 stream cut in the middle
#   trailing-garbage.bin.bz2     a complete bzip2 stream followed by non-bzip2 bytes
#
# Requires: mksquashfs, bzip2, python3 (byte patching).

set -euo pipefail

export SOURCE_DATE_EPOCH=1700000000
export LC_ALL=C

prog=${0##*/}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/fixtures/hostile}
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/flatbake-hostile.XXXXXX")
trap 'rm -rf "$work"' EXIT

for t in mksquashfs bzip2 python3; do
    command -v "$t" >/dev/null || { echo "$prog: missing tool: $t" >&2; exit 1; }
done

# squash NAME TREE: a reproducible squashfs of TREE
squash() {
    rm -f "$out/$1"
    mksquashfs "$2" "$out/$1" -all-root -noappend -quiet -no-progress \
        -comp gzip >/dev/null
}

# patch FILE OFFSET FORMAT VALUE: overwrite a little-endian integer (struct FORMAT)
patch() {
    python3 - "$@" <<'PY'
import struct, sys
path, off, fmt, val = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
with open(path, 'r+b') as f:
    f.seek(off)
    f.write(struct.pack('<' + fmt, val))
PY
}

# tree NAME CONTENT-FILE: a sysext tree whose extension-release.NAME is CONTENT-FILE
tree() {
    local d=$work/$1
    mkdir -p "$d/usr/lib/extension-release.d" "$d/usr/bin"
    printf '#!/bin/sh\necho %s\n' "$1" >"$d/usr/bin/$1"
    cp "$2" "$d/usr/lib/extension-release.d/extension-release.$1"
    echo "$d"
}

printf 'ID=flatcar\nSYSEXT_LEVEL=1.0\nARCHITECTURE=x86-64\n' >"$work/good-release"
good=$(tree good "$work/good-release")
squash good.raw "$good"

# squashfs superblock: version at 28 (u16 major), block_size at 12 (u32),
# compressor at 20 (u16), inode_table at 64 and directory_table at 72 (u64)
cp "$out/good.raw" "$out/sqfs-bad-magic-version.raw"
patch "$out/sqfs-bad-magic-version.raw" 28 H 9
cp "$out/good.raw" "$out/sqfs-bad-block-size.raw"
patch "$out/sqfs-bad-block-size.raw" 12 I 12345
cp "$out/good.raw" "$out/sqfs-bad-compressor.raw"
patch "$out/sqfs-bad-compressor.raw" 20 H 99
cp "$out/good.raw" "$out/sqfs-tables-past-end.raw"
patch "$out/sqfs-tables-past-end.raw" 64 Q $((1 << 40))
patch "$out/sqfs-tables-past-end.raw" 72 Q $(((1 << 40) + 4096))
head -c 200 "$out/good.raw" >"$out/sqfs-short.raw"
rm "$out/good.raw"

# extension-release files with odd contents
{ printf 'ID=flatcar\nSYSEXT_LEVEL=1.0\n'; for i in $(seq 1 4096); do printf '# padding line %05d......\n' "$i"; done; } >"$work/huge"
squash release-huge-1.0-x86-64.raw "$(tree release-huge "$work/huge")"
printf 'ID=flatcar\n\x00\x01\x02\xff\xfe binary\n' >"$work/binary"
squash release-binary-1.0-x86-64.raw "$(tree release-binary "$work/binary")"
printf 'SYSEXT_LEVEL=1.0\nARCHITECTURE=x86-64\n' >"$work/noid"
squash release-noid-1.0-x86-64.raw "$(tree release-noid "$work/noid")"
printf 'ID=flatcar\nSYSEXT_LEVEL=1.0\nthis line has no equals sign\n' >"$work/garbage"
squash release-garbage-1.0-x86-64.raw "$(tree release-garbage "$work/garbage")"
d=$(tree release-dir "$work/good-release")
rm "$d/usr/lib/extension-release.d/extension-release.release-dir"
mkdir "$d/usr/lib/extension-release.d/extension-release.release-dir"
squash release-dir-1.0-x86-64.raw "$d"

# sysupdate configs that are not unit-style files
printf '{"Transfer": {"Verify": false}, "Source": "https://example.com"}\n' >"$out/sysupdate-not-unit.conf"
printf '[Source]\n\x00\x01\x02\xff binary\n' >"$out/sysupdate-binary.conf"

# qcow2 headers (big-endian): magic, version u32 @4, backing u64 @8, cluster_bits u32 @20,
# size u64 @24, crypt u32 @32, l1_size u32 @36, l1_offset u64 @40
qcow2() { # FILE VERSION CLUSTER_BITS SIZE L1_SIZE L1_OFFSET
    python3 - "$@" <<'PY'
import struct, sys
path, version, bits, size, l1_size, l1_off = sys.argv[1], *map(int, sys.argv[2:])
h = bytearray(4096)
h[0:4] = b'QFI\xfb'
struct.pack_into('>I', h, 4, version)
struct.pack_into('>I', h, 20, bits)
struct.pack_into('>Q', h, 24, size)
struct.pack_into('>I', h, 36, l1_size)
struct.pack_into('>Q', h, 40, l1_off)
struct.pack_into('>I', h, 100, 104)  # v3 header length
open(path, 'wb').write(h)
PY
}
qcow2 "$out/qcow2-bad-cluster-bits.qcow2" 3 40 $((1 << 30)) 1 65536
qcow2 "$out/qcow2-l1-past-end.qcow2" 3 16 $((1 << 30)) 8 $((1 << 20))
qcow2 "$out/qcow2-version-7.qcow2" 7 16 $((1 << 30)) 8 65536

# bzip2 streams
python3 -c 'import sys; sys.stdout.buffer.write(bytes((i * 7919) % 251 for i in range(300000)))' >"$work/data"
bzip2 -9 -c "$work/data" >"$work/data.bz2"
head -c $(($(stat -c %s "$work/data.bz2") / 2)) "$work/data.bz2" >"$out/truncated.bin.bz2"
{ cat "$work/data.bz2"; printf 'this is not bzip2 data\n'; } >"$out/trailing-garbage.bin.bz2"

du -sh "$out"
