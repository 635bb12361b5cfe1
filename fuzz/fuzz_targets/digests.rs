//! Flatcar `DIGESTS` parsing (the SHA512 section).
#![no_main]

use flatbake::release::verify::Checksums;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = Checksums::parse_digests_sha512(text, "DIGESTS") {
            for (f, h) in &c.sums {
                assert_eq!(h.len(), 128);
                assert!(!f.is_empty() && !f.contains('/'));
            }
        }
    }
});
