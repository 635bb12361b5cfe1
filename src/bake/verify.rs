//! Stage 4 of a bake, verify: read the written image back and compare it with the plan
//! before it is renamed into place. The plan's edits are folded into the state each
//! touched path must end in (a file with the staged bytes and mode, a symlink with its
//! target, a directory, absent, or a file holding appended text); ROOT is read with
//! ext4-view, OEM through its btrfs metadata (modes) and `btrfs restore` (contents),
//! both through the same reader as the input (`facts::Facts`).
//! The summary reports what was read back, not what was intended.

use super::plan::Plan;
use super::BakeError;
use crate::disk::gpt::Partition;
use crate::facts::Facts;
use crate::fs::{Edits, Op};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The end state the plan promises for one path.
#[derive(Debug)]
enum Want {
    File {
        src: PathBuf,
        mode: u32,
    },
    Link(String),
    Dir,
    Absent,
    /// A file that holds each of these texts.
    Holds(Vec<String>),
}

/// What one path of the output is.
enum Found {
    File { mode: u32, sha256: String },
    Link(String),
    Dir,
    Absent,
    Other,
}

/// What was read back from the output and found as planned.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Verified {
    pub files: usize,
    pub links: usize,
    pub dirs: usize,
    pub removed: usize,
    pub appended: usize,
}

impl Verified {
    pub fn total(&self) -> usize {
        self.files + self.links + self.dirs + self.removed + self.appended
    }
}

/// Fold `edits` into the state each path must end in.
fn expected(edits: &Edits) -> BTreeMap<String, Want> {
    let mut m = BTreeMap::new();
    for op in &edits.ops {
        match op {
            Op::MkdirP(p) => {
                m.insert(p.clone(), Want::Dir);
            }
            Op::Write { path, src, mode } => {
                m.insert(
                    path.clone(),
                    Want::File {
                        src: src.clone(),
                        mode: *mode,
                    },
                );
            }
            Op::Symlink { path, target } => {
                m.insert(path.clone(), Want::Link(target.clone()));
            }
            Op::Remove(p) => {
                m.insert(p.clone(), Want::Absent);
            }
            Op::Append { path, text, .. } => match m.get_mut(path) {
                Some(Want::Holds(t)) => t.push(text.clone()),
                _ => {
                    m.insert(path.clone(), Want::Holds(vec![text.clone()]));
                }
            },
        }
    }
    m
}

/// Compare one path's planned end state with what `find` and `holds` report.
fn judge(
    part: &str,
    path: &str,
    want: &Want,
    found: Found,
    holds: &mut dyn FnMut(&str) -> Result<String, String>,
    tally: &mut Verified,
) -> Result<(), String> {
    let bad = |what: String| Err(format!("{part} {path}: {what}"));
    match (want, found) {
        (Want::File { src, mode }, Found::File { mode: m, sha256 }) => {
            let planned = File::open(src)
                .and_then(crate::util::sha256_reader)
                .map_err(|e| format!("{}: {e}", src.display()))?;
            if planned != sha256 {
                return bad(format!(
                    "holds other bytes than planned (sha256 {sha256}, planned {planned})"
                ));
            }
            if m & 0o7777 != *mode {
                return bad(format!("has mode {:04o}, planned {mode:04o}", m & 0o7777));
            }
            tally.files += 1;
        }
        (Want::Link(t), Found::Link(got)) if *t == got => tally.links += 1,
        (Want::Link(t), Found::Link(got)) => {
            return bad(format!("points to {got:?}, planned {t:?}"))
        }
        (Want::Dir, Found::Dir) => tally.dirs += 1,
        (Want::Absent, Found::Absent) => tally.removed += 1,
        (Want::Holds(texts), Found::File { .. }) => {
            let content = holds(path)?;
            if let Some(t) = texts.iter().find(|t| !content.contains(t.as_str())) {
                return bad(format!("lacks the planned text {:?}", t.trim_end()));
            }
            tally.appended += 1;
        }
        (w, f) => {
            let what = match f {
                Found::File { .. } => "a file",
                Found::Link(_) => "a symlink",
                Found::Dir => "a directory",
                Found::Absent => "missing",
                Found::Other => "another kind of file",
            };
            let planned = match w {
                Want::File { .. } | Want::Holds(_) => "a file",
                Want::Link(_) => "a symlink",
                Want::Dir => "a directory",
                Want::Absent => "removed",
            };
            return bad(format!("is {what}, planned {planned}"));
        }
    }
    Ok(())
}

/// ROOT's end state, read with ext4-view.
fn root_found(fs: &ext4_view::Ext4, path: &str) -> Result<Found, String> {
    let shown = |e: ext4_view::Ext4Error| format!("ROOT {path}: {e}");
    let m = match fs.symlink_metadata(path) {
        Ok(m) => m,
        Err(ext4_view::Ext4Error::NotFound) => return Ok(Found::Absent),
        Err(e) => return Err(shown(e)),
    };
    let t = m.file_type();
    Ok(if t.is_symlink() {
        Found::Link(fs.read_link(path).map_err(shown)?.display().to_string())
    } else if t.is_dir() {
        Found::Dir
    } else if t.is_regular_file() {
        let f = fs.open(path).map_err(shown)?;
        Found::File {
            mode: u32::from(m.mode()),
            sha256: crate::util::sha256_reader(f).map_err(|e| format!("ROOT {path}: {e}"))?,
        }
    } else {
        Found::Other
    })
}

