#!/usr/bin/env bash
# make-fixture-image.sh - build a small, Flatcar-faithful test disk image for flatbake.
#
# Usage: scripts/make-fixture-image.sh OUT.bin [--layout current|lts|full] [--arch x86-64|arm64] [--version X.Y.Z] [--usr-data-mib N] [--usr-tree DIR]
#
# Makes a sparse raw disk image that looks like a scaled-down
# flatcar_production_image.bin (see /work/shared/flatcar-notes.md, section 2):
#   - GPT with 512-byte sectors, partitions aligned to 4096 sectors, disk GUID
#     00000000-0000-0000-0000-000000000001, the same partition numbers, names and
#     type GUIDs as Flatcar (entries 5 and 8 empty), fixed partition GUIDs,
#     USR-A attributes 0x0101000000000000 (priority 1, successful);
#   - a protective MBR whose boot-code area (bytes 0-439) holds recognizable fake
#     GRUB code ("FLATBAKE-FAKE-GRUB-BOOT-CODE" repeated);
#   - 1 EFI-SYSTEM: vfat "EFI-SYSTEM" with /flatcar/first_boot and
#     /EFI/boot/bootx64.efi (bootaa64.efi with --arch arm64);
#   - 2 BIOS-BOOT: empty;
#   - 3 USR-A: btrfs (mixed, single) "USR-A" whose root is what Flatcar mounts
#     at /usr: lib/os-release (Flatcar 4593.2.5, SYSEXT_LEVEL=1.0), bin/true and
#     share/flatcar/update.conf (GROUP=stable, as a stable release has it);
#   - 4 USR-B: empty (holes);
#   - 6 OEM: empty btrfs (mixed, single) "OEM" with the root property
#     compression=zlib (set via a brief loop mount; skipped with a warning when
#     not running as root);
#   - 7 OEM-CONFIG: empty;
#   - 9 ROOT: ext4 "ROOT" (-b 4096 -i 4096 -I 256, errors=remount-ro) holding
#     only lost+found and the empty, root-owned directories boot, usr and oem.
#
# Layouts (sizes in 512-byte sectors, partitions packed in number order from
# sector 4096, ROOT takes the rest, the last 4096 sectors hold the backup GPT):
#   current: ESP 65536, BIOS 4096, USR-A/B 65536, OEM 65536, OEM-CONFIG 8192,
#            ROOT 81920; disk 364544 sectors (178 MiB).
#   lts:     ESP 32768, BIOS 4096, USR-A/B 32768, OEM 32768, OEM-CONFIG 8192,
#            ROOT 98304; disk 249856 sectors (122 MiB); plus a hybrid MBR
#            holding the ESP and the ESP's legacy-BIOS-bootable GPT attribute,
#            as LTS images built with the old "hybrid" layout feature had.
# The two layouts put every partition after BIOS-BOOT at different offsets, so
# a tool that relies on fixed offsets fails on one of them.
#
# Requires: sgdisk, mkfs.vfat, mtools (mmd, mcopy), mkfs.btrfs, btrfs,
# mkfs.ext4, dd; fakeroot when not run as root.

set -euo pipefail

# ---------------------------------------------------------------------------
# Fixed identifiers (made up, except the two USR PARTUUIDs and the disk GUID,
# which are Flatcar's own).
# ---------------------------------------------------------------------------
readonly DISK_GUID=00000000-0000-0000-0000-000000000001
readonly PARTUUID_ESP=f1a7ba4e-0001-4c0d-8e5f-000000000001
readonly PARTUUID_BIOS=f1a7ba4e-0002-4c0d-8e5f-000000000002
readonly PARTUUID_USR_A=7130c94a-213a-4e5a-8e26-6cce9662f132
readonly PARTUUID_USR_B=e03dd35c-7c2d-4a47-b3fe-27f15780a57c
readonly PARTUUID_OEM=f1a7ba4e-0006-4c0d-8e5f-000000000006
readonly PARTUUID_OEM_CONFIG=f1a7ba4e-0007-4c0d-8e5f-000000000007
readonly PARTUUID_ROOT=f1a7ba4e-0009-4c0d-8e5f-000000000009

