//! extension-release / os-release parsing and judging: the systemd-exact parser and the
//! compatibility predicate (as the extension, and as the target's os-release).
#![no_main]

use flatbake::sysext::compat::{parse_env, problems, TargetOs};
use flatbake::sysext::release::ReleaseFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = parse_env(data) {
        let _ = problems(&r, &TargetOs::any_flatcar(Some("x86-64")));
        if let Ok(t) = TargetOs::from_os_release(data, "fuzz", Some("arm64")) {
            let _ = problems(&r, &t);
            let _ = t.describe();
        }
    }
    if let Ok(r) = ReleaseFile::parse_bytes(data) {
        // what we print parses back to the same fields
        let again = ReleaseFile::parse(&r.to_string());
        assert!(again.is_ok() || r.fields.iter().any(|(_, v)| v.contains(['\n', '\r', '"', '\'', '\\', '#']) || v.trim() != v));
    }
});
