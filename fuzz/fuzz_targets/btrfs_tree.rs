//! The btrfs metadata reader (`fs::btrfs_tree::list`, the OEM listing) on an arbitrary
//! image. Input: records `[u32 LE sector][u16 LE length][bytes]` laid into a sparse
//! file (a real 100 MiB filesystem is a few KiB of records); every node-sized block then
//! gets a correct checksum (the library's `node_csum`), so the fuzzer explores the
//! trees rather than crc32c. Then `read_file` looks up a few paths (name hashes,
//! symlinks, inline/regular/compressed extents).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

const SB: u64 = 64 * 1024;
const MAX_IMAGE: u64 = 256 << 20;

fn scratch() -> &'static File {
    static F: OnceLock<File> = OnceLock::new();
    F.get_or_init(|| tempfile::tempfile().expect("scratch file"))
}

fuzz_target!(|data: &[u8]| {
    let f = scratch();
    if f.set_len(0).is_err() {
        return;
    }
    let mut end = 0u64;
    let mut written = Vec::new();
    let mut rest = data;
    while rest.len() >= 6 {
        let sector = u64::from(u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]));
        let len = usize::from(u16::from_le_bytes([rest[4], rest[5]])).min(rest.len() - 6);
        let off = sector * 512;
        if off + len as u64 > MAX_IMAGE {
            return;
        }
        if f.write_all_at(&rest[6..6 + len], off).is_err() {
            return;
        }
        end = end.max(off + len as u64);
        written.push((off, off + len as u64));
        rest = &rest[6 + len..];
    }
    let mut sb = [0u8; 4096];
    if f.read_exact_at(&mut sb, SB).is_err() {
        return;
    }
    let nodesize = u32::from_le_bytes([sb[0x94], sb[0x95], sb[0x96], sb[0x97]]) as u64;
    if (4096..=65536).contains(&nodesize) && nodesize.is_power_of_two() {
        // only the node-sized blocks the records touched (a scan of the whole sparse
        // file made each run read up to 256 MiB)
        let mut nodes: Vec<u64> = written
            .iter()
            .flat_map(|&(a, b)| (a / nodesize..b.div_ceil(nodesize)).map(|n| n * nodesize))
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        let mut node = vec![0u8; nodesize as usize];
        for at in nodes {
            if f.read_exact_at(&mut node, at).is_ok() && node.iter().any(|&b| b != 0) {
                let c = flatbake::fs::btrfs_tree::node_csum(&node);
                let _ = f.write_all_at(&c.to_le_bytes(), at);
            }
        }
        // the superblock's own checksum covers its 4 KiB, not a node
        if f.read_exact_at(&mut sb, SB).is_ok() {
            let c = flatbake::fs::btrfs_tree::node_csum(&sb);
            let _ = f.write_all_at(&c.to_le_bytes(), SB);
        }
    }
    let _ = flatbake::fs::btrfs_tree::list(f, 0);
    // the in-place file reader (name-hash lookups, symlinks, extents), bounded to the
    // records written, as sysext check reads a target's os-release
    for path in ["/grub.cfg", "/bin/link", "/usr/lib/os-release"] {
        let _ = flatbake::fs::btrfs_tree::read_file(f, 0, end.max(SB + 4096), "/", path, 1 << 20);
    }
});
