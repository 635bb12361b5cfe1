#!/bin/bash
# Start @@NAME@@ in QEMU. Written by flatbake; takes the options of the
# flatcar_production_qemu*.sh launchers of Flatcar's SDK, with the same meaning.
# Run with -h for the options.

SCRIPT_DIR="$(dirname "$0")"
VM_BOARD='@@BOARD@@'
VM_NAME='@@NAME@@'
VM_MEMORY='@@MEMORY@@'
VM_IMAGE=@@IMAGE@@
VM_PFLASH_RO=@@PFLASH_RO@@
VM_PFLASH_RW=@@PFLASH_RW@@
VM_PFLASH_FORMAT='@@PFLASH_FORMAT@@'
VM_KERNEL=
VM_INITRD=
VM_UUID=
VM_CDROM=
VM_NCPUS="$(getconf _NPROCESSORS_ONLN)"
SSH_PORT=2222
SSH_KEYS=
CLOUD_CONFIG_FILE=
IGNITION_CONFIG_FILE=
CONFIG_IMAGE=
SWTPM_DIR=
SAFE_ARGS=0
FORWARDED_PORTS=()
PRIMARY_DISK_OPTS=
DISKS=()

usage() {
    cat <<EOF
Usage: $0 [options] [--] [qemu options...]
Options:
    -i FILE     Ignition config, passed with -fw_cfg name=opt/org.flatcar-linux/config
                (an already booted image also needs "-append 'flatcar.first_boot=1'")
    -u FILE     cloudinit user-data (cloud-config or script) on the config drive
    -c FILE     config drive image (iso or FAT), instead of a generated one
    -a FILE     SSH public keys for the core user [ssh-agent and ~/.ssh/id_*.pub]
    -d DISK     extra disk: PATH[,virtio-blk-pci options]; may be repeated
    -D OPTS     extra virtio-blk-pci options for the primary disk (not drive= or bootindex=)
    -p PORT     host port forwarded to the VM's sshd [2222]
    -I FILE     another image file
    -f H:G      forward host port H to guest port G; may be repeated
    -M MB       memory in MiB [$VM_MEMORY]
    -T DIR      software TPM 2.0 (swtpm) keeping its state and socket in DIR
    -R FILE     pflash read-only firmware (with -W)
    -W FILE     pflash read-write variables (with -R)
    -K FILE     kernel for direct boot, as for PXE (with -r)
    -r FILE     initrd for direct boot (with -K)
    -s          safe settings: no KVM, one plain CPU
    -v          trace this script
    -h          this text
-u, -c and -a exclude each other. Everything after the options (or after --) is
passed to qemu; see qemu(1).
EOF
}

fail() {
    echo "$0: $*" >&2
    exit 1
}

one_config_source() {
    [ -z "${CLOUD_CONFIG_FILE}${CONFIG_IMAGE}${SSH_KEYS}" ] ||
        { echo "The -u -c and -a options cannot be combined!" >&2; exit 1; }
}

while [ $# -ge 1 ]; do
    case "$1" in
        -i|-ignition-config) IGNITION_CONFIG_FILE="$2"; shift 2 ;;
        -u|-user-data) one_config_source; CLOUD_CONFIG_FILE="$2"; shift 2 ;;
        -c|-config-drive) one_config_source; CONFIG_IMAGE="$2"; shift 2 ;;
        -a|-authorized-keys) one_config_source; SSH_KEYS="$2"; shift 2 ;;
        -d|-disk) DISKS+=("$2"); shift 2 ;;
        -D|-image-disk-opts) PRIMARY_DISK_OPTS="$2"; shift 2 ;;
        -p|-ssh-port) SSH_PORT="$2"; shift 2 ;;
        -f|-forward-port) FORWARDED_PORTS+=("$2"); shift 2 ;;
        -s|-safe) SAFE_ARGS=1; shift ;;
        -I|-image-file) VM_IMAGE="$2"; shift 2 ;;
        -M|-memory) VM_MEMORY="$2"; shift 2 ;;
        -T|-tpm) SWTPM_DIR="$2"; shift 2 ;;
        -R|-pflash-ro) VM_PFLASH_RO="$2"; shift 2 ;;
        -W|-pflash-rw) VM_PFLASH_RW="$2"; shift 2 ;;
        -K|-kernel-file) VM_KERNEL="$2"; shift 2 ;;
        -r|-initrd-file) VM_INITRD="$2"; shift 2 ;;
        -v|-verbose) set -x; shift ;;
        -h|-help|--help) usage; exit 0 ;;
        --) shift; break ;;
        *) break ;;
    esac
