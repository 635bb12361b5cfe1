//! Filesystems inside a Flatcar disk: the edits flatbake makes to them, described once
//! as data ([`Edits`]) and applied by one writer per filesystem: [`ext4`] for ROOT
//! (debugfs, in place), [`btrfs`] for OEM (rebuilt with btrfs-progs), [`fat`] reads the
//! ESP. Everything written is owned by root.

pub mod btrfs;
pub mod btrfs_stage;
pub mod btrfs_tree;
pub mod ext4;
pub mod ext4_super;
pub mod fat;
pub mod mount;
pub mod tree;

use std::path::PathBuf;

/// One change to a filesystem. Paths are absolute within that filesystem.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Op {
    /// Create a directory and its missing parents (mode 0755).
    MkdirP(String),
    /// Put the content of a host file at `path` (replacing a file or symlink there).
    Write {
        path: String,
        src: PathBuf,
        mode: u32,
    },
    /// Make `path` a symlink to `target` (replacing a file or symlink there).
    Symlink { path: String, target: String },
    /// Remove a file or symlink if it is there.
    Remove(String),
    /// Append `text` to the file at `path`, creating it with `header` first if missing.
    Append {
        path: String,
        header: String,
        text: String,
    },
}

/// An ordered list of changes to one filesystem.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
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
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{part} partition: {what}")]
    Invalid { part: &'static str, what: String },
}

impl FsError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> FsError {
        let path = path.into();
        move |source| FsError::Io { path, source }
    }
}

/// How partitions are edited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// No privileges: debugfs for ext4, btrfs-progs rebuild for btrfs (the default).
    Rootless,
    /// Loop devices and kernel mounts in a private mount namespace (needs root).
    Mount,
    /// `mount` when running as root with loop devices, else `rootless`.
    Auto,
}

impl Backend {
    /// `Auto` resolved for this machine.
    pub fn resolve(self) -> Backend {
        match self {
            Backend::Auto if mount::available() => Backend::Mount,
            Backend::Auto => Backend::Rootless,
            b => b,
        }
    }
}

/// Apply `edits` to ROOT's ext4 with `backend`; the result is checked by e2fsck -fn.
pub fn apply_root(
    backend: Backend,
    image: &std::path::Path,
    part: &crate::disk::gpt::Partition,
    edits: &Edits,
    work: &std::path::Path,
) -> Result<(), FsError> {
    match backend.resolve() {
        Backend::Mount if !edits.is_empty() => {
            mount::apply(image, part, "ROOT", "ext4", edits, work)?;
            ext4::fsck(image, part)
        }
        _ => ext4::apply(image, part, edits, work),
    }
}

/// Apply `edits` to OEM's btrfs with `backend`; the result is checked by btrfs check.
pub fn apply_oem(
    backend: Backend,
    image: &std::path::Path,
    file: &std::fs::File,
    part: &crate::disk::gpt::Partition,
    edits: &Edits,
    work: &std::path::Path,
) -> Result<(), FsError> {
    match backend.resolve() {
        Backend::Mount if !edits.is_empty() => {
            mount::apply(image, part, "OEM", "btrfs", edits, work)?;
            btrfs::check_partition(file, part, work, "checking OEM after editing (btrfs check)")
        }
        _ => btrfs::apply(image, file, part, edits, work),
    }
}

/// Split an absolute path into its parent directories, outermost first:
/// `/a/b/c` gives `/a`, `/a/b`.
pub fn parents(path: &str) -> Vec<String> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    (1..comps.len())
        .map(|i| format!("/{}", comps[..i].join("/")))
        .collect()
}

/// Reject paths that are not plain absolute paths of safe characters.
pub fn check_path(part: &'static str, path: &str) -> Result<(), FsError> {
    let bad = |what: &str| {
        Err(FsError::Invalid {
            part,
            what: format!("path {path:?}: {what}"),
        })
    };
    if !path.starts_with('/') {
        return bad("not absolute");
    }
    if path.split('/').any(|c| c == ".." || c == ".") {
        return bad("contains '.' or '..'");
    }
    if let Some(c) = path
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "\"'\\".contains(*c))
    {
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
