//! Filesystems inside a Flatcar disk: the edits flatbake makes to them, described once
//! as data ([`Edits`]) and applied by one writer per filesystem: [`ext4`] for ROOT
//! (debugfs, in place), [`btrfs`] for OEM (rebuilt with btrfs-progs), [`fat`] reads the
//! ESP. Everything written is owned by root.

pub mod btrfs;
pub mod ext4;
pub mod fat;
pub mod tree;

use std::path::PathBuf;

/// One change to a filesystem. Paths are absolute within that filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create a directory and its missing parents (mode 0755).
    MkdirP(String),
    /// Put the content of a host file at `path` (replacing a file or symlink there).
    Write { path: String, src: PathBuf, mode: u32 },
    /// Make `path` a symlink to `target` (replacing a file or symlink there).
    Symlink { path: String, target: String },
    /// Remove a file or symlink if it is there.
    Remove(String),
    /// Append `text` to the file at `path`, creating it with `header` first if missing.
    Append { path: String, header: String, text: String },
}

/// An ordered list of changes to one filesystem.
#[derive(Clone, Debug, Default)]
pub struct Edits {
    pub ops: Vec<Op>,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error(transparent)]
    Tool(#[from] crate::tools::ToolError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{part} partition: {what}")]
    Invalid { part: &'static str, what: String },
}

impl FsError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> FsError {
        let path = path.into();
        move |source| FsError::Io { path, source }
    }
}

/// Split an absolute path into its parent directories, outermost first:
/// `/a/b/c` gives `/a`, `/a/b`.
pub fn parents(path: &str) -> Vec<String> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    (1..comps.len()).map(|i| format!("/{}", comps[..i].join("/"))).collect()
}

/// Reject paths that are not plain absolute paths of safe characters.
pub fn check_path(part: &'static str, path: &str) -> Result<(), FsError> {
    let bad = |what: &str| Err(FsError::Invalid { part, what: format!("path {path:?}: {what}") });
    if !path.starts_with('/') {
        return bad("not absolute");
    }
    if path.split('/').any(|c| c == ".." || c == ".") {
        return bad("contains '.' or '..'");
    }
    if let Some(c) = path.chars().find(|c| c.is_whitespace() || c.is_control() || "\"'\\".contains(*c)) {
        return bad(&format!("contains {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parents_and_paths() {
        assert_eq!(parents("/a/b/c"), vec!["/a", "/a/b"]);
        assert!(parents("/a").is_empty());
        assert!(check_path("ROOT", "/opt/extensions/x/x-1.raw").is_ok());
        assert!(check_path("ROOT", "/opt/../etc").is_err());
        assert!(check_path("ROOT", "opt").is_err());
        assert!(check_path("ROOT", "/a b").is_err());
    }
}