done

case "${VM_BOARD}" in
    amd64-usr) QEMU_BIN=qemu-system-x86_64; TPM_DEV=tpm-tis ;;
    arm64-usr) QEMU_BIN=qemu-system-aarch64; TPM_DEV=tpm-tis-device ;;
    *) fail "Unsupported arch" ;;
esac

# Arguments in the order qemu gets them: ours first, then the user's.
ARGS=()

if [ -n "${IGNITION_CONFIG_FILE}" ]; then
    ARGS+=(-fw_cfg "name=opt/org.flatcar-linux/config,file=${IGNITION_CONFIG_FILE}")
fi
if [ -n "${VM_PFLASH_RO}" ] && [ -n "${VM_PFLASH_RW}" ]; then
    ARGS+=(-drive "if=pflash,unit=0,file=${VM_PFLASH_RO},format=${VM_PFLASH_FORMAT},readonly=on"
           -drive "if=pflash,unit=1,file=${VM_PFLASH_RW},format=${VM_PFLASH_FORMAT}")
fi
if [ -n "${VM_CDROM}" ]; then
    ARGS+=(-boot order=d -drive "file=${VM_CDROM},media=cdrom,format=raw")
fi
[ -z "${VM_UUID}" ] || ARGS+=(-uuid "${VM_UUID}")
[ -z "${VM_INITRD}" ] || ARGS+=(-initrd "${VM_INITRD}")
[ -z "${VM_KERNEL}" ] || ARGS+=(-kernel "${VM_KERNEL}")

# extra disks: the last one given comes first
n=${#DISKS[@]}
while [ "$n" -gt 0 ]; do
    disk=${DISKS[$((n - 1))]}
    id="flatcar-extra-disk-${n}"
    case "${disk}" in
        *,*) path=${disk%%,*}; opts=",${disk#*,}" ;;
        *) path=${disk}; opts= ;;
    esac
    ARGS+=(-drive "if=none,id=${id},file=${path}" -device "virtio-blk-pci,drive=${id}${opts}")
    n=$((n - 1))
done

if [ -n "${VM_IMAGE}" ]; then
    case ",${PRIMARY_DISK_OPTS}," in
        *,drive=*|*,bootindex=*) echo "Can't override drive or bootindex options for primary disk"; exit 1 ;;
    esac
    ARGS+=(-drive "if=none,id=blk,file=${VM_IMAGE}"
           -device "virtio-blk-pci,drive=blk,bootindex=1${PRIMARY_DISK_OPTS:+,${PRIMARY_DISK_OPTS}}")
fi

CONFIG_DRIVE=
if [ -n "${CONFIG_IMAGE}" ]; then
    ARGS+=(-drive "if=virtio,file=${CONFIG_IMAGE}")
