#!/usr/bin/env bash
# make-fixture-sysexts.sh - build sample systemd-sysext images for flatbake tests.
#
# Usage: scripts/make-fixture-sysexts.sh OUTDIR
#
# Writes squashfs sysext images (mksquashfs -all-root -noappend) into OUTDIR,
# each built from a tree holding usr/... files and, normally,
# usr/lib/extension-release.d/extension-release.<NAME>.
#
# Good images (valid for an x86-64 Flatcar with SYSEXT_LEVEL=1.0, except
# armext, which is valid for arm64 images only):
#   wasmtime-v24.0.0-x86-64.raw  ID=flatcar SYSEXT_LEVEL=1.0 ARCHITECTURE=x86-64,
#                               usr/bin/wasmtime + 200 KiB blob; plus
#                               wasmtime.conf, the bakery's sysupdate config
#   docker-27.0.1-x86-64.raw    ID=_any ARCHITECTURE=x86-64, usr/bin/docker
#   myext-1.0-x86-64.raw        ID=_any (no ARCHITECTURE), usr/share/myext/hello
#   armext-1.0-arm64.raw        ID=flatcar SYSEXT_LEVEL=1.0 ARCHITECTURE=arm64
# Bad images (each must be rejected by the baker for an x86-64 image):
#   misnamed-1.0-x86-64.raw     extension-release.othername, not .misnamed
#   norelease-1.0-x86-64.raw    no extension-release file at all
#   wrongid-1.0-x86-64.raw      ID=fedora SYSEXT_LEVEL=1.0
#   wrongarch-1.0-arm64.raw     ID=_any ARCHITECTURE=arm64
#   notsquash-1.0-x86-64.raw    64 KiB of random bytes, not a squashfs
#   big-1.0-x86-64.raw          ID=_any, ~48 MiB of incompressible data
#                               (overflows a 32 MiB partition)
#
# Pseudo-random contents come from AES-CTR keyed by the file name (openssl),
# so they are the same on every run; without openssl /dev/urandom is used.
#
# Requires: mksquashfs; optionally openssl.

set -euo pipefail

export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1700000000}"
export LC_ALL=C