/// OEM's end state: modes and kinds from the btrfs metadata, contents from `btrfs
/// restore` of a sparse copy of the partition into `work`.
struct Oem {
    listing: crate::fs::btrfs_tree::Listing,
    tree: PathBuf,
}

impl Oem {
    fn read(image: &Facts, part: &Partition, work: &Path) -> Result<Oem, String> {
        let listing = image
            .btrfs_list(part)
            .map_err(|e| format!("reading OEM back from {}: {e}", image.path.display()))?;
        let tree =
            image.btrfs_restore(part, work, None, true, "reading OEM back (btrfs restore)")?;
        Ok(Oem { listing, tree })
    }

    fn found(&self, path: &str) -> Result<Found, String> {
        let rel = path.trim_start_matches('/');
        let Some(inode) = self
            .listing
            .paths
            .get(rel)
            .and_then(|i| self.listing.inodes.get(i))
        else {
            return Ok(Found::Absent);
        };
        let local = self.tree.join(rel);
        let shown = |e: std::io::Error| format!("OEM {path}: {e}");
        Ok(match inode.mode & 0o170000 {
            0o120000 => Found::Link(
                std::fs::read_link(&local)
                    .map_err(shown)?
                    .display()
                    .to_string(),
            ),
            0o040000 => Found::Dir,
            0o100000 => Found::File {
                mode: inode.mode,
                sha256: File::open(&local)
                    .and_then(crate::util::sha256_reader)
                    .map_err(shown)?,
            },
            _ => Found::Other,
        })
    }

    fn text(&self, path: &str) -> Result<String, String> {
        let local = self.tree.join(path.trim_start_matches('/'));
        crate::input::read_bytes(&local, crate::input::TEXT_CAP)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|e| format!("OEM {path}: {e}"))
    }
}

/// Read `image` back and check that every edit of `plan` is there.
pub fn verify(
    image: &Path,
    layout: &crate::disk::layout::FlatcarLayout,
    plan: &Plan,
    work: &Path,
) -> Result<Verified, BakeError> {
    let mut tally = Verified::default();
    let mut problems = Vec::new();
    let facts = Facts::read_raw(image).map_err(|e| BakeError::Verify(vec![e.to_string()]))?;
    let fs = facts.ext4(&layout.root)?;
    for (path, want) in expected(&plan.root) {
        let found = root_found(&fs, &path);
        let mut holds = |p: &str| fs.read_to_string(p).map_err(|e| format!("ROOT {p}: {e}"));
        if let Err(p) = found.and_then(|f| judge("ROOT", &path, &want, f, &mut holds, &mut tally)) {
            problems.push(p);
        }
    }
    if !plan.oem.is_empty() {
        match Oem::read(&facts, &layout.oem, work) {
            Ok(oem) => {
                for (path, want) in expected(&plan.oem) {
                    let mut holds = |p: &str| oem.text(p);
                    if let Err(p) = oem
                        .found(&path)
                        .and_then(|f| judge("OEM", &path, &want, f, &mut holds, &mut tally))
                    {
                        problems.push(p);
                    }
                }
            }
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() {
        Ok(tally)
    } else {
        Err(BakeError::Verify(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_edits_decide_the_end_state() {
        let e = Edits {
            ops: vec![
                Op::Symlink {
                    path: "/etc/extensions/a.raw".into(),
                    target: "/old".into(),
                },
                Op::Remove("/opt/x".into()),
                Op::Symlink {
                    path: "/etc/extensions/a.raw".into(),
                    target: "/new".into(),
                },
                Op::Append {
                    path: "/grub.cfg".into(),
                    header: String::new(),
                    text: "one\n".into(),
                },
                Op::Append {
                    path: "/grub.cfg".into(),
                    header: String::new(),
                    text: "two\n".into(),
                },
            ],
        };
        let m = expected(&e);
        assert!(matches!(&m["/etc/extensions/a.raw"], Want::Link(t) if t == "/new"));
        assert!(matches!(&m["/opt/x"], Want::Absent));
        assert!(matches!(&m["/grub.cfg"], Want::Holds(t) if t.len() == 2));
    }

    #[test]
    fn mismatches_are_named() {
        let mut tally = Verified::default();
        let mut none = |_: &str| Ok(String::new());
        let e = judge(
            "ROOT",
            "/etc/extensions/a.raw",
            &Want::Link("/opt/a.raw".into()),
            Found::Link("/tmp/x".into()),
            &mut none,
            &mut tally,
        )
        .unwrap_err();
        assert!(
            e.contains("points to \"/tmp/x\", planned \"/opt/a.raw\""),
            "{e}"
        );
        let e = judge(
            "OEM",
            "/config.ign",
            &Want::Absent,
            Found::Dir,
            &mut none,
            &mut tally,
        )
        .unwrap_err();
        assert_eq!(e, "OEM /config.ign: is a directory, planned removed");
        let e = judge(
            "OEM",
            "/grub.cfg",
            &Want::Holds(vec!["set x\n".into()]),
            Found::File {
                mode: 0o644,
                sha256: String::new(),
            },
            &mut none,
            &mut tally,
        )
        .unwrap_err();
        assert!(e.contains("lacks the planned text \"set x\""), "{e}");
        assert_eq!(tally.total(), 0);
    }
}
