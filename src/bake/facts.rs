//! Stage 1 of a bake, read once: the image's facts ([`crate::facts::Facts`]: GPT,
//! Flatcar layout, architecture, first-boot flag, USR-A's os-release on demand) and
//! what editing needs on top — whether ROOT's ext4 may be edited (superblock, journal,
//! features, free space), ROOT's existing extension links and the paths the plan may
//! collide with, `enabled-sysext.conf`, and OEM's btrfs superblock. The input is opened
//! once, read-only, as a raw image (bake copies and edits it), and never modified.

use super::builtin;
use super::BakeError;
use crate::disk::layout::FlatcarLayout;
use crate::facts::{Facts, FactsError};
use crate::fs::ext4_super::Super;
use crate::fs::{btrfs, Backend};
use std::fs::File;
use std::path::Path;

/// `enabled-sysext.conf` larger than this is not read (it lists a few names).
const ENABLED_CONF_CAP: u64 = 1 << 20;

/// ROOT, when its ext4 is safe to edit.
pub struct RootFacts {
    /// The superblock, checked for geometry, state and features.
    pub sb: Super,
    /// The filesystem, for lookups while planning.
    pub fs: ext4_view::Ext4,
    /// `(NAME, target)` of every symlink `/etc/extensions/NAME.raw`.
    pub links: Vec<(String, String)>,
    /// The text of `/etc/flatcar/enabled-sysext.conf`: `Ok(None)` when there is none,
    /// `Err` with the reason when it cannot be used.
    pub enabled_conf: Result<Option<String>, String>,
}

/// What the input image is, read once.
pub struct ImageFacts {
    /// What the image is (path, GPT, arch, first-boot flag, ...).
    pub image: Facts,
    /// The input, opened read-only; the copy is made from this handle.
    pub file: File,
    /// The input's permission bits, given to the output.
    pub mode: u32,
    pub layout: FlatcarLayout,
    /// ROOT's ext4, or the one-line reason it must not be edited.
    pub root: Result<RootFacts, String>,
}

impl ImageFacts {
    /// Read the image at `path` as the `backend` that will edit it sees it.
    pub fn read(path: &Path, backend: Backend) -> Result<ImageFacts, BakeError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |source| BakeError::Io {
            path: path.to_owned(),
            source,
        };
        let image = match Facts::read_raw(path) {
            Ok(f) => f,
            Err(FactsError::Io { source, .. }) => return Err(io(source)),
            Err(FactsError::Gpt(e)) => return Err(e.into()),
        };
        let raw = image
            .disk
            .raw_file()
            .ok_or_else(|| io(std::io::Error::other("not opened as a raw image")))?;
        let file = raw.try_clone().map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if let Some(p) = &image.gpt.backup_problem {
            super::log(&format!(
                "warning: {}: {p}; the output's backup GPT is rebuilt from the primary (repair the input with `sgdisk -e`)",
                path.display()
            ));
        }
        let layout = match &image.layout {
            Ok(l) => l.clone(),
            Err(e) => return Err(e.clone().into()),
        };
        let root = read_root(&image, &file, &layout, backend)?;
        Ok(ImageFacts {
            mode: meta.permissions().mode() & 0o777,
            image,
            file,
            layout,
            root,
        })
    }

    /// The input's path.
    pub fn path(&self) -> &Path {
        &self.image.path
    }

    /// OEM's btrfs superblock (read only when the plan edits OEM).
    pub fn oem_super(&self) -> Result<btrfs::Super, BakeError> {
        Ok(btrfs::read_super(
            &self.file,
            &self.image.path,
            &self.layout.oem,
        )?)
    }
}

fn read_root(
    image: &Facts,
    file: &File,
    layout: &FlatcarLayout,
    backend: Backend,
) -> Result<Result<RootFacts, String>, BakeError> {
    let path = &image.path;
    let sb = match crate::fs::ext4_super::check(file, path, &layout.root, backend.resolve()) {
        Ok(sb) => sb,
        Err(p) => return Ok(Err(p)),
    };
    let fs = image.ext4(&layout.root)?;
    let links = super::collide::extension_links(&fs);
    let enabled_conf = enabled_conf(&fs, path);
    Ok(Ok(RootFacts {
        sb,
        fs,
        links,
        enabled_conf,
    }))
}

fn enabled_conf(fs: &ext4_view::Ext4, image: &Path) -> Result<Option<String>, String> {
    let not_text = || {
        format!(
            "{}: ROOT's {} is not text",
            image.display(),
            builtin::ENABLED_CONF
        )
    };
    match fs.metadata(builtin::ENABLED_CONF) {
        Err(_) => Ok(None),
        Ok(m) if !m.file_type().is_regular_file() || m.len() > ENABLED_CONF_CAP => Err(not_text()),
        Ok(_) => match fs.read(builtin::ENABLED_CONF) {
            Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| not_text()),
            Err(_) => Ok(None),
        },
    }
}
