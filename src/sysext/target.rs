//! The target OS of a sysext, read from where systemd-sysext will read it: a Flatcar
//! disk image's `/usr/lib/os-release`, which lives in USR-A's btrfs (read in place by
//! the bounded btrfs reader, symlinks followed; only data it cannot decode, such as
//! LZO, falls back to copying USR-A out sparse for `btrfs restore`), or an os-release
//! file given directly. The architecture is the one given, else the image's EFI loader's.

use super::compat::TargetOs;
use crate::arch::Arch;
use crate::disk::gpt::Gpt;
use crate::disk::layout::FlatcarLayout;
use crate::disk::source;
use std::path::Path;
use std::process::Command;

/// The btrfs superblock magic, at 64 KiB + 64 into the partition.
const BTRFS_MAGIC: &[u8; 8] = b"_BHRfS_M";

/// The target described by an os-release file (`--target-os-release FILE`).
pub fn from_os_release_file(path: &Path, arch: Option<Arch>) -> Result<TargetOs, String> {
    let bytes = crate::input::read_bytes(path, crate::input::TEXT_CAP)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    TargetOs::from_os_release(
        &bytes,
        &path.display().to_string(),
        arch.map(Arch::systemd_name),
    )
}

/// The target described by a Flatcar disk image (`--target IMAGE`, and bake's input):
/// USR-A's `/usr/lib/os-release`, unpacked below `work` (which the caller removes).
pub fn from_image(image: &Path, work: &Path, arch: Option<Arch>) -> Result<TargetOs, String> {
    let shown = |e: &dyn std::fmt::Display| format!("{}: {e}", image.display());
    let file = crate::input::open_regular(image).map_err(|e| shown(&e))?;
    let len = file.metadata().map_err(|e| shown(&e))?.len();
    let gpt = Gpt::read_from(&file, len, image).map_err(|e| e.to_string())?;
    let layout = FlatcarLayout::find(gpt, image).map_err(|e| e.to_string())?;
    let arch = arch.or_else(|| crate::fs::fat::detect_arch(&file, &layout.esp));
    let usr = &layout.usr_a;
    let what = format!("{} (USR-A)/lib/os-release", image.display());
    let mut src = source::open(image).map_err(|e| shown(&e))?;
    let mut magic = [0u8; 8];
    if usr.size() < 0x10048
        || src.read_at(usr.offset() + 0x10040, &mut magic).is_err()
        || &magic != BTRFS_MAGIC
    {
        return Err(format!(
            "{what}: USR-A is not a btrfs filesystem, so the target's os-release cannot be read to check extensions against"
        ));
    }
    let direct = crate::fs::btrfs_tree::read_file(
        &file,
        usr.offset(),
        usr.size(),
        "/usr",
        "/usr/lib/os-release",
        crate::input::TEXT_CAP,
    );
    let bytes = match direct {
        Ok(bytes) => bytes,
        Err(crate::fs::btrfs_tree::TreeError::Unsupported(_)) => {
            restore(src.as_mut(), usr.offset(), usr.size(), work, &what)?
        }
        Err(e) => {
            return Err(format!(
                "{what}: {e}; the target's os-release is needed to check extensions against it"
            ))
        }
    };
    TargetOs::from_os_release(&bytes, &what, arch.map(Arch::systemd_name))
}

/// The fallback: USR-A copied out sparse below `work` and `/lib/os-release` unpacked
/// with `btrfs restore` (which follows no symlinks).
fn restore(
    src: &mut dyn source::DiskSource,
    offset: u64,
    size: u64,
    work: &Path,
    what: &str,
) -> Result<Vec<u8>, String> {
    let img = work.join("usr-a.img");
    source::extract(src, offset, size, &img).map_err(|e| format!("{what}: {e}"))?;
    let tree = work.join("usr-a");
    std::fs::create_dir_all(&tree).map_err(|e| format!("{}: {e}", tree.display()))?;
    let restored = crate::tools::run(
        Command::new("btrfs")
            .arg("restore")
            .arg("--path-regex=^/(|lib(|/os-release))$")
            .arg(&img)
            .arg(&tree),
        "reading the target's os-release from USR-A (btrfs restore)",
    );
    let _ = std::fs::remove_file(&img);
    restored.map_err(|e| format!("{what}: {e}"))?;
    let file = tree.join("lib/os-release");
    crate::input::read_bytes(&file, crate::input::TEXT_CAP).map_err(|e| {
        format!("{what}: {e}; the target's os-release is needed to check extensions against it")
    })
}