else
    CONFIG_DRIVE=$(mktemp -d) && [ -d "${CONFIG_DRIVE}" ] || fail "mktemp -d failed!"
    # shellcheck disable=SC2064
    trap "rm -rf '${CONFIG_DRIVE}'" EXIT
    mkdir -p "${CONFIG_DRIVE}/openstack/latest"
    user_data="${CONFIG_DRIVE}/openstack/latest/user_data"
    as_cloud_config() {
        echo "#cloud-config"
        echo "ssh_authorized_keys:"
        sed -e 's/^/ - /'
    }
    if [ -n "${SSH_KEYS}" ]; then
        [ -f "${SSH_KEYS}" ] || fail "SSH keys file not found: ${SSH_KEYS}"
        keys=$(cat "${SSH_KEYS}") && [ -n "${keys}" ] ||
            fail "Failed to read SSH keys from ${SSH_KEYS}"
        echo "${keys}" | as_cloud_config >"${user_data}"
    elif [ -n "${CLOUD_CONFIG_FILE}" ]; then
        cp "${CLOUD_CONFIG_FILE}" "${user_data}" ||
            fail "Failed to copy cloudinit file from ${CLOUD_CONFIG_FILE}"
    else
        {
            if [ -S "${SSH_AUTH_SOCK}" ]; then ssh-add -L; fi
            for key in ~/.ssh/id_*.pub; do
                [ -f "${key}" ] && cat "${key}"
            done
        } | as_cloud_config >"${user_data}"
    fi
    # mounted in Flatcar as /media/configdrive
    ARGS+=(-fsdev "local,id=conf,security_model=none,readonly=on,path=${CONFIG_DRIVE}"
           -device virtio-9p-pci,fsdev=conf,mount_tag=config-2)
fi

if [ "${SAFE_ARGS}" -eq 1 ]; then
    # no KVM: for firmware that does not like it
    ARGS+=(-machine accel=tcg)
else
    case "${VM_BOARD}+$(uname -m)" in
        amd64-usr+x86_64)
            ARGS+=(-machine q35,accel=kvm:hvf:tcg,smm=on -cpu host -smp "${VM_NCPUS}"
                   -global ICH9-LPC.disable_s3=1
                   -global driver=cfi.pflash01,property=secure,value=on) ;;
        amd64-usr+*)
            ARGS+=(-machine q35 -cpu kvm64 -smp 1 -nographic) ;;
        arm64-usr+aarch64|arm64-usr+arm64)
            ARGS+=(-machine virt,accel=kvm:hvf:tcg,gic-version=3 -cpu host -smp "${VM_NCPUS}" -nographic) ;;
        arm64-usr+*)
            # emulated: a few CPUs at most
            if [ "${VM_NCPUS}" -gt 4 ]; then VM_NCPUS=4
            elif [ "${VM_NCPUS}" -gt 2 ]; then VM_NCPUS=2
            fi
            ARGS+=(-machine virt -cpu cortex-a57 -smp "${VM_NCPUS}" -nographic) ;;
    esac
fi

if [ -n "${SWTPM_DIR}" ]; then
    mkdir -p "${SWTPM_DIR}"
    command -v swtpm >/dev/null || fail "swtpm command not found!"
    SWTPM_SOCK="${SWTPM_DIR}/socket"
    swtpm socket --tpmstate "dir=${SWTPM_DIR}" --ctrl "type=unixio,path=${SWTPM_SOCK},terminate" --tpm2 &
    SWTPM_PID=$!
    PARENT=$$
    # swtpm ends with qemu; if qemu never starts, end it when this script is gone
    (while [ -e "/proc/${PARENT}" ]; do sleep 1; done; kill "${SWTPM_PID}" 2>/dev/null; exit 0) &
    ARGS+=(-chardev "socket,id=chrtpm,path=${SWTPM_SOCK}" -tpmdev emulator,id=tpm0,chardev=chrtpm
           -device "${TPM_DEV},tpmdev=tpm0")
fi

HOSTFWD=
for port in "${FORWARDED_PORTS[@]}"; do
    for p in ${port}; do
        HOSTFWD="${HOSTFWD},hostfwd=tcp::${p%:*}-:${p#*:}"
    done
done

# shellcheck disable=SC2086
"${QEMU_BIN}" \
    -name "${VM_NAME}" \
    -m ${VM_MEMORY} \
    -netdev "user,id=eth0${HOSTFWD},hostfwd=tcp::${SSH_PORT}-:22,hostname=${VM_NAME}" \
    -device virtio-net-pci,netdev=eth0 \
    -object rng-random,filename=/dev/urandom,id=rng0 -device virtio-rng-pci,rng=rng0 \
    "${ARGS[@]}" "$@"

exit $?
