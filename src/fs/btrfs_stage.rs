//! The rootless OEM rebuild's worker, `flatbake __oem-rebuild JOB`, run inside one
//! `fakeroot` session (fakeroot keeps faked owners, device nodes and xattrs such as
//! `security.capability` and `btrfs.compression` only for the life of its session, so
//! unpacking, fixing up, editing and packing all happen in this one process tree).
//!
//! It unpacks OEM with `btrfs restore -m -S` (contents, owners, file modes, symlinks),
//! then makes the staging tree equal the original listing read from the btrfs metadata
//! ([`super::btrfs_tree`]): hard links instead of restore's copies, FIFOs, sockets and
//! device nodes, every owner, mode and xattr; checks that it is equal; applies the
//! edits (new files and directories inherit their parent's `btrfs.compression`, as
//! btrfs does); lists the result for the parent to check the rebuilt filesystem
//! against; and packs it with `mkfs.btrfs --rootdir`. Metadata calls go through libc
//! (not rustix' raw syscalls) so that fakeroot sees them.

use super::btrfs_tree::{Inode, Listing, ROOT_DIR};
use super::{Edits, FsError};
use crate::tools;
use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const PART: &str = "OEM";
const MAX_DEPTH: usize = 64;
const MAX_ENTRIES: usize = 1 << 20;
const S_IFMT: u32 = 0o170000;

/// What the worker does.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Job {
    pub old: PathBuf,
    pub root: PathBuf,
    pub new: PathBuf,
    pub mkfs_args: Vec<PathBuf>,
    pub listing: Listing,
    pub edits: Edits,
    /// Where the worker writes the staged tree's listing (after the edits).
    pub out: PathBuf,
}

fn invalid(what: String) -> FsError {
    FsError::Invalid { part: PART, what }
}

fn cpath(p: &Path) -> Result<CString, FsError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| invalid(format!("{}: NUL in path", p.display())))
}

fn check(r: libc::c_int, p: &Path, doing: &str) -> Result<(), FsError> {
    if r == 0 {
        Ok(())
    } else {
        Err(invalid(format!(
            "{}: {doing}: {}",
            p.display(),
            std::io::Error::last_os_error()
        )))
    }
}

/// lstat through libc, as fakeroot answers it.
fn lstat(p: &Path) -> Result<Option<libc::stat>, FsError> {
    let c = cpath(p)?;
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string and st a properly sized out-parameter.
    if unsafe { libc::lstat(c.as_ptr(), &mut st) } == 0 {
        return Ok(Some(st));
    }
    match std::io::Error::last_os_error() {
        e if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        e => Err(invalid(format!("{}: {e}", p.display()))),
    }
}

fn xattrs(p: &Path) -> Result<BTreeMap<String, Vec<u8>>, FsError> {
    let c = cpath(p)?;
    let mut names = vec![0u8; 65536];
    // SAFETY: buffers are valid for their stated lengths.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        return Err(invalid(format!(
            "{}: listing xattrs: {}",
            p.display(),
            std::io::Error::last_os_error()
        )));
    }
    let mut out = BTreeMap::new();
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let cn = CString::new(name).map_err(|_| invalid("xattr name".into()))?;
        let mut val = vec![0u8; 65536];
        // SAFETY: as above.
        let m =
            unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), val.as_mut_ptr().cast(), val.len()) };
        if m < 0 {
            return Err(invalid(format!(
                "{}: reading xattr: {}",
                p.display(),
                std::io::Error::last_os_error()
            )));
        }
        val.truncate(m as usize);
        out.insert(String::from_utf8_lossy(name).into_owned(), val);
    }
    Ok(out)
}

fn set_xattr(p: &Path, name: &str, val: &[u8]) -> Result<(), FsError> {
    let (c, cn) = (
        cpath(p)?,
        CString::new(name).map_err(|_| invalid(format!("{}: xattr name {name:?}", p.display())))?,
    );
    // SAFETY: valid C strings and a value buffer of the stated length.
    let r = unsafe { libc::lsetxattr(c.as_ptr(), cn.as_ptr(), val.as_ptr().cast(), val.len(), 0) };
    check(r, p, &format!("setting xattr {name}"))
}

