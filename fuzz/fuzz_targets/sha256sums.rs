//! `SHA256SUMS` parsing (bakery).
#![no_main]

use flatbake::release::verify::Checksums;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = Checksums::parse_sha256sums(text, "SHA256SUMS") {
            for (f, h) in &c.sums {
                assert_eq!(h.len(), 64);
                assert!(!f.is_empty() && !f.contains('/'));
            }
        }
    }
});
