//! Stage 1 of a bake, read once: everything the plan needs to know about the input
//! image, gathered before anything is planned or written — the GPT and Flatcar layout,
//! the architecture (from the ESP), whether ROOT's ext4 may be edited (superblock,
//! journal, features, free space), ROOT's existing extension links and the paths the
//! plan may collide with, `enabled-sysext.conf`, the first-boot flag and OEM's btrfs
//! superblock. The input is opened once, read-only, and never modified.

use super::builtin;
use super::BakeError;
use crate::arch::Arch;
use crate::disk::gpt::Gpt;
use crate::disk::layout::FlatcarLayout;
use crate::fs::ext4_super::Super;
use crate::fs::{btrfs, ext4, Backend};
use std::fs::File;
use std::path::{Path, PathBuf};

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
    pub path: PathBuf,
    /// The input, opened read-only; the copy is made from this handle.
    pub file: File,
    /// The input's permission bits, given to the output.
    pub mode: u32,
    pub layout: FlatcarLayout,
    /// The architecture the ESP's bootloader is built for, when it can be told.
    pub arch: Option<Arch>,
    /// ROOT's ext4, or the one-line reason it must not be edited.
    pub root: Result<RootFacts, String>,
    /// Whether the ESP holds `/flatcar/first_boot` (`None`: the ESP cannot be read).
    pub first_boot: Option<bool>,
}

impl ImageFacts {
    /// Read the image at `path` as the `backend` that will edit it sees it.
    pub fn read(path: &Path, backend: Backend) -> Result<ImageFacts, BakeError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |source| BakeError::Io {
            path: path.to_owned(),
            source,
        };
        let file = crate::input::open_regular(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(BakeError::Preflight(vec![format!(
                "{}: not a regular file",
                path.display()
            )]));
        }
        let gpt = Gpt::read_from(&file, meta.len(), path)?;
        if let Some(p) = &gpt.backup_problem {
            super::log(&format!(
                "warning: {}: {p}; the output's backup GPT is rebuilt from the primary (repair the input with `sgdisk -e`)",
                path.display()
            ));
        }
        let layout = FlatcarLayout::find(gpt, path)?;
        let arch = crate::fs::fat::detect_arch(&file, &layout.esp);
        let first_boot = crate::fs::fat::has_first_boot(&file, &layout.esp);
        let root = read_root(&file, path, &layout, backend)?;
        Ok(ImageFacts {
            path: path.to_owned(),
            mode: meta.permissions().mode() & 0o777,
            file,
            layout,
            arch,
            root,
            first_boot,
        })
    }

    /// OEM's btrfs superblock (read only when the plan edits OEM).
    pub fn oem_super(&self) -> Result<btrfs::Super, BakeError> {
        Ok(btrfs::read_super(&self.file, &self.path, &self.layout.oem)?)
    }
}

fn read_root(
    file: &File,
    path: &Path,
    layout: &FlatcarLayout,
    backend: Backend,
) -> Result<Result<RootFacts, String>, BakeError> {
    let sb = match crate::fs::ext4_super::check(file, path, &layout.root, backend.resolve()) {
        Ok(sb) => sb,
        Err(p) => return Ok(Err(p)),
    };
    let fs = ext4::open(path, &layout.root)?;
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
