//! The judge of a refused run, shared by the hostile-input suites: exit 1, one
//! `error:` line (or a pre-flight list: "N problems, nothing was written:" and N lines
//! `  - ...`) naming what is wrong, no panic, nothing at the output path, no
//! `.flatbake*` temporary left beside it, and every input unchanged (size, mtime and
//! ctime for images, whose holes hashing would read; sha256 for small files).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Output;

/// Size, mtime and ctime (seconds, nanoseconds) of a file.
pub type Stamp = (u64, i64, i64, i64, i64);

/// Size, mtime and ctime of `p` (any write changes one of them); `None` when absent.
pub fn stamp(p: &Path) -> Option<Stamp> {
    std::fs::symlink_metadata(p).ok().map(|m| {
        (
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        )
    })
}

/// What a run must leave as it found: the stamps of `inputs`.
pub struct Before(Vec<(std::path::PathBuf, Option<Stamp>)>);

impl Before {
    pub fn take(inputs: &[&Path]) -> Before {
        Before(inputs.iter().map(|p| (p.to_path_buf(), stamp(p))).collect())
    }
    pub fn unchanged(&self, what: &str) {
        for (p, s) in &self.0 {
            assert_eq!(&stamp(p), s, "{what}: {} was modified", p.display());
        }
    }
}

/// Assert the shape of a refused run's stderr and return it.
pub fn one_error(o: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{what}: want exit 1\n{err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("flatbake:"))
        .collect();
    let errors = lines.iter().filter(|l| l.starts_with("error:")).count();
    assert_eq!(errors, 1, "{what}: want one error line: {err}");
    let listed = lines.iter().filter(|l| l.starts_with("  - ")).count();
    match err
        .split(" problems, nothing was written:")
        .next()
        .and_then(|h| h.trim_start().strip_prefix("error: "))
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(n) => assert_eq!(listed, n, "{what}: {err}"),
        None => assert_eq!(lines.len(), 1, "{what}: more than one line: {err}"),
    }
    err
}

/// [`one_error`], then: nothing at `output`, no temporaries in `out_dir`, the inputs
/// as they were.
pub fn refused_cleanly(o: &Output, what: &str, output: &Path, before: &Before) -> String {
    let err = one_error(o, what);
    assert!(
        std::fs::symlink_metadata(output).is_err(),
        "{what}: output written despite the error: {err}"
    );
    if let Some(dir) = output.parent().filter(|d| d.is_dir()) {
        let left = super::leftovers(dir);
        assert!(left.is_empty(), "{what}: temporaries left: {left:?}");
    }
    before.unchanged(what);
    err
}
