//! Read once: what a disk image is, for every command that looks at one — bake's
//! pre-flight (`bake::facts` adds what editing needs), `inspect`, a fetched image's
//! identity (`release::identity`), the target of `sysext check --target` and of a bake
//! (`sysext::target`), and the vendor path's architecture. Raw and qcow2 images are read
//! alike through [`Disk`], each partition through one [`Window`] type.
//!
//! Facts read on opening: the container format and virtual size, the GPT, Flatcar's
//! partition roles, the architecture the ESP's UEFI loader is built for and the
//! first-boot flag. Read on demand: a partition's filesystem kind, ext4 (ext4-view) and
//! btrfs (the bounded in-place reader, `btrfs restore` for what it cannot decode) of any
//! partition, and USR-A's os-release (the image's own version and board).

use crate::arch::Arch;
use crate::disk::gpt::{Gpt, GptError, Partition};
use crate::disk::image::{Disk, Window};
use crate::disk::layout::{FlatcarLayout, LayoutError};
use crate::fs::btrfs_tree::{self, TreeError};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The btrfs superblock magic, at 64 KiB + 64 into the partition.
const BTRFS_MAGIC: &[u8; 8] = b"_BHRfS_M";
const BTRFS_MAGIC_AT: u64 = 0x10040;

#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Gpt(#[from] GptError),
}

/// A filesystem told by its signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsKind {
    Ext4,
    Vfat,
    Btrfs,
}

impl FsKind {
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext4 => "ext4",
            FsKind::Vfat => "vfat",
            FsKind::Btrfs => "btrfs",
        }
    }
}

/// Why USR-A's os-release could not be read.
#[derive(Debug)]
pub enum OsReleaseError {
    /// USR-A holds neither btrfs nor ext2/4.
    NoFilesystem,
    /// The filesystem is there but the file is not readable; the reason.
    Read(String),
}

/// What a disk image is, read once.
pub struct Facts {
    pub path: PathBuf,
    /// The image, raw or qcow2, opened read-only.
    pub disk: Arc<Disk>,
    pub gpt: Gpt,
    /// Flatcar's partitions, or why this is not a Flatcar disk.
    pub layout: Result<FlatcarLayout, LayoutError>,
    /// The architecture the ESP's bootloader is built for, when it can be told.
    pub arch: Option<Arch>,
    /// Whether the ESP holds `/flatcar/first_boot` (`None`: the ESP cannot be read).
    pub first_boot: Option<bool>,
}

impl Facts {
    /// Open and read the image at `path`, raw or qcow2.
    pub fn read(path: &Path) -> Result<Facts, FactsError> {
        Facts::read_with(path, Disk::open)
    }

    /// Open and read the image at `path` as a raw image (a qcow2 file is refused, with
    /// a pointer to `qemu-img convert`): for bake, which copies and edits its input.
    pub fn read_raw(path: &Path) -> Result<Facts, FactsError> {
        Facts::read_with(path, Disk::open_raw)
    }

    fn read_with(
        path: &Path,
        open: fn(&Path) -> std::io::Result<Disk>,
    ) -> Result<Facts, FactsError> {
        let disk = open(path).map_err(|source| FactsError::Io {
            path: path.to_owned(),
            source,
        })?;
        let disk = Arc::new(disk);
        let gpt = Gpt::parse(&mut |off, buf| disk.read_at(off, buf), disk.len(), path)?;
        let layout = FlatcarLayout::find(gpt.clone(), path);
        let (arch, first_boot) = match &layout {
            Ok(l) => (
                crate::fs::fat::arch_of(Window::of(&disk, &l.esp)),
                crate::fs::fat::first_boot_in(Window::of(&disk, &l.esp)),
            ),
            Err(_) => (None, None),
        };
        Ok(Facts {
            path: path.to_owned(),
            disk,
            gpt,
            layout,
            arch,
            first_boot,
        })
    }

    /// Partition `p` as a file of its own.
    pub fn window(&self, p: &Partition) -> Window {
        Window::of(&self.disk, p)
    }

    /// The filesystem in `p`, by its signature.
    pub fn fs_kind(&self, p: &Partition) -> Option<FsKind> {
        let w = self.window(p);
        let mut b = [0u8; 4096];
        let n = p.size().min(4096) as usize;
        w.read_at(0, &mut b[..n]).ok()?;
        if n >= 1082 && u16::from_le_bytes([b[1080], b[1081]]) == 0xEF53 {
            return Some(FsKind::Ext4);
        }
        if n >= 512
            && b[510] == 0x55
            && b[511] == 0xAA
            && (&b[54..57] == b"FAT" || &b[82..85] == b"FAT")
        {
            return Some(FsKind::Vfat);
        }
        self.is_btrfs(p).then_some(FsKind::Btrfs)
    }

