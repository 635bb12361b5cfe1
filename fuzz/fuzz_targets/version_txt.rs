//! Flatcar `version.txt` parsing.
#![no_main]

use flatbake::release::channel::VersionTxt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(v) = VersionTxt::parse(text, "version.txt") {
            let _ = v.version.to_string();
        }
    }
});
