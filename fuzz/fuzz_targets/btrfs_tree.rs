//! The btrfs metadata reader (`fs::btrfs_tree::list`, the OEM listing) on an arbitrary
//! image. Input: records `[u32 LE sector][u16 LE length][bytes]` laid into a sparse
//! file (a real 100 MiB filesystem is a few KiB of records); every node-sized block then
//! gets a correct checksum, so the fuzzer explores the trees rather than crc32c.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

const SB: u64 = 64 * 1024;
const MAX_IMAGE: u64 = 256 << 20;

fn crc32c(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    crc
}

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
        rest = &rest[6 + len..];
    }
    let mut sb = [0u8; 4096];
    if f.read_exact_at(&mut sb, SB).is_err() {
        return;
    }
    let nodesize = u32::from_le_bytes([sb[0x94], sb[0x95], sb[0x96], sb[0x97]]) as u64;
    if (4096..=65536).contains(&nodesize) && nodesize.is_power_of_two() {
        let mut node = vec![0u8; nodesize as usize];
        let mut at = 0;
        while at + nodesize <= end {
            if f.read_exact_at(&mut node, at).is_ok() && node.iter().any(|&b| b != 0) {
                let c = !crc32c(!0, &node[32..]);
                let _ = f.write_all_at(&c.to_le_bytes(), at);
            }
            at += nodesize;
        }
    }
    let _ = flatbake::fs::btrfs_tree::list(f, 0);
});
