#!/usr/bin/env bash
# The headline job end to end, flatbake against what a user would otherwise run, in one
# run, on a data-heavy Flatcar-faithful release served on 127.0.0.1:
#   - an 8 GiB (apparent) image in Flatcar's real partition layout with USR_DATA_MIB of
#     data in USR-A (half /dev/urandom, half this machine's programs), compressed with
#     lbzip2, signed with a throwaway OpenPGP key, plus OEM sysexts, firmware and a bakery;
#   1. `flatbake fetch` (download, verify, decompress the image) against
#      curl + gpg --verify + lbzip2 -d;
#   2. `flatbake --fetch --vendor qemu_uefi wasmtime:...` against the bash pipeline
#      (curl + gpg + lbzip2 -d | bunzip2 + losetup/mount/cp/umount + `qemu-img convert -c`).
#      The release also publishes the vendor image as Flatcar does
#      (flatcar_production_qemu_uefi_image.img: the image with the qemu_uefi layout and
#      OEM content, `qemu-img convert -c -o compat=0.10`, signed), so flatbake takes its
#      fast path (bake the published qcow2 in place, copy untouched clusters verbatim);
#      the same with FLATBAKE_FAST_PATH=0 is the generic path, and the bash analogue of
#      the fast path is curl + gpg + `qemu-img convert -O raw` + mount/cp + convert -c.
# Prints wall time, peak RSS (GNU time) and ratios. Cold cache for flatbake each time (its
# --image-cache is emptied). Needs root for the bash way (losetup, mount).
#
# Usage: scripts/bench-e2e.sh [USR_DATA_MIB]   (default 500; 100 for quick iterations)
# BENCH_DIR keeps the release between runs (rebuilt when USR_DATA_MIB changes).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
[ "$(id -u)" -eq 0 ] || { echo "bench-e2e.sh: the bash way needs root (losetup, mount)" >&2; exit 1; }
data=${1:-500}
keep=${BENCH_DIR:-}
dir=${BENCH_DIR:-$(mktemp -d -p "${TMPDIR:-/var/tmp}" flatbake-e2e.XXXXXX)}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
version=4593.2.5
srv=$dir/srv
rel=$srv/amd64-usr/$version
port=$((20000 + RANDOM % 20000))
pid=
mnt=$dir/mnt
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    mountpoint -q "$mnt" 2>/dev/null && umount "$mnt"
    [ -f "$dir/loopdev" ] && losetup -d "$(cat "$dir/loopdev")" 2>/dev/null && rm -f "$dir/loopdev"
    [ -n "$keep" ] || rm -rf "$dir"
}
trap cleanup EXIT

cargo build --quiet --release --bin flatbake
fb=$repo/target/release/flatbake

