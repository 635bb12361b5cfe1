#!/usr/bin/env bash
# Every benchmark, side by side with the tool a user would otherwise use, in one run:
#   1. end-to-end bake from a cached .bin.bz2 vs the bash way   (scripts/bench-bake.sh)
#   2. bz2 decompression vs bunzip2 and lbzip2 -d              (scripts/bench-decompress.sh)
#   3. compressed qcow2 / streamOptimized VMDK vs qemu-img      (scripts/bench-formats.sh)
#   4. sysext packing vs mksquashfs                             (scripts/bench-sysext.sh)
#   5. fetch and --fetch --vendor qemu_uefi from a served, signed release vs
#      curl + gpg + lbzip2 -d (+ mount/cp + qemu-img convert -c) (scripts/bench-e2e.sh)
# Each prints a table with ratios and peak RSS. Needs root for (1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
for b in bake decompress formats sysext e2e; do
    if [ -f "scripts/bench-$b.sh" ]; then
        echo "=== $b"
        bash "scripts/bench-$b.sh"
    fi
done
