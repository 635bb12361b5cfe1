#!/usr/bin/env bash
# Build a sample Flatcar release directory, laid out as on the release server:
#   version.txt, oem-<id>.raw OEM sysexts (one per OEM id in vendors/),
#   flatcar_production_qemu_uefi{,_secure}_efi_{code,vars}.{qcow2,fd} (small stand-ins),
#   and, with --image IMG, flatcar_production_image.bin.bz2 compressed by lbzip2.
# With --sign GNUPGHOME, every file gets a detached binary signature F.sig made by
# the first secret key in that GnuPG home.
# Usage: make-fixture-release.sh OUTDIR [--image IMG] [--version X.Y.Z] [--arch x86-64|arm64] [--sign GNUPGHOME]
set -euo pipefail
out=${1:?usage: make-fixture-release.sh OUTDIR [--image IMG] [--version X.Y.Z] [--arch A] [--sign GNUPGHOME]}
shift
image= version=4593.2.5 arch=x86-64 sign=
while [ $# -gt 0 ]; do
    case "$1" in
        --image) image=$2; shift 2 ;;
        --version) version=$2; shift 2 ;;
        --arch) arch=$2; shift 2 ;;
        --sign) sign=$2; shift 2 ;;
        *) echo "make-fixture-release.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

IFS=. read -r build branch patch <<<"$version"
cat > "$out/version.txt" <<EOT
FLATCAR_BUILD=$build
FLATCAR_BRANCH=$branch
FLATCAR_PATCH=$patch
FLATCAR_VERSION=$version
FLATCAR_VERSION_ID=$version
FLATCAR_BUILD_ID=""
FLATCAR_SDK_VERSION=$build.0.0
EOT

# One OEM sysext per OEM id named in the vendor files, as Flatcar's build_sysext
# writes them (quoted values, VERSION_ID pinned to the release).
ids=$(sed -n 's/^oem_id = "\(.*\)"/\1/p' "$here"/vendors/*.toml | sort -u)
for id in $ids; do
    root="$tmp/oem-$id"
    mkdir -p "$root/usr/lib/extension-release.d" "$root/usr/share/oem"
    cat > "$root/usr/lib/extension-release.d/extension-release.oem-$id" <<EOT
ID='flatcar'
VERSION_ID='$version'
ARCHITECTURE='$arch'
EXTENSION_RELOAD_MANAGER=1
SYSEXT_ID='oem-$id'
SYSEXT_NAME='$id OEM'
SYSEXT_VERSION_ID='$version'
SYSEXT_BUG_REPORT_URL='https://issues.flatcar.org'
EOT
    echo "sample OEM content for $id" > "$root/usr/share/oem/README"
    env -u SOURCE_DATE_EPOCH mksquashfs "$root" "$out/oem-$id.raw" -all-root -noappend -quiet \
        -mkfs-time 0 -all-time 0 -processors 1 >/dev/null
done

qemu-img create -q -f qcow2 "$out/flatcar_production_qemu_uefi_efi_code.qcow2" 4M
qemu-img create -q -f qcow2 "$out/flatcar_production_qemu_uefi_efi_vars.qcow2" 4M
qemu-img create -q -f qcow2 "$out/flatcar_production_qemu_uefi_secure_efi_code.qcow2" 4M
qemu-img create -q -f qcow2 "$out/flatcar_production_qemu_uefi_secure_efi_vars.qcow2" 4M
# releases before 4152 published the edk2 firmware as .fd files
for f in qemu_uefi_efi_code qemu_uefi_efi_vars qemu_uefi_secure_efi_code qemu_uefi_secure_efi_vars; do
    printf 'stand-in %s\n' "$f" > "$out/flatcar_production_$f.fd"
done

if [ -n "$image" ]; then
    lbzip2 -c "$image" > "$out/flatcar_production_image.bin.bz2"
fi

if [ -n "$sign" ]; then
    for f in "$out"/*; do
        case "$f" in *.sig) continue ;; esac
        GNUPGHOME="$sign" gpg --batch --yes --quiet --detach-sign --output "$f.sig" "$f"
    done
fi
ls -la "$out" >&2
