//! Applying [`Edits`] to a directory tree on the host — an unpacked OEM (rootless btrfs
//! rebuild) or a mounted partition (mount backend) — without ever leaving it: every
//! path is resolved with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)` from the
//! tree's root, so a hostile image with `/etc -> /` or `/opt/extensions -> /tmp/x`
//! gets a clear refusal, never a write on the host.

use super::{check_path, Edits, FsError, Op};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Result of applying edits: paths created (relative to the root), for callers that
/// must record ownership some other way (fakeroot).
pub struct Applied {
    pub created: Vec<PathBuf>,
}

struct Tree<'a> {
    part: &'static str,
    root: OwnedFd,
    root_path: &'a Path,
    chown: bool,
    /// Give new files and directories their parent's `btrfs.compression`, as btrfs
    /// does (for a staging tree that stands for a btrfs).
    inherit: bool,
    created: Vec<PathBuf>,
}

const COMPRESSION: &std::ffi::CStr = c"btrfs.compression";

/// The errno of the libc call that just failed.
fn last_errno() -> Errno {
    Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO)
}

/// Chown to root through libc (not a raw syscall), so that fakeroot records it.
fn chown_root_at(dir: &OwnedFd, name: &str) -> Result<(), Errno> {
    let c = std::ffi::CString::new(name).map_err(|_| Errno::INVAL)?;
    // SAFETY: a valid directory fd and C string.
    let r = unsafe { libc::fchownat(dir.as_raw_fd(), c.as_ptr(), 0, 0, libc::AT_SYMLINK_NOFOLLOW) };
    if r == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// Copy `btrfs.compression` from directory `parent` to the new inode `fd`, if set.
fn inherit_compression(parent: &OwnedFd, fd: &impl AsRawFd) -> Result<(), Errno> {
    let mut val = [0u8; 64];
    // SAFETY: valid fds, C string and buffers of the stated lengths.
    let n = unsafe {
        libc::fgetxattr(
            parent.as_raw_fd(),
            COMPRESSION.as_ptr(),
            val.as_mut_ptr().cast(),
            val.len(),
        )
    };
    if n < 0 {
        return match last_errno() {
            // not set, or no xattrs here: nothing to inherit
            Errno::NODATA | Errno::NOTSUP => Ok(()),
            e => Err(e),
        };
    }
    // SAFETY: as above.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            COMPRESSION.as_ptr(),
            val.as_ptr().cast(),
            n as usize,
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

fn split(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some((dir, name)) => (if dir.is_empty() { "/" } else { dir }, name),
        None => ("/", path),
    }
}

impl Tree<'_> {
    fn err(&self, path: &str, e: Errno, doing: &str) -> FsError {
        let what = match e {
            Errno::LOOP | Errno::XDEV => format!(
                "{path}: a component is a symlink in the image; refusing to write through it"
            ),
            Errno::NOTDIR => format!("{path}: a component exists and is not a directory"),
            _ => format!("{path}: {doing}: {}", std::io::Error::from(e)),
        };
        FsError::Invalid {
            part: self.part,
            what,
        }
    }

    /// Open directory `dir` (absolute in the tree), creating missing components.
    fn dir(&mut self, dir: &str) -> Result<OwnedFd, FsError> {
        let mut cur = String::new();
        let mut fd = rustix::fs::openat2(
            &self.root,
            ".",
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
        .map_err(|e| self.err("/", e, "opening"))?;
        for comp in dir.split('/').filter(|c| !c.is_empty()) {
            cur.push('/');
            cur.push_str(comp);
            match rustix::fs::mkdirat(&fd, comp, Mode::from_raw_mode(0o755)) {
                Ok(()) => {
                    if self.chown {
                        chown_root_at(&fd, comp).map_err(|e| self.err(&cur, e, "chown"))?;
                    }
                    self.created
                        .push(PathBuf::from(cur.trim_start_matches('/')));
                    let new = rustix::fs::openat2(
                        &fd,
                        comp,
                        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                        Mode::empty(),
                        RESOLVE,
                    )
                    .map_err(|e| self.err(&cur, e, "opening directory"))?;
                    if self.inherit {
                        inherit_compression(&fd, &new)
                            .map_err(|e| self.err(&cur, e, "setting btrfs.compression"))?;
                    }
                    fd = new;
                    continue;
                }
                Err(Errno::EXIST) => {}
                Err(e) => return Err(self.err(&cur, e, "creating directory")),
            }
            fd = rustix::fs::openat2(
                &fd,
                comp,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
                RESOLVE,
            )
            .map_err(|e| self.err(&cur, e, "opening directory"))?;
        }
        Ok(fd)
    }

    /// Remove a non-directory entry `name` in `dir` if present.
    fn remove(&self, dir: &OwnedFd, path: &str, name: &str) -> Result<(), FsError> {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st)
                if rustix::fs::FileType::from_raw_mode(st.st_mode)
                    == rustix::fs::FileType::Directory =>
            {
                Err(FsError::Invalid {
                    part: self.part,
                    what: format!("{path} exists and is a directory"),
                })
            }
            Ok(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty())
                .map_err(|e| self.err(path, e, "removing")),
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.err(path, e, "inspecting")),
        }
    }

    fn create(
        &mut self,
        dir: &OwnedFd,
        path: &str,
        name: &str,
        mode: u32,
    ) -> Result<File, FsError> {
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode & 0o7777),
        )
        .map_err(|e| self.err(path, e, "creating"))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777))
            .map_err(|e| self.err(path, e, "chmod"))?;
        if self.chown {
            chown_root_at(dir, name).map_err(|e| self.err(path, e, "chown"))?;
        }
        if self.inherit {
            inherit_compression(dir, &fd)
                .map_err(|e| self.err(path, e, "setting btrfs.compression"))?;
        }
        self.created
            .push(PathBuf::from(path.trim_start_matches('/')));
        Ok(File::from(fd))
    }

    fn op(&mut self, op: &Op) -> Result<(), FsError> {
        match op {
            Op::MkdirP(p) => {
                check_path(self.part, p)?;
                self.dir(p)?;
            }
            Op::Write { path, src, mode } => {
                check_path(self.part, path)?;
                let (d, name) = split(path);
                let dir = self.dir(d)?;
                self.remove(&dir, path, name)?;
                let mut from = crate::input::open_regular(src).map_err(FsError::io(src))?;
                let mut to = self.create(&dir, path, name, *mode)?;
                std::io::copy(&mut from, &mut to).map_err(FsError::io(
                    self.root_path.join(path.trim_start_matches('/')),
                ))?;
                to.sync_all().map_err(FsError::io(
                    self.root_path.join(path.trim_start_matches('/')),
                ))?;
            }
            Op::Symlink { path, target } => {
                check_path(self.part, path)?;
                let (d, name) = split(path);
                let dir = self.dir(d)?;
                self.remove(&dir, path, name)?;
                rustix::fs::symlinkat(target.as_str(), &dir, name)
                    .map_err(|e| self.err(path, e, "symlink"))?;
                if self.chown {
                    chown_root_at(&dir, name).map_err(|e| self.err(path, e, "chown"))?;
                }
                self.created
                    .push(PathBuf::from(path.trim_start_matches('/')));
            }
            Op::Remove(path) => {
                check_path(self.part, path)?;
                let (d, name) = split(path);
                match rustix::fs::openat2(
                    &self.root,
                    d.trim_start_matches('/').to_owned() + "/.",
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                    RESOLVE,
                ) {
                    Ok(dir) => self.remove(&dir, path, name)?,
                    Err(Errno::NOENT) => {}
                    Err(e) => return Err(self.err(path, e, "opening")),
                }
            }
            Op::Append { path, header, text } => {
                check_path(self.part, path)?;
                let (d, name) = split(path);
                let dir = self.dir(d)?;
                let existing = match rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => {
                        let mut s = String::new();
                        std::io::Read::read_to_string(&mut File::from(fd), &mut s)
                            .map_err(FsError::io(self.root_path.join(name)))?;
                        Some(s)
                    }
                    Err(Errno::NOENT) => None,
                    Err(e) => return Err(self.err(path, e, "opening")),
                };
                let mut body = existing.clone().unwrap_or_else(|| header.clone());
                if !body.is_empty() && !body.ends_with('\n') {
                    body.push('\n');
                }
                body.push_str(text);
                let mode = match &existing {
                    Some(_) => rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
                        .map(|s| s.st_mode & 0o7777)
                        .unwrap_or(0o644),
                    None => 0o644,
                };
                self.remove(&dir, path, name)?;
                let mut f = self.create(&dir, path, name, mode)?;
                std::io::Write::write_all(&mut f, body.as_bytes())
                    .map_err(FsError::io(self.root_path.join(name)))?;
            }
        }
        Ok(())
    }
}