/// The staging tree at `root` as fakeroot shows it: every path, keyed by inode number.
pub fn list_tree(root: &Path) -> Result<Listing, FsError> {
    let mut l = Listing::default();
    let mut stack = vec![(String::new(), 0usize)];
    while let Some((rel, depth)) = stack.pop() {
        let full = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let st = lstat(&full)?.ok_or_else(|| invalid(format!("{} vanished", full.display())))?;
        let ino = if rel.is_empty() {
            ROOT_DIR
        } else {
            st.st_ino + 1024
        };
        if l.paths.len() > MAX_ENTRIES || depth > MAX_DEPTH {
            return Err(invalid("staging tree too large or deep".into()));
        }
        l.paths.insert(rel.clone(), ino);
        let mode = st.st_mode;
        let inode = Inode {
            mode,
            uid: st.st_uid,
            gid: st.st_gid,
            nlink: st.st_nlink as u32,
            rdev: st.st_rdev,
            size: st.st_size as u64,
            flags: 0,
            xattrs: xattrs(&full)?,
        };
        l.inodes.insert(ino, inode);
        if mode & S_IFMT == 0o040000 {
            for e in std::fs::read_dir(&full).map_err(FsError::io(&full))? {
                let e = e.map_err(FsError::io(&full))?;
                let name = e.file_name().to_string_lossy().into_owned();
                stack.push((
                    if rel.is_empty() {
                        name
                    } else {
                        format!("{rel}/{name}")
                    },
                    depth + 1,
                ));
            }
        }
    }
    Ok(l)
}

/// Make the restored tree at `root` equal `want` (all but the root directory itself).
fn fix_up(root: &Path, want: &Listing) -> Result<(), FsError> {
    let mut first: HashMap<u64, PathBuf> = HashMap::new();
    for (rel, ino) in want.paths.iter().filter(|(p, _)| !p.is_empty()) {
        let full = root.join(rel);
        let i = want
            .inodes
            .get(ino)
            .ok_or_else(|| invalid(format!("/{rel}: no inode in the listing")))?;
        if let Some(f) = first.get(ino) {
            if lstat(&full)?.is_some() {
                std::fs::remove_file(&full).map_err(FsError::io(&full))?;
            }
            std::fs::hard_link(f, &full).map_err(FsError::io(&full))?;
            continue;
        }
        first.insert(*ino, full.clone());
        let kind = i.mode & S_IFMT;
        match kind {
            0o100000 | 0o040000 | 0o120000 => {
                if lstat(&full)?.is_none_or(|s| s.st_mode & S_IFMT != kind) {
                    return Err(invalid(format!(
                        "/{rel}: btrfs restore did not unpack it; use --backend mount"
                    )));
                }
            }
            _ => {
                let c = cpath(&full)?;
                // SAFETY: valid C string.
                let r = unsafe {
                    libc::mknod(c.as_ptr(), i.mode & (S_IFMT | 0o777), i.rdev as libc::dev_t)
                };
                check(r, &full, "creating special file")?;
            }
        }
        let c = cpath(&full)?;
        // SAFETY: valid C string.
        check(
            unsafe { libc::lchown(c.as_ptr(), i.uid, i.gid) },
            &full,
            "chown",
        )?;
        if kind != 0o120000 {
            // SAFETY: valid C string.
            check(
                unsafe { libc::chmod(c.as_ptr(), i.mode & 0o7777) },
                &full,
                "chmod",
            )?;
        }
        for (name, val) in &i.xattrs {
            set_xattr(&full, name, val)?;
        }
    }
    Ok(())
}

/// `l` with its root directory's inode replaced by `root` (the root is carried
/// separately: mkfs.btrfs makes its own).
pub fn with_root(mut l: Listing, root: &Inode) -> Listing {
    l.inodes.insert(ROOT_DIR, root.clone());
    l
}

/// The worker's entry point (inside fakeroot).
pub fn run_job(path: &Path) -> Result<(), FsError> {
    let text = std::fs::read(path).map_err(FsError::io(path))?;
    let job: Job =
        serde_json::from_slice(&text).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    tools::run(
        Command::new("btrfs")
            .arg("restore")
            .arg("-m")
            .arg("-S")
            .arg(&job.old)
            .arg(&job.root),
        "unpacking OEM (btrfs restore)",
    )?;
    fix_up(&job.root, &job.listing)?;
    let root_inode = job
        .listing
        .inodes
        .get(&ROOT_DIR)
        .cloned()
        .unwrap_or_default();
    // inode flags are set on the packed filesystem, not in the staging tree
    let unflagged = |mut l: Listing| {
        l.inodes.values_mut().for_each(|i| i.flags = 0);
        l
    };
    let staged = unflagged(with_root(list_tree(&job.root)?, &root_inode));
    if let Some(d) = super::btrfs_tree::diff(&unflagged(job.listing.clone()), &staged) {
        return Err(invalid(format!(
            "unpacking would change {d}; use --backend mount"
        )));
    }
    super::tree::apply_inheriting(PART, &job.root, &job.edits)?;
    let after = list_tree(&job.root)?;
    let text = serde_json::to_vec(&after).map_err(|e| invalid(e.to_string()))?;
    std::fs::write(&job.out, text).map_err(FsError::io(&job.out))?;
    tools::run(
        Command::new("mkfs.btrfs").args(&job.mkfs_args),
        "packing OEM (mkfs.btrfs --rootdir)",
    )?;
    Ok(())
}
