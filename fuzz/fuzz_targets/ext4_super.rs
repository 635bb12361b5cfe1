//! ext4's superblock checks (`fs::ext4_super`): parse an arbitrary 1024-byte superblock
//! for a partition of arbitrary size, then judge it for both backends and size a plan.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 1032 {
        return;
    }
    let part = u64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8]));
    let Ok(sb) = <&[u8; 1024]>::try_from(&data[8..1032]) else {
        return;
    };
    if let Ok(s) = flatbake::fs::ext4_super::Super::parse(sb, part) {
        let _ = s.refusal(flatbake::fs::Backend::Rootless);
        let _ = s.refusal(flatbake::fs::Backend::Mount);
        let _ = s.available();
        let _ = s.file_blocks(u64::from(data[8]) << 20);
    }
});