/// Apply `edits` inside the tree at `root`. With `chown`, everything created is owned by
/// root (needs privileges); otherwise the created paths are returned for the caller.
pub fn apply(
    part: &'static str,
    root: &Path,
    edits: &Edits,
    chown: bool,
) -> Result<Applied, FsError> {
    run(part, root, edits, chown, false)
}

/// Apply `edits` to a staging tree that stands for a btrfs: everything created is
/// owned by root (through libc, so fakeroot records it) and inherits its parent's
/// `btrfs.compression` as btrfs would.
pub fn apply_inheriting(
    part: &'static str,
    root: &Path,
    edits: &Edits,
) -> Result<Applied, FsError> {
    run(part, root, edits, true, true)
}

fn run(
    part: &'static str,
    root: &Path,
    edits: &Edits,
    chown: bool,
    inherit: bool,
) -> Result<Applied, FsError> {
    let fd = rustix::fs::open(
        root,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| FsError::io(root)(e.into()))?;
    let mut t = Tree {
        part,
        root: fd,
        root_path: root,
        chown,
        inherit,
        created: Vec::new(),
    };
    for op in &edits.ops {
        t.op(op)?;
    }
    Ok(Applied { created: t.created })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_inside_and_refuses_symlink_escapes() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(root.join("opt")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink("/", root.join("etc")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("opt/extensions")).unwrap();
        let src = d.path().join("src");
        std::fs::write(&src, b"data").unwrap();
        let mut e = Edits::default();
        e.push(Op::Write {
            path: "/usr/x/y.raw".into(),
            src: src.clone(),
            mode: 0o644,
        });
        e.push(Op::Symlink {
            path: "/usr/x/link".into(),
            target: "/usr/x/y.raw".into(),
        });
        let a = apply("TEST", &root, &e, false).unwrap();
        assert_eq!(std::fs::read(root.join("usr/x/y.raw")).unwrap(), b"data");
        assert!(a.created.contains(&PathBuf::from("usr/x/y.raw")));
        for path in ["/etc/extensions/a.raw", "/opt/extensions/w/w.raw"] {
            let mut e = Edits::default();
            e.push(Op::Write {
                path: path.into(),
                src: src.clone(),
                mode: 0o644,
            });
            let err = apply("TEST", &root, &e, false).err().unwrap().to_string();
            assert!(err.contains("symlink in the image"), "{err}");
        }
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "wrote outside the tree"
        );
        assert!(!Path::new("/extensions/a.raw").exists());
    }
}
