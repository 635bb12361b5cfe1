//! ROOT's ext4 filesystem: read in-process with `ext4-view`, written in place inside the
//! image with e2fsprogs' `debugfs -w 'IMAGE?offset=N'` (rootless, no loop device), and
//! judged afterwards by `e2fsck -fn` before flatbake calls the output good.
//!
//! debugfs has sharp edges this module files off: it reports errors only on stderr with
//! exit status 0, and a `mkdir` of an existing directory corrupts the filesystem
//! (e2fsprogs 1.47.0). So every command is planned against the real filesystem state
//! first, and any stderr line other than the banner fails the edit.

use super::{check_path, parents, Edits, FsError, Op};
use crate::disk::gpt::Partition;
use crate::disk::image::{Disk, Window};
use crate::tools;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const PART: &str = "ROOT";

/// Open the ext4 filesystem of `part` inside `image` for reading.
pub fn open(image: &Path, part: &Partition) -> Result<ext4_view::Ext4, FsError> {
    let disk = Disk::open(image).map_err(FsError::io(image))?;
    load(Window::of(&std::sync::Arc::new(disk), part), image, part)
}

/// The ext4 filesystem in `window` (partition `part` of `image`, named in errors).
pub fn load(window: Window, image: &Path, part: &Partition) -> Result<ext4_view::Ext4, FsError> {
    ext4_view::Ext4::load(Box::new(window)).map_err(|e| FsError::Invalid {
        part: PART,
        what: format!(
            "{}: no readable ext4 filesystem in partition {}: {e}",
            image.display(),
            part.number
        ),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    Other,
    Symlink,
    Absent,
}

/// Plans debugfs commands against the filesystem's real state (read with ext4-view),
/// remembering what earlier commands in the same script create or remove.
struct Planner {
    fs: ext4_view::Ext4,
    known: HashMap<String, Kind>,
    script: String,
}

impl Planner {
    fn kind(&mut self, p: &str) -> Result<Kind, FsError> {
        if let Some(k) = self.known.get(p) {
            return Ok(*k);
        }
        let k = match self.fs.symlink_metadata(p) {
            Ok(m) if m.is_dir() => Kind::Dir,
            Ok(m) if m.is_symlink() => Kind::Symlink,
            Ok(_) => Kind::Other,
            Err(ext4_view::Ext4Error::NotFound) => Kind::Absent,
            Err(e) => {
                return Err(FsError::Invalid {
                    part: PART,
                    what: format!("{p}: {e}"),
                })
            }
        };
        self.known.insert(p.to_owned(), k);
        Ok(k)
    }

    fn ensure_dirs(&mut self, dirs: Vec<String>) -> Result<(), FsError> {
        for d in dirs {
            match self.kind(&d)? {
                Kind::Dir => {}
                Kind::Absent => {
                    self.script
                        .push_str(&format!("mkdir {d}\nsif {d} uid 0\nsif {d} gid 0\n"));
                    self.known.insert(d, Kind::Dir);
                }
                Kind::Symlink => {
                    return Err(FsError::Invalid {
                        part: PART,
                        what: format!(
                            "{d} is a symlink in the image; refusing to write through it"
                        ),
                    })
                }
                Kind::Other => {
                    return Err(FsError::Invalid {
                        part: PART,
                        what: format!("{d} exists and is not a directory"),
                    })
                }
            }
        }
        Ok(())
    }

    fn remove_existing(&mut self, path: &str) -> Result<(), FsError> {
        match self.kind(path)? {
            Kind::Absent => {}
            Kind::Dir => {
                return Err(FsError::Invalid {
                    part: PART,
                    what: format!("{path} exists and is a directory"),
                })
            }
            Kind::Other | Kind::Symlink => {
                self.script.push_str(&format!("rm {path}\n"));
                self.known.insert(path.to_owned(), Kind::Absent);
            }
        }
        Ok(())
    }
}

/// Apply `edits` to the ext4 in `part` of `image`, in place. `work` is a scratch
/// directory. The filesystem is checked with `e2fsck -fn` afterwards.
pub fn apply(image: &Path, part: &Partition, edits: &Edits, work: &Path) -> Result<(), FsError> {
    if edits.is_empty() {
        return Ok(());
    }
    let mut pl = Planner {
        fs: open(image, part)?,
        known: HashMap::new(),
        script: String::new(),
    };
    for (i, op) in edits.ops.iter().enumerate() {
        match op {
            Op::MkdirP(p) => {
                check_path(PART, p)?;
                let mut all = parents(p);
                all.push(p.clone());
                pl.ensure_dirs(all)?;
            }
            Op::Write { path, src, mode } => {
                check_path(PART, path)?;
                pl.ensure_dirs(parents(path))?;
                pl.remove_existing(path)?;
                // debugfs splits arguments on blanks: hand it a link with a plain name.
                let link = work.join(format!("src{i}"));
                let abs = std::fs::canonicalize(src).map_err(FsError::io(src))?;
                std::os::unix::fs::symlink(&abs, &link).map_err(FsError::io(&link))?;
                pl.script.push_str(&format!(
                    "write {} {path}\nsif {path} mode 0{:o}\nsif {path} uid 0\nsif {path} gid 0\n",
                    link.display(),
                    0o100000 | (mode & 0o7777)
                ));
                pl.known.insert(path.clone(), Kind::Other);
            }
            Op::Symlink { path, target } => {
                check_path(PART, path)?;
                if target.is_empty()
                    || target
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == '"')
                {
                    return Err(FsError::Invalid {
                        part: PART,
                        what: format!("symlink target {target:?} is not usable"),
                    });
                }
                pl.ensure_dirs(parents(path))?;
                pl.remove_existing(path)?;
                pl.script.push_str(&format!("symlink {path} {target}\n"));
                pl.known.insert(path.clone(), Kind::Symlink);
            }
            Op::Remove(path) => {
                check_path(PART, path)?;
                pl.remove_existing(path)?;
            }
            Op::Append { path, .. } => {
                return Err(FsError::Invalid {
                    part: PART,
                    what: format!("{path}: appending is only done on OEM"),
                });
            }
        }
    }
    let script = pl.script;
    run_debugfs(image, part, &script, work)?;
    fsck(image, part)
}

/// `(directory, "NAME?offset=N")`: debugfs and e2fsck address a filesystem inside a
/// file with a `?offset=` suffix, so the file name itself must not contain `?`.
pub(super) fn addressed(image: &Path, part: &Partition) -> Result<(PathBuf, String), FsError> {
    let abs = std::path::absolute(image).map_err(FsError::io(image))?;
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.contains('?') || name.is_empty() {
        return Err(FsError::Invalid {
            part: PART,
            what: format!("{}: file name unusable for debugfs", image.display()),
        });
    }
    let dir = abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    Ok((dir, format!("{name}?offset={}", part.offset())))
}

pub(crate) fn run_debugfs(
    image: &Path,
    part: &Partition,
    script: &str,
    work: &Path,
) -> Result<(), FsError> {
    let cmds = work.join("debugfs.cmds");
    std::fs::write(&cmds, script).map_err(FsError::io(&cmds))?;
    let (dir, target) = addressed(image, part)?;
    let out = tools::run(
        Command::new("debugfs")
            .current_dir(dir)
            .arg("-w")
            .arg("-f")
            .arg(&cmds)
            .arg(&target),
        "editing ROOT",
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("debugfs "))
        .collect();
    if !errors.is_empty() {
        return Err(FsError::Invalid {
            part: PART,
            what: format!("debugfs: {}", errors.join(" | ")),
        });
    }
    Ok(())
}

/// Check the ext4 in `part` with `e2fsck -fn`; any problem is an error.
pub fn fsck(image: &Path, part: &Partition) -> Result<(), FsError> {
    let (dir, target) = addressed(image, part)?;
    tools::run(
        Command::new("e2fsck")
            .current_dir(dir)
            .arg("-fn")
            .arg(&target),
        "checking ROOT (e2fsck -fn)",
    )?;
    Ok(())
}