readonly FSUUID_USR_A=f1a7f500-0003-4a2b-9c3d-000000000003
readonly FSUUID_OEM=f1a7f500-0006-4a2b-9c3d-000000000006
readonly FSUUID_ROOT=f1a7f500-0009-4a2b-9c3d-000000000009
readonly FSUUID_ROOT_HASH_SEED=f1a7f500-0009-4a2b-9c3d-0000000000a9
readonly VFAT_VOLID=f1a7ba4e

# Partition type GUIDs (Flatcar's).
readonly TYPE_ESP=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
readonly TYPE_BIOS=21686148-6449-6E6F-744E-656564454649
readonly TYPE_USR=5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6
readonly TYPE_OEM=0FC63DAF-8483-4772-8E79-3D69D8477DE4
readonly TYPE_OEM_CONFIG=C95DC21A-DF0E-4340-8D7B-26CBFA9A03E0
readonly TYPE_ROOT=3884DD41-8582-4404-B9A8-E9B84F2DF50E

readonly USR_A_ATTRIBUTES=0101000000000000
readonly BOOT_CODE_STRING=FLATBAKE-FAKE-GRUB-BOOT-CODE
FLATCAR_VERSION=4593.2.5

readonly SECTOR=512
readonly ALIGN=4096 # sectors

# Stable-ish timestamps (FAT cannot store dates before 1980).
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1700000000}"
export E2FSPROGS_FAKE_TIME="${SOURCE_DATE_EPOCH}"
export MTOOLS_SKIP_CHECK=1
export LC_ALL=C

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
prog=${0##*/}

die() {
    printf '%s: error: %s\n' "$prog" "$*" >&2
    exit 1
}

warn() {
    printf '%s: warning: %s\n' "$prog" "$*" >&2
}

usage() {
    printf 'Usage: %s OUT.bin [--layout current|lts|full] [--arch x86-64|arm64] [--version X.Y.Z] [--usr-data-mib N] [--usr-tree DIR]\n' "$prog" >&2
    exit 2
}

# Run a command so that the files it creates are owned by root.
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    else
        command -v fakeroot >/dev/null || die "not root and fakeroot is missing"
        fakeroot -- "$@"
    fi
}

# Run a command, showing its output only if it fails (mkfs.btrfs prints a
# "default settings have changed" NOTE to stderr even with -q).
run_quiet() {
    local log
    log=$(mktemp "${work:-${TMPDIR:-/tmp}}/log.XXXXXX")
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}

# mkfs.btrfs refuses a fixed UUID (-U) that it finds on any block device it can open;
# as root that includes loop devices other runs (tests) have attached to copies of
# these fixtures. Run it where it sees no block devices: a private mount namespace
# whose /dev holds only null, zero and the random devices.
mkfs_btrfs() {
    if [[ $EUID -eq 0 ]] && command -v unshare >/dev/null; then
        local real
        real=$(mktemp -d "${work:-${TMPDIR:-/tmp}}/realdev.XXXXXX")
        unshare --mount --propagation private -- sh -c 'set -e
            mount --bind /dev "$0"; mount -t tmpfs tmpfs /dev
            for n in null zero random urandom; do touch /dev/$n; mount --bind "$0/$n" /dev/$n; done
            exec mkfs.btrfs "$@"' "$real" "$@"
    else
        as_root mkfs.btrfs "$@"
    fi
}

# Copy a partition image file into the disk image at a start sector,
# leaving all-zero blocks as holes.
write_partition() {
    local src=$1 lba=$2
    dd if="$src" of="$out" bs=64K seek=$((lba * SECTOR)) oflag=seek_bytes \
        conv=notrunc,sparse status=none
}

