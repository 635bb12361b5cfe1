#!/usr/bin/env bash
# Install what flatbake's tests, demo and benchmarks need on a fresh Debian machine:
# the filesystem tools flatbake drives (e2fsprogs, btrfs-progs, fakeroot) and the
# outside tools the tests use as judges (sgdisk, squashfs-tools, erofs-utils, mtools,
# dosfstools, systemd-sysext, gpg, bzip2/lbzip2, qemu-img), patchelf, which
# `flatbake sysext flix` runs, and bubblewrap, which `flatbake sysext flatwrap` wrappers
# use when present (the tests run them with and without); attr and libcap2-bin, whose
# setfattr/setcap the OEM fidelity fixtures use. Rust crates come through cargo.
set -euo pipefail

pkgs=(e2fsprogs btrfs-progs fakeroot dosfstools mtools squashfs-tools erofs-utils gdisk
      util-linux systemd bzip2 lbzip2 pbzip2 gnupg python3 time qemu-utils libclang-dev bc
      patchelf bubblewrap groff-base attr libcap2-bin openssl zstd)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "setup.sh: cargo not found (install Rust with rustup)" >&2; exit 1; }
