//! extension-release / os-release parsing and judging.
#![no_main]

use flatbake::sysext::release::{problems, HostOs, ReleaseFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = ReleaseFile::parse_bytes(data) {
        let _ = problems(&r, &HostOs { id: "flatcar", arch: Some("x86-64") });
        // what we print parses back to the same fields
        let again = ReleaseFile::parse(&r.to_string());
        assert!(again.is_ok() || r.fields.iter().any(|(_, v)| v.contains(['\n', '\r', '"', '\'', '\\', '#']) || v.trim() != v));
    }
});
