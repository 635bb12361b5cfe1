//! The cache layout, its "verified" markers and its per-entry locks.
//!
//! `<file>.verified` records how a cached file was checked, its SHA-256, and its size,
//! mtime, inode number and ctime, so a later run trusts it after a `stat` instead of
//! re-reading gigabytes. A file whose size, mtime, inode or ctime changed since (any
//! write, a replacement, a copy, a restored backup) is not trusted: callers check it again
//! (signature or hash) or fetch it again. A marker is written only after every check
//! passed, through a unique temporary file and an atomic rename.
//!
//! The cache may be shared by concurrent runs, also on NFS-like volumes: whoever fetches
//! or rebuilds an entry holds `<file>.lock` (an exclusive `flock`) meanwhile, and final
//! names only ever appear by `rename`, so no run sees a half-written file.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
    pub mtime_secs: i64,
    pub mtime_nanos: i64,
    #[serde(default)]
    pub ino: u64,
    #[serde(default)]
    pub ctime_secs: i64,
    #[serde(default)]
    pub ctime_nanos: i64,
}

/// `<file>.verified`.
pub fn marker_path(file: &Path) -> PathBuf {
    with_suffix(file, ".verified")
}

/// `<file>.lock`.
pub fn lock_path(file: &Path) -> PathBuf {
    with_suffix(file, ".lock")
}

/// (size, mtime s, mtime ns, inode, ctime s, ctime ns) of a regular file.
type Stat = (u64, i64, i64, u64, i64, i64);

fn stat(file: &Path) -> Option<Stat> {
    let m = fs::symlink_metadata(file).ok()?;
    if !m.file_type().is_file() {
        return None;
    }
    Some((
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino(),
        m.ctime(),
        m.ctime_nsec(),
    ))
}

/// A name beside `file` no other process or call uses: `<dir>/.flatbake-<pid>-<name>.<tag>.<n>.<ns>`
/// (removed on SIGINT/SIGTERM through [`crate::cleanup::register`] by its users).
pub fn temp_path(file: &Path, tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = file.parent().unwrap_or(Path::new("."));
    // the clock's nanoseconds tell apart equal pids of hosts sharing the volume
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    dir.join(format!(
        "{}{name}.{tag}.{n}.{nanos}",
        crate::cleanup::prefix()
    ))
}

/// Records that `file`, as it is now, passed every check (`verified_by`).
pub fn write_marker(file: &Path, verified_by: &str, sha256: &str) -> std::io::Result<Marker> {
    let (size, mtime_secs, mtime_nanos, ino, ctime_secs, ctime_nanos) = stat(file)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "cannot stat the file"))?;
    let m = Marker {
        verified_by: verified_by.to_string(),
        sha256: sha256.to_string(),
        size,
        mtime_secs,
        mtime_nanos,
        ino,
        ctime_secs,
        ctime_nanos,
    };
    let json = serde_json::to_vec_pretty(&m).map_err(std::io::Error::other)?;
    let path = marker_path(file);
    let tmp = temp_path(&path, "tmp");
    let _guard = crate::cleanup::register(&tmp);
    let res = fs::write(&tmp, json).and_then(|()| fs::rename(&tmp, &path));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map(|()| m)
}

/// The marker of `file` as stored, whether or not it still matches the file.
pub fn read_marker(file: &Path) -> Option<Marker> {
    let data = crate::input::read_bytes(&marker_path(file), 64 << 10).ok()?;
    serde_json::from_slice(&data).ok()
}

/// The marker of `file` if it still matches the file's size, mtime, inode and ctime.
/// Markers of unverified files count only when `accept_insecure` is set.
pub fn valid_marker(file: &Path, accept_insecure: bool) -> Option<Marker> {
    let m = read_marker(file)?;
    let now = stat(file)?;
    if (
        m.size,
        m.mtime_secs,
        m.mtime_nanos,
        m.ino,
        m.ctime_secs,
        m.ctime_nanos,
    ) != now
    {
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

/// An exclusive lock on one cache entry, released when dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Takes the lock of cache entry `file` (`<file>.lock`), waiting (and saying so) while
/// another run holds it.
pub fn lock(file: &Path) -> std::io::Result<Lock> {
    use rustix::fs::{flock, FlockOperation};
    if let Some(dir) = file.parent() {
        fs::create_dir_all(dir)?;
    }
    let path = lock_path(file);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    match flock(&f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            eprintln!(
                "flatbake: waiting for another flatbake run that is fetching {}",
                file.display()
            );
            flock(&f, FlockOperation::LockExclusive).map_err(std::io::Error::from)?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Lock { _file: f })
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

    #[test]
    fn same_size_and_mtime_but_other_bytes_is_not_trusted() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x");
        fs::write(&f, b"hello").unwrap();
        write_marker(&f, "openpgp:ABC", "00").unwrap();
        let mtime = fs::metadata(&f).unwrap().modified().unwrap();
        // rewrite in place with the same size, then put the mtime back: ctime moves
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&f, b"jello").unwrap();
        File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert!(valid_marker(&f, false).is_none());
        // replaced by another file (another inode)
        write_marker(&f, "openpgp:ABC", "00").unwrap();
        let g = d.path().join("y");
        fs::write(&g, b"jello").unwrap();
        fs::rename(&g, &f).unwrap();
        assert!(valid_marker(&f, false).is_none());
        // every written marker leaves no temporary file behind
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with(".flatbake-")),
            "{names:?}"
        );
    }

    #[test]
    fn lock_is_exclusive_between_handles() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x");
        let l = lock(&f).unwrap();
        let second = File::open(lock_path(&f)).unwrap();
        assert!(rustix::fs::flock(
            &second,
            rustix::fs::FlockOperation::NonBlockingLockExclusive
        )
        .is_err());
        drop(l);
        assert!(rustix::fs::flock(
            &second,
            rustix::fs::FlockOperation::NonBlockingLockExclusive
        )
        .is_ok());
    }
}