# ---------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------
out=""
layout=current
usr_data_mib=0
usr_extra=""
arch=x86-64
while [[ $# -gt 0 ]]; do
    case $1 in
        --layout) [[ $# -ge 2 ]] || usage; layout=$2; shift 2 ;;
        --usr-data-mib) [[ $# -ge 2 ]] || usage; usr_data_mib=$2; shift 2 ;;
        --usr-tree) [[ $# -ge 2 ]] || usage; usr_extra=$2; shift 2 ;;
        --layout=*) layout=${1#*=}; shift ;;
        --arch) [[ $# -ge 2 ]] || usage; arch=$2; shift 2 ;;
        --arch=*) arch=${1#*=}; shift ;;
        --version) [[ $# -ge 2 ]] || usage; FLATCAR_VERSION=$2; shift 2 ;;
        -h|--help) usage ;;
        -*) die "unknown option: $1" ;;
        *) [[ -z $out ]] || usage; out=$1; shift ;;
    esac
done
[[ -n $out ]] || usage

case $layout in
    current|lts) ;;
    full) ;;
    *) die "unknown layout '$layout' (expected current, lts or full)" ;;
esac
case $arch in
    x86-64) efi_name=bootx64.efi ;;
    arm64) efi_name=bootaa64.efi ;;
    *) die "unknown arch '$arch' (expected x86-64 or arm64)" ;;
esac

for tool in sgdisk mkfs.vfat mmd mcopy mkfs.btrfs btrfs mkfs.ext4 dd; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done

# ---------------------------------------------------------------------------
# Layout (sectors)
# ---------------------------------------------------------------------------
declare -A size start
case $layout in
    current)
        size=([1]=65536 [2]=4096 [3]=65536 [4]=65536 [6]=65536 [7]=8192)
        disk_sectors=364544
        ;;
    lts)
        size=([1]=32768 [2]=4096 [3]=32768 [4]=32768 [6]=32768 [7]=8192)
        disk_sectors=249856
        ;;
    full)
        # real Flatcar sizes (notes section 2): for benchmarks
        size=([1]=2097152 [2]=4096 [3]=4194304 [4]=4194304 [6]=2097152 [7]=131072 [9]=3653632)
        disk_sectors=16515072
        ;;
    *) die "internal: unhandled layout ${layout}" ;;
esac

next=$ALIGN
for n in 1 2 3 4 6 7 9; do
    start[$n]=$next
    if [[ $n -eq 9 && -z ${size[9]:-} ]]; then
        # ROOT takes the rest; the last aligned chunk keeps the backup GPT.
        size[9]=$((disk_sectors - ALIGN - next))
        ((size[9] >= 81920)) || die "internal: ROOT too small"
    fi
    ((start[$n] % ALIGN == 0 && size[$n] % ALIGN == 0)) || die "internal: partition $n misaligned"
    next=$((start[$n] + size[$n]))
done
((disk_sectors % ALIGN == 0 && disk_sectors - next >= 34)) || die "internal: no room for the backup GPT"

# ---------------------------------------------------------------------------
# Work directory and cleanup
# ---------------------------------------------------------------------------
out_created=0
work=$(mktemp -d "${TMPDIR:-/tmp}/flatbake-fixture-image.XXXXXX")
mnt="$work/mnt"

