#!/usr/bin/env bash
# make-fixture-oem.sh - fill the OEM partition of a fixture image (from
# make-fixture-image.sh) with everything a rebuild could lose, through a real btrfs
# mount (needs root and loop devices): xattrs (user.*, security.capability, the
# btrfs.compression property inherited from the root), hard links, a FIFO, a socket,
# a symlink, odd modes and owners, and on request a device node or a subvolume.
#
# Usage: scripts/make-fixture-oem.sh IMAGE [--device] [--subvolume] [--root-xattr]
set -euo pipefail
img=$1; shift
device=0 subvol=0 rootx=0
for a in "$@"; do
    case $a in
        --device) device=1 ;;
        --subvolume) subvol=1 ;;
        --root-xattr) rootx=1 ;;
        *) echo "unknown option $a" >&2; exit 2 ;;
    esac
done
[[ $EUID -eq 0 ]] || { echo "make-fixture-oem.sh: needs root" >&2; exit 1; }
read -r start sectors < <(partx -g -o START,SECTORS -n 6 "$img")
unshare --mount --propagation private -- bash -euo pipefail -c '
    img=$1 off=$2 len=$3 device=$4 subvol=$5 rootx=$6
    m=$(mktemp -d)
    mount -o loop,offset=$off,sizelimit=$len "$img" "$m"
    trap "cd /; umount $m; rmdir $m" EXIT
    cd "$m"
    btrfs property set . compression zlib
    [[ $rootx -eq 0 ]] || { setfattr -n user.oem -v root .; chmod 0750 .; chown 0:27 .; }
    printf "ID=fixture\n" > oem-release
    printf "# Flatcar GRUB settings\n\n" > grub.cfg
    mkdir -p bin sysext share/deep/er
    cp /usr/bin/true bin/ping
    setcap cap_net_raw+ep bin/ping
    setfattr -n user.note -v "hello world" oem-release
    setfattr -n user.bin -v 0x00ff01 bin/ping
    setfattr -n user.dir -v d share
    printf "linked\n" > share/a
    ln share/a share/deep/b
    ln share/a bin/c
    mkfifo share/fifo
    python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])" share/sock
    ln -s ../oem-release share/link
    head -c 300000 /dev/urandom > share/deep/er/big
    printf "setuid\n" > bin/suid; chmod 4711 bin/suid
    chown 1234:5678 share/deep; chmod 0700 share/deep
    chown -h 42:43 share/link
    mkdir share/sticky; chmod 1777 share/sticky
    printf "ro\n" > share/ro; chmod 0400 share/ro
    [[ $device -eq 0 ]] || mknod share/null c 1 3
    [[ $subvol -eq 0 ]] || { btrfs subvolume create vol >/dev/null; echo in > vol/file; }
' sh "$img" $((start * 512)) $((sectors * 512)) $device $subvol $rootx