if [ "$(cat "$dir/made" 2>/dev/null)" != "$data published" ]; then
    echo "building the release (${data} MiB in USR-A, 8 GiB image, lbzip2, signed)..." >&2
    rm -rf "$srv" "$dir/gnupg" "$dir/made"
    export GNUPGHOME=$dir/gnupg
    mkdir -m 700 "$GNUPGHOME"
    gpg --batch --quiet --passphrase '' --quick-gen-key 'flatbake bench <bench@localhost>' ed25519 sign never 2>/dev/null
    gpg --batch --quiet --armor --export > "$dir/signing-key.asc"
    bash scripts/make-fixture-image.sh "$dir/image.bin" --layout full --usr-data-mib "$data" >/dev/null
    bash scripts/make-fixture-release.sh "$rel" --image "$dir/image.bin" --version "$version" --sign "$GNUPGHOME" 2>/dev/null
    # the published vendor image, made as Flatcar makes it: the qemu_uefi disk (vm
    # layout, OEM content; no sysext) converted by qemu-img convert -c, signed
    rm -rf "$dir/pub" && mkdir -p "$dir/pub"
    FLATBAKE_FAST_PATH=0 "$fb" --image "$dir/image.bin" --release-dir "$rel" --vendor qemu_uefi \
        --output-dir "$dir/pub" >/dev/null 2>&1
    qemu-img convert -f qcow2 -O raw "$dir/pub/flatcar_production_qemu_uefi_image.img" "$dir/pub/disk.raw"
    qemu-img convert -f raw -O qcow2 -c -o compat=0.10 "$dir/pub/disk.raw" \
        "$rel/flatcar_production_qemu_uefi_image.img"
    gpg --batch --quiet --yes --detach-sign -o "$rel/flatcar_production_qemu_uefi_image.img.sig" \
        "$rel/flatcar_production_qemu_uefi_image.img"
    rm -rf "$dir/pub" "$dir/image.bin"
    mkdir -p "$srv/amd64-usr/current"
    cp "$rel/version.txt" "$srv/amd64-usr/current/version.txt"
    bash scripts/make-fixture-sysexts.sh "$dir/sysexts" >/dev/null
    mkdir -p "$srv/extensions"
    cp "$dir/sysexts/wasmtime-v24.0.0-x86-64.raw" "$srv/extensions/"
    (cd "$srv/extensions" && sha256sum ./*.raw | sed 's# \./# #' > SHA256SUMS)
    gpgconf --kill gpg-agent 2>/dev/null || true
    echo "$data published" > "$dir/made"
fi
export GNUPGHOME=$dir/gnupg
url=http://127.0.0.1:$port
python3 -m http.server --bind 127.0.0.1 --directory "$srv" "$port" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 100); do
    curl -fsS "$url/amd64-usr/current/version.txt" >/dev/null 2>&1 && break
    sleep 0.1
done

load0=$(cut -d' ' -f1-3 /proc/loadavg)
t() { # command...: wall seconds and peak RSS (KiB) into $wall/$rss
    sync
    /usr/bin/time -f '%e %M' -o "$dir/time.txt" "$@" >/dev/null 2>"$dir/cmd.err" ||
        { cat "$dir/cmd.err" >&2; exit 1; }
    read -r wall rss < "$dir/time.txt"
}
fbargs=(--release "$version" --release-url "$url" --bakery-url "$url"
    --signing-key "$dir/signing-key.asc" --image-cache "$dir/cache")

# 1. fetch: download + verify + decompress the generic image
rm -rf "$dir/cache"
t "$fb" fetch "${fbargs[@]}"; f_wall=$wall f_rss=$rss
fb_img=$(find "$dir/cache" -name flatcar_production_image.bin | head -n1)
bash_fetch() { # decompressor
    rm -rf "$dir/b" && mkdir -p "$dir/b" && cd "$dir/b"
    curl -fsS -O "$url/amd64-usr/$version/flatcar_production_image.bin.bz2" \
        -O "$url/amd64-usr/$version/flatcar_production_image.bin.bz2.sig"
    gpg --batch --quiet --verify flatcar_production_image.bin.bz2.sig flatcar_production_image.bin.bz2 2>/dev/null
    "$1" -d flatcar_production_image.bin.bz2
}
export -f bash_fetch; export dir url version
t bash -c 'bash_fetch lbzip2'; bf_wall=$wall bf_rss=$rss
cmp "$fb_img" "$dir/b/flatcar_production_image.bin" || { echo "MISMATCH: flatbake's image differs from lbzip2 -d's" >&2; exit 1; }
fb_alloc=$(du -m "$fb_img" | cut -f1)
b_alloc=$(du -m "$dir/b/flatcar_production_image.bin" | cut -f1)

# 2. end to end: fetch + bake + qemu_uefi qcow2, fast path (published image) and generic
rm -rf "$dir/cache" "$dir/out" && mkdir -p "$dir/out"
t "$fb" --fetch --vendor qemu_uefi "${fbargs[@]}" --output-dir "$dir/out" wasmtime:wasmtime-v24.0.0-x86-64.raw
e_wall=$wall e_rss=$rss
grep -q 'copied verbatim' "$dir/cmd.err" || { echo "the fast path was not taken:" >&2; cat "$dir/cmd.err" >&2; exit 1; }
fb_qcow=$dir/out/flatcar_production_qemu_uefi_image.img
qemu-img check -q -f qcow2 "$fb_qcow"
rm -rf "$dir/cache" "$dir/out-generic" && mkdir -p "$dir/out-generic"
t env FLATBAKE_FAST_PATH=0 "$fb" --fetch --vendor qemu_uefi "${fbargs[@]}" --output-dir "$dir/out-generic" \
    wasmtime:wasmtime-v24.0.0-x86-64.raw
g_wall=$wall g_rss=$rss
g_size=$(stat -c %s "$dir/out-generic/flatcar_production_qemu_uefi_image.img")
pub_size=$(stat -c %s "$rel/flatcar_production_qemu_uefi_image.img")
bash_fast() { # the published qcow2: curl + gpg + convert to raw + mount/cp + convert -c
    rm -rf "$dir/b" && mkdir -p "$dir/b" && cd "$dir/b"
    curl -fsS -O "$url/amd64-usr/$version/flatcar_production_qemu_uefi_image.img" \
        -O "$url/amd64-usr/$version/flatcar_production_qemu_uefi_image.img.sig" \
        -O "$url/extensions/wasmtime-v24.0.0-x86-64.raw" -O "$url/extensions/SHA256SUMS"
    gpg --batch --quiet --verify flatcar_production_qemu_uefi_image.img.sig flatcar_production_qemu_uefi_image.img 2>/dev/null
    sha256sum --quiet -c --ignore-missing SHA256SUMS
    qemu-img convert -f qcow2 -O raw flatcar_production_qemu_uefi_image.img disk.raw
    local dev
    dev=$(losetup -fP --show disk.raw)
    echo "$dev" > "$dir/loopdev"
    mkdir -p "$dir/mnt"
    mount "${dev}p9" "$dir/mnt"
    mkdir -p "$dir/mnt/opt/extensions/wasmtime" "$dir/mnt/etc/extensions"
    cp wasmtime-v24.0.0-x86-64.raw "$dir/mnt/opt/extensions/wasmtime/"
    ln -sf /opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw "$dir/mnt/etc/extensions/wasmtime.raw"
    umount "$dir/mnt"
    losetup -d "$dev" && rm -f "$dir/loopdev"
    qemu-img convert -c -f raw -O qcow2 -o compat=0.10 disk.raw baked.img
}
export -f bash_fast
t bash -c 'bash_fast'; bq_wall=$wall bq_rss=$rss
bash_e2e() { # decompressor
    bash_fetch "$1"
    curl -fsS -O "$url/amd64-usr/$version/flatcar_production_qemu_uefi_efi_code.qcow2" \
        -O "$url/amd64-usr/$version/flatcar_production_qemu_uefi_efi_vars.qcow2" \
        -O "$url/extensions/wasmtime-v24.0.0-x86-64.raw" -O "$url/extensions/SHA256SUMS"
    sha256sum --quiet -c --ignore-missing SHA256SUMS
    local dev
    dev=$(losetup -fP --show flatcar_production_image.bin)
    echo "$dev" > "$dir/loopdev"
    mkdir -p "$dir/mnt"
    mount "${dev}p9" "$dir/mnt"
    mkdir -p "$dir/mnt/opt/extensions/wasmtime" "$dir/mnt/etc/extensions"
    cp wasmtime-v24.0.0-x86-64.raw "$dir/mnt/opt/extensions/wasmtime/"
    ln -sf /opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw "$dir/mnt/etc/extensions/wasmtime.raw"
    umount "$dir/mnt"
    losetup -d "$dev" && rm -f "$dir/loopdev"
    qemu-img convert -c -f raw -O qcow2 flatcar_production_image.bin flatcar_production_qemu_uefi_image.img
}
export -f bash_e2e
t bash -c 'bash_e2e lbzip2'; bl_wall=$wall bl_rss=$rss
q_size=$(stat -c %s "$dir/b/flatcar_production_qemu_uefi_image.img")
t bash -c 'bash_e2e bunzip2'; bb_wall=$wall bb_rss=$rss
f_size=$(stat -c %s "$fb_qcow")

bz=$(stat -c %s "$rel/flatcar_production_image.bin.bz2")
r() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
printf '\nrelease: %d MiB .bin.bz2, 8 GiB image with %d MiB in USR-A, %s cores, 127.0.0.1\n' \
    $((bz >> 20)) "$data" "$(nproc)"
printf 'load average before/after: %s / %s\n' "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-52s %8s %9s %8s\n' job "wall s" "RSS MiB" ratio
printf '%-52s %8s %9d %8s\n' "flatbake fetch" "$f_wall" $((f_rss / 1024)) "$(r "$f_wall" "$bf_wall")"
printf '%-52s %8s %9d %8s\n' "curl + gpg --verify + lbzip2 -d" "$bf_wall" $((bf_rss / 1024)) 1.00x
printf '%-52s %8s %9d %8s\n' "flatbake --fetch --vendor qemu_uefi (fast path)" "$e_wall" $((e_rss / 1024)) "$(r "$e_wall" "$bl_wall")"
printf '%-52s %8s %9d %8s\n' "flatbake, same, generic path (FLATBAKE_FAST_PATH=0)" "$g_wall" $((g_rss / 1024)) "$(r "$g_wall" "$bl_wall")"
printf '%-52s %8s %9d %8s\n' "bash: published qcow2: curl+gpg+convert/mount/cp/-c" "$bq_wall" $((bq_rss / 1024)) "$(r "$bq_wall" "$bl_wall")"
printf '%-52s %8s %9d %8s\n' "bash: curl+gpg+lbzip2 -d+mount/cp+qemu-img convert -c" "$bl_wall" $((bl_rss / 1024)) 1.00x
printf '%-52s %8s %9d %8s\n' "bash: same with bunzip2" "$bb_wall" $((bb_rss / 1024)) "$(r "$bb_wall" "$bl_wall")"
printf 'image allocated: flatbake %d MiB, lbzip2 -d %d MiB (identical bytes, cmp)\n' "$fb_alloc" "$b_alloc"
printf 'qcow2: flatbake fast path %d B, generic path %d B, published %d B, qemu-img convert -c of the generic disk %d B (fast/qemu-img %s)\n' \
    "$f_size" "$g_size" "$pub_size" "$q_size" "$(r "$f_size" "$q_size")"