cleanup() {
    local rc=$?
    if [[ -d $mnt ]] && mountpoint -q "$mnt"; then
        umount "$mnt" || umount -l "$mnt" || true
    fi
    if [[ -d $mnt ]] && mountpoint -q "$mnt"; then
        # Never rm -rf into a still-mounted filesystem.
        warn "could not unmount $mnt; leaving $work behind"
    else
        rm -rf "$work"
    fi
    if [[ $rc -ne 0 ]]; then
        [[ $out_created -eq 0 ]] || rm -f "$out"
        printf '%s: failed (exit %d)\n' "$prog" "$rc" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Sparse per-partition image of the right size.
new_part_file() {
    local file="$work/$1" n=$2
    rm -f "$file"
    truncate -s $((size[$n] * SECTOR)) "$file"
    printf '%s' "$file"
}

# Give every file in a staging tree the fixed timestamp.
stamp_tree() {
    find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

# ---------------------------------------------------------------------------
# 1 EFI-SYSTEM: vfat, written with mtools (no mounts)
# ---------------------------------------------------------------------------
esp=$(new_part_file esp.img 1)
# Real images use FAT32 (-F 32), but a 16-32 MiB FAT32 would have fewer than
# 65525 clusters and so, by cluster count, is really FAT16 for any spec-abiding
# reader. Let mkfs.vfat pick the type that fits the size.
mkfs.vfat -n EFI-SYSTEM -i "$VFAT_VOLID" "$esp" >/dev/null
mkdir -p "$work/esp-files"
: >"$work/esp-files/first_boot"
printf 'MZ\x90\x00FLATBAKE-FAKE-EFI-LOADER-%s\n' "$arch" >"$work/esp-files/$efi_name"
stamp_tree "$work/esp-files"
mmd -i "$esp" ::/flatcar ::/EFI ::/EFI/boot
mcopy -m -i "$esp" "$work/esp-files/first_boot" ::/flatcar/first_boot
mcopy -m -i "$esp" "$work/esp-files/$efi_name" "::/EFI/boot/$efi_name"

# ---------------------------------------------------------------------------
# 3 USR-A: btrfs (mixed); its root is /usr of the running system
# ---------------------------------------------------------------------------
usr_tree="$work/usr-tree"
mkdir -p "$usr_tree/lib" "$usr_tree/bin"
cat >"$usr_tree/lib/os-release" <<EOF
NAME="Flatcar Container Linux by Kinvolk"
ID=flatcar
ID_LIKE=coreos
VERSION=$FLATCAR_VERSION
VERSION_ID=$FLATCAR_VERSION
PRETTY_NAME="Flatcar Container Linux by Kinvolk $FLATCAR_VERSION"
SYSEXT_LEVEL=1.0
EOF
cp /usr/bin/true "$usr_tree/bin/true"
mkdir -p "$usr_tree/share/flatcar"
printf 'SERVER=https://public.update.flatcar-linux.net/v1/update/\nGROUP=stable\n' \
    >"$usr_tree/share/flatcar/update.conf"
# --usr-tree DIR: more of /usr (libraries, units) for tests that look things up there
if [[ -n $usr_extra ]]; then
    cp -a "$usr_extra/." "$usr_tree/"
fi
if ((usr_data_mib > 0)); then
    # benchmark payload: half incompressible, half real programs (compressible)
    mkdir -p "$usr_tree/share/bench"
    head -c $((usr_data_mib / 2))M /dev/urandom > "$usr_tree/share/bench/random"
    i=0
    while (( $(du -sm "$usr_tree/share/bench" | cut -f1) < usr_data_mib )); do
        (set +o pipefail; cat /usr/bin/* 2>/dev/null | head -c 64M > "$usr_tree/share/bench/programs.$i")
        i=$((i + 1))
    done
fi
chmod 0755 "$usr_tree" "$usr_tree/lib" "$usr_tree/bin" "$usr_tree/bin/true"
chmod 0644 "$usr_tree/lib/os-release" "$usr_tree/share/flatcar/update.conf"
chmod 0755 "$usr_tree/share" "$usr_tree/share/flatcar"
stamp_tree "$usr_tree"
usr_a=$(new_part_file usr-a.img 3)
run_quiet mkfs_btrfs --mixed -m single -d single -L USR-A -U "$FSUUID_USR_A" \
    --rootdir "$usr_tree" "$usr_a"

# ---------------------------------------------------------------------------
# 6 OEM: empty btrfs, root property compression=zlib
# ---------------------------------------------------------------------------
oem=$(new_part_file oem.img 6)
run_quiet mkfs_btrfs --mixed -m single -d single -L OEM -U "$FSUUID_OEM" "$oem"
if [[ $EUID -eq 0 ]]; then
    mkdir "$mnt"
    mount -o loop "$oem" "$mnt" || die "loop-mounting the OEM btrfs failed"
    btrfs property set "$mnt" compression zlib
    umount "$mnt"
    rmdir "$mnt"
else
    warn "not root: OEM btrfs is left without the compression=zlib root property"
fi

# ---------------------------------------------------------------------------
# 9 ROOT: ext4 with lost+found and empty boot, usr, oem
# ---------------------------------------------------------------------------
root_tree="$work/root-tree"
mkdir -p "$root_tree/boot" "$root_tree/usr" "$root_tree/oem"
chmod 0755 "$root_tree" "$root_tree/boot" "$root_tree/usr" "$root_tree/oem"
stamp_tree "$root_tree"
root=$(new_part_file root.img 9)
as_root mkfs.ext4 -q -b 4096 -i 4096 -I 256 -L ROOT -e remount-ro -U "$FSUUID_ROOT" \
    -E "hash_seed=$FSUUID_ROOT_HASH_SEED,root_owner=0:0" -d "$root_tree" "$root"

# ---------------------------------------------------------------------------
# Disk: GPT, partitions, MBR boot code
# ---------------------------------------------------------------------------
rm -f "$out"
out_created=1
truncate -s $((disk_sectors * SECTOR)) "$out"

sgdisk_args=(--clear --set-alignment="$ALIGN" --disk-guid="$DISK_GUID")
add_part() {
    local n=$1 name=$2 type=$3 guid=$4
    sgdisk_args+=(
        --new="$n:${start[$n]}:$((start[$n] + size[$n] - 1))"
        --change-name="$n:$name"
        --typecode="$n:$type"
        --partition-guid="$n:$guid"
    )
}
add_part 1 EFI-SYSTEM "$TYPE_ESP" "$PARTUUID_ESP"
add_part 2 BIOS-BOOT "$TYPE_BIOS" "$PARTUUID_BIOS"
add_part 3 USR-A "$TYPE_USR" "$PARTUUID_USR_A"
add_part 4 USR-B "$TYPE_USR" "$PARTUUID_USR_B"
add_part 6 OEM "$TYPE_OEM" "$PARTUUID_OEM"
add_part 7 OEM-CONFIG "$TYPE_OEM_CONFIG" "$PARTUUID_OEM_CONFIG"
add_part 9 ROOT "$TYPE_ROOT" "$PARTUUID_ROOT"
sgdisk_args+=(--attributes="3:=:$USR_A_ATTRIBUTES")
if [[ $layout == lts ]]; then
    # Old layout's "hybrid" feature: legacy BIOS bootable ESP (GPT attribute
    # bit 2) mirrored into a hybrid MBR.
    sgdisk_args+=(--attributes=1:set:2)
fi
sgdisk "${sgdisk_args[@]}" "$out" >/dev/null

if [[ $layout == lts ]]; then
    sgdisk --hybrid=1 "$out" >/dev/null
fi

write_partition "$esp" "${start[1]}"
write_partition "$usr_a" "${start[3]}"
write_partition "$oem" "${start[6]}"
write_partition "$root" "${start[9]}"

# Fake GRUB boot code in bytes 0-439 of LBA 0; the disk signature and the
# (protective or hybrid) partition table in bytes 440-511 stay as written.
boot_code="$work/boot-code"
code=""
while ((${#code} < 440)); do
    code+=$BOOT_CODE_STRING
done
printf '%s' "${code:0:440}" >"$boot_code"
dd if="$boot_code" of="$out" bs=440 count=1 conv=notrunc status=none

# ---------------------------------------------------------------------------
# Verify and show
# ---------------------------------------------------------------------------
verify=$(sgdisk -v "$out" 2>&1) || die "sgdisk -v failed: $verify"
if ! grep -q '^No problems found' <<<"$verify" || grep -qiE 'problem:|warning|caution' <<<"$verify"; then
    die "sgdisk -v reports problems:"$'\n'"$verify"
fi
sgdisk -p "$out"
if [[ $layout == lts ]]; then
    printf '\nHybrid MBR:\n'
    sgdisk -O "$out" | sed -n '/^Number/,$p'
fi
printf '\n%s: wrote %s (layout %s, arch %s)\n' "$prog" "$out" "$layout" "$arch"