    /// Whether `p` holds a btrfs superblock.
    pub fn is_btrfs(&self, p: &Partition) -> bool {
        let mut m = [0u8; 8];
        self.window(p).read_at(BTRFS_MAGIC_AT, &mut m).is_ok() && &m == BTRFS_MAGIC
    }

    /// The ext4 filesystem in `p`, for reading.
    pub fn ext4(&self, p: &Partition) -> Result<ext4_view::Ext4, crate::fs::FsError> {
        crate::fs::ext4::load(self.window(p), &self.path, p)
    }

    /// Regular file `path` of the btrfs in `p`, which the host mounts at `mount`, read in
    /// place (see [`btrfs_tree::read_file`]).
    pub fn btrfs_file(
        &self,
        p: &Partition,
        mount: &str,
        path: &str,
        cap: u64,
    ) -> Result<Vec<u8>, TreeError> {
        btrfs_tree::read_file(&*self.disk, p.offset(), p.size(), mount, path, cap)
    }

    /// The whole tree of the btrfs in `p` (see [`btrfs_tree::list`]).
    pub fn btrfs_list(&self, p: &Partition) -> Result<btrfs_tree::Listing, TreeError> {
        btrfs_tree::list(&*self.disk, p.offset())
    }

    /// The btrfs in `p` unpacked with `btrfs restore` below `work` (files only as far as
    /// `regex` selects; symlinks too with `symlinks`, so never follow a path of the
    /// result then), from a sparse copy of the partition that is removed afterwards.
    /// For what the in-place reader cannot decode, and for whole trees.
    pub fn btrfs_restore(
        &self,
        p: &Partition,
        work: &Path,
        regex: Option<&str>,
        symlinks: bool,
        what: &str,
    ) -> Result<PathBuf, String> {
        let img = work.join(format!("part{}.img", p.number));
        self.disk
            .extract(p.offset(), p.size(), &img)
            .map_err(|e| e.to_string())?;
        let tree = work.join(format!("part{}", p.number));
        let restored = std::fs::create_dir_all(&tree)
            .map_err(|e| format!("{}: {e}", tree.display()))
            .and_then(|()| {
                let mut c = Command::new("btrfs");
                c.arg("restore");
                if symlinks {
                    c.arg("-S");
                }
                if let Some(r) = regex {
                    c.arg(format!("--path-regex={r}"));
                }
                crate::tools::run(c.arg(&img).arg(&tree), what).map_err(|e| e.to_string())
            });
        let _ = std::fs::remove_file(&img);
        restored.map(|_| tree)
    }

    /// USR-A's `/usr/lib/os-release` (at most `cap` bytes): from btrfs in place, with
    /// symlinks followed as the booted system follows them (data the in-place reader
    /// cannot decode is unpacked with `btrfs restore` below `work`, when given), or from
    /// ext2/4 on old releases.
    pub fn usr_os_release(&self, cap: u64, work: Option<&Path>) -> Result<Vec<u8>, OsReleaseError> {
        let Ok(layout) = &self.layout else {
            return Err(OsReleaseError::Read("not a Flatcar disk".into()));
        };
        let usr = &layout.usr_a;
        let read = |e: &dyn std::fmt::Display| OsReleaseError::Read(e.to_string());
        let kind = match self.is_btrfs(usr) {
            true => Some(FsKind::Btrfs),
            false => self.fs_kind(usr),
        };
        match kind {
            Some(FsKind::Btrfs) => match self.btrfs_file(usr, "/usr", "/usr/lib/os-release", cap) {
                Ok(bytes) => Ok(bytes),
                Err(TreeError::Unsupported(why)) => match work {
                    Some(work) => {
                        let tree = self
                            .btrfs_restore(
                                usr,
                                work,
                                Some("^/(|lib(|/os-release))$"),
                                false,
                                "reading the os-release from USR-A (btrfs restore)",
                            )
                            .map_err(OsReleaseError::Read)?;
                        crate::input::read_bytes(&tree.join("lib/os-release"), cap)
                            .map_err(|e| read(&e))
                    }
                    None => Err(read(&TreeError::Unsupported(why))),
                },
                Err(e) => Err(read(&e)),
            },
            Some(FsKind::Ext4) => {
                let fs = self.ext4(usr).map_err(|e| read(&e))?;
                let meta = fs.metadata("/lib/os-release").map_err(|e| read(&e))?;
                if meta.len() > cap {
                    return Err(read(&format!("{} bytes, more than {cap}", meta.len())));
                }
                fs.read("/lib/os-release").map_err(|e| read(&e))
            }
            _ => Err(OsReleaseError::NoFilesystem),
        }
    }
}
