#!/bin/sh
# Start @@NAME@@ in QEMU with UEFI firmware. Written by flatbake.
#   -i FILE   Ignition config (passed with -fw_cfg opt/org.flatcar-linux/config)
#   -p PORT   host port forwarded to the VM's SSH port 22 (default 2222)
#   -m MiB    memory (default @@MEMORY@@)
#   -s        no graphics: serial console on this terminal
#   -- ARGS   passed on to qemu
set -eu
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
VM_IMAGE="${SCRIPT_DIR}/@@IMAGE@@"
VM_PFLASH_RO="${SCRIPT_DIR}/@@EFI_CODE@@"
VM_PFLASH_RW="${SCRIPT_DIR}/@@EFI_VARS@@"
VM_MEMORY=@@MEMORY@@
VM_BOARD=@@BOARD@@
SSH_PORT=2222
IGNITION=
NOGRAPHIC=
while [ $# -gt 0 ]; do
    case "$1" in
        -i) IGNITION="$2"; shift 2 ;;
        -p) SSH_PORT="$2"; shift 2 ;;
        -m) VM_MEMORY="$2"; shift 2 ;;
        -s) NOGRAPHIC=1; shift ;;
        --) shift; break ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) break ;;
    esac
done
case "${VM_BOARD}" in
    amd64-usr) QEMU=qemu-system-x86_64; MACHINE="-machine q35,accel=kvm:tcg -cpu host" ;;
    arm64-usr) QEMU=qemu-system-aarch64; MACHINE="-machine virt,accel=kvm:tcg -cpu host" ;;
esac
[ -e /dev/kvm ] || MACHINE=$(echo "${MACHINE}" | sed 's/-cpu host/-cpu max/')
set -- ${MACHINE} -m "${VM_MEMORY}" -smp 2 \
    -drive if=pflash,unit=0,file="${VM_PFLASH_RO}",format=qcow2,readonly=on \
    -drive if=pflash,unit=1,file="${VM_PFLASH_RW}",format=qcow2 \
    -drive if=virtio,file="${VM_IMAGE}",format=qcow2 \
    -netdev user,id=eth0,hostfwd=tcp::"${SSH_PORT}"-:22 -device virtio-net-pci,netdev=eth0 \
    -object rng-random,filename=/dev/urandom,id=rng0 -device virtio-rng-pci,rng=rng0 \
    "$@"
[ -n "${IGNITION}" ] && set -- "$@" -fw_cfg name=opt/org.flatcar-linux/config,file="${IGNITION}"
[ -n "${NOGRAPHIC}" ] && set -- "$@" -nographic
exec "${QEMU}" -name "@@NAME@@" "$@"