prog=${0##*/}

die() {
    printf '%s: error: %s\n' "$prog" "$*" >&2
    exit 1
}

[[ $# -eq 1 && $1 != -* ]] || {
    printf 'Usage: %s OUTDIR\n' "$prog" >&2
    exit 2
}
outdir=$1

command -v mksquashfs >/dev/null || die "missing tool: mksquashfs"

mkdir -p "$outdir"

work=$(mktemp -d "${TMPDIR:-/tmp}/flatbake-fixture-sysexts.XXXXXX")
cleanup() {
    local rc=$?
    rm -rf "$work"
    [[ $rc -eq 0 ]] || printf '%s: failed (exit %d)\n' "$prog" "$rc" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# mksquashfs options: fixed timestamps (0) when this mksquashfs supports them.
# mksquashfs >= 4.5 also honours SOURCE_DATE_EPOCH but refuses it together with
# -mkfs-time/-all-time ("can't be used at the same time"), so it is removed
# from mksquashfs' environment in that case.
squash_opts=(-all-root -noappend -quiet -processors 1)
squash_env=()
help=$(mksquashfs -help 2>&1 || true)
if grep -q -- '-mkfs-time' <<<"$help" && grep -q -- '-all-time' <<<"$help"; then
    squash_opts+=(-mkfs-time 0 -all-time 0)
    squash_env=(-u SOURCE_DATE_EPOCH)
fi

# pseudo_random BYTES SEED > FILE: BYTES of incompressible data.
pseudo_random() {
    local bytes=$1 seed=$2 key
    if command -v openssl >/dev/null; then
        key=$(printf '%s' "$seed" | sha256sum | cut -c1-32)
        head -c "$bytes" /dev/zero |
            openssl enc -aes-128-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000
    else
        head -c "$bytes" /dev/urandom
    fi
}

# new_tree IMAGE: fresh staging directory for IMAGE (file name without .raw).
new_tree() {
    local tree="$work/$1"
    rm -rf "$tree"
    mkdir -p "$tree/usr"
    printf '%s' "$tree"
}

# release TREE NAME CONTENT: write usr/lib/extension-release.d/extension-release.NAME.
release() {
    local tree=$1 name=$2 content=$3
    mkdir -p "$tree/usr/lib/extension-release.d"
    printf '%b' "$content" >"$tree/usr/lib/extension-release.d/extension-release.$name"
}

# script TREE PATH TEXT: executable shell script at TREE/PATH.
script() {
    local tree=$1 path=$2 text=$3
    mkdir -p "$(dirname "$tree/$path")"
    printf '#!/bin/sh\n%s\n' "$text" >"$tree/$path"
    chmod 0755 "$tree/$path"
}

# squash TREE IMAGE [extra mksquashfs options...]
squash() {
    local tree=$1 image=$2
    shift 2
    find "$tree" -type d -exec chmod 0755 {} +
    find "$tree" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    rm -f "$outdir/$image.raw"
    env "${squash_env[@]}" mksquashfs "$tree" "$outdir/$image.raw" "${squash_opts[@]}" "$@" >/dev/null
}

# ---------------------------------------------------------------------------
# Good images
# ---------------------------------------------------------------------------

# wasmtime: flatcar-specific, x86-64, with the bakery sysupdate config.
img=wasmtime-v24.0.0-x86-64
t=$(new_tree "$img")
release "$t" wasmtime 'ID=flatcar\nSYSEXT_LEVEL=1.0\nARCHITECTURE=x86-64\n'
script "$t" usr/bin/wasmtime 'echo wasmtime 24.0.0'
mkdir -p "$t/usr/share/wasmtime"
pseudo_random $((200 * 1024)) "$img/blob" >"$t/usr/share/wasmtime/blob"
chmod 0644 "$t/usr/share/wasmtime/blob"
squash "$t" "$img"

# Same text as the bakery's lib/sysupdate.conf.tmpl renders for NAME=wasmtime.
cat >"$outdir/wasmtime.conf" <<'EOF'
[Transfer]
Verify=false

[Source]
Type=url-file
Path=https://extensions.flatcar.org/extensions/wasmtime/
MatchPattern=wasmtime-@v-%a.raw

[Target]
InstancesMax=3
Type=regular-file
Path=/opt/extensions/wasmtime
CurrentSymlink=/etc/extensions/wasmtime.raw
EOF

# docker: any OS, x86-64.
img=docker-27.0.1-x86-64
t=$(new_tree "$img")
release "$t" docker 'ID=_any\nARCHITECTURE=x86-64\n'
script "$t" usr/bin/docker 'echo Docker version 27.0.1'
squash "$t" "$img"

# myext: any OS, no ARCHITECTURE.
img=myext-1.0-x86-64
t=$(new_tree "$img")
release "$t" myext 'ID=_any\n'
mkdir -p "$t/usr/share/myext"
printf 'hello from myext\n' >"$t/usr/share/myext/hello"
squash "$t" "$img"

# armext: flatcar-specific, arm64 (good for arm64 images only).
img=armext-1.0-arm64
t=$(new_tree "$img")
release "$t" armext 'ID=flatcar\nSYSEXT_LEVEL=1.0\nARCHITECTURE=arm64\n'
script "$t" usr/bin/armext 'echo armext 1.0'
squash "$t" "$img"

# ---------------------------------------------------------------------------
# Bad images
# ---------------------------------------------------------------------------

# misnamed: extension-release name does not match the file name.
img=misnamed-1.0-x86-64
t=$(new_tree "$img")
release "$t" othername 'ID=_any\nARCHITECTURE=x86-64\n'
script "$t" usr/bin/misnamed 'echo misnamed 1.0'
squash "$t" "$img"

# norelease: no extension-release file at all.
img=norelease-1.0-x86-64
t=$(new_tree "$img")
script "$t" usr/bin/norelease 'echo norelease 1.0'
squash "$t" "$img"

# wrongid: ID neither flatcar nor _any.
img=wrongid-1.0-x86-64
t=$(new_tree "$img")
release "$t" wrongid 'ID=fedora\nSYSEXT_LEVEL=1.0\n'
script "$t" usr/bin/wrongid 'echo wrongid 1.0'
squash "$t" "$img"

# wrongarch: arm64 extension (wrong for x86-64 images).
img=wrongarch-1.0-arm64
t=$(new_tree "$img")
release "$t" wrongarch 'ID=_any\nARCHITECTURE=arm64\n'
script "$t" usr/bin/wrongarch 'echo wrongarch 1.0'
squash "$t" "$img"

# notsquash: not a filesystem at all.
img=notsquash-1.0-x86-64
pseudo_random $((64 * 1024)) "$img" >"$outdir/$img.raw"

# big: valid metadata but ~48 MiB of incompressible data, stored uncompressed.
img=big-1.0-x86-64
t=$(new_tree "$img")
release "$t" big 'ID=_any\n'
mkdir -p "$t/usr/share/big"
pseudo_random $((48 * 1024 * 1024)) "$img/blob" >"$t/usr/share/big/blob"
chmod 0644 "$t/usr/share/big/blob"
squash "$t" "$img" -noI -noD -noF -noX -no-fragments

chmod 0644 "$outdir"/*.raw "$outdir/wasmtime.conf"

ls -l "$outdir"
