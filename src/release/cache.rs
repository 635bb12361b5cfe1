//! The cache layout and its "verified" markers: `<file>.verified` records how a cached
//! file was checked, its SHA-256, size and mtime, so a later run trusts it after a `stat`
//! instead of re-reading gigabytes. A file whose size or mtime changed is not trusted.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::download::with_suffix;

/// How a cached file was checked.
pub const BY_INSECURE: &str = "insecure (not verified)";

/// Contents of a `<file>.verified` marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// What vouched for the file: `openpgp:<signer fingerprint>`, `sha256sums:<url>`,
    /// `source-sha256:<hex>` (for a decompressed image), or [`BY_INSECURE`].
    pub verified_by: String,
    /// SHA-256 of the file when known (empty otherwise).
    pub sha256: String,
    pub size: u64,
    pub mtime_secs: u64,
    pub mtime_nanos: u32,
}

/// `<file>.verified`.
pub fn marker_path(file: &Path) -> PathBuf {
    with_suffix(file, ".verified")
}

fn stat(file: &Path) -> Option<(u64, u64, u32)> {
    let m = fs::metadata(file).ok()?;
    let t = m.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some((m.len(), t.as_secs(), t.subsec_nanos()))
}

/// Records that `file`, as it is now, was checked by `verified_by`.
pub fn write_marker(file: &Path, verified_by: &str, sha256: &str) -> std::io::Result<Marker> {
    let (size, mtime_secs, mtime_nanos) = stat(file)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "cannot stat the file"))?;
    let m = Marker {
        verified_by: verified_by.to_string(),
        sha256: sha256.to_string(),
        size,
        mtime_secs,
        mtime_nanos,
    };
    let json = serde_json::to_vec_pretty(&m).map_err(std::io::Error::other)?;
    let path = marker_path(file);
    let tmp = with_suffix(&path, ".tmp");
    let _tmp_guard = crate::cleanup::register(&tmp);
    fs::write(&tmp, json)?;
    fs::rename(&tmp, &path)?;
    Ok(m)
}

/// The marker of `file` if it still matches the file's size and mtime. Markers of
/// unverified files count only when `accept_insecure` is set.
pub fn valid_marker(file: &Path, accept_insecure: bool) -> Option<Marker> {
    let data = fs::read(marker_path(file)).ok()?;
    let m: Marker = serde_json::from_slice(&data).ok()?;
    let (size, secs, nanos) = stat(file)?;
    if m.size != size || m.mtime_secs != secs || m.mtime_nanos != nanos {
        return None;
    }
    if m.verified_by == BY_INSECURE && !accept_insecure {
        return None;
    }
    Some(m)
}

/// Removes `file` and its marker (ignoring absence).
pub fn remove_with_marker(file: &Path) {
    let _ = fs::remove_file(marker_path(file));
    let _ = fs::remove_file(file);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_tracks_changes() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x");
        fs::write(&f, b"hello").unwrap();
        assert!(valid_marker(&f, false).is_none());
        write_marker(&f, "openpgp:ABC", "00").unwrap();
        assert_eq!(valid_marker(&f, false).unwrap().verified_by, "openpgp:ABC");
        fs::write(&f, b"hello!").unwrap();
        assert!(valid_marker(&f, false).is_none());
        write_marker(&f, BY_INSECURE, "").unwrap();
        assert!(valid_marker(&f, false).is_none());
        assert!(valid_marker(&f, true).is_some());
        remove_with_marker(&f);
        assert!(!f.exists() && !marker_path(&f).exists());
    }
}
