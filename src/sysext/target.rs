//! The target OS of a sysext, read from where systemd-sysext will read it: a Flatcar
//! disk image's `/usr/lib/os-release` (USR-A, read through [`crate::facts`]: btrfs in
//! place with symlinks followed, `btrfs restore` for data the in-place reader cannot
//! decode such as LZO, ext2/4 on old releases), or an os-release file given directly.
//! The architecture is the one given, else the image's EFI loader's.

use super::compat::TargetOs;
use crate::arch::Arch;
use crate::facts::{Facts, OsReleaseError};
use std::path::Path;

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

/// The target described by a Flatcar disk image (`--target IMAGE`): USR-A's
/// `/usr/lib/os-release`, unpacked below `work` if need be (the caller removes it).
pub fn from_image(image: &Path, work: &Path, arch: Option<Arch>) -> Result<TargetOs, String> {
    let facts = Facts::read(image).map_err(|e| e.to_string())?;
    from_facts(&facts, work, arch)
}

/// The target described by an image already read (bake's input, `--target IMAGE`).
pub fn from_facts(facts: &Facts, work: &Path, arch: Option<Arch>) -> Result<TargetOs, String> {
    if let Err(e) = &facts.layout {
        return Err(e.to_string());
    }
    let arch = arch.or(facts.arch);
    let what = format!("{} (USR-A)/lib/os-release", facts.path.display());
    let bytes = facts
        .usr_os_release(crate::input::TEXT_CAP, Some(work))
        .map_err(|e| match e {
            OsReleaseError::NoFilesystem => format!(
                "{what}: USR-A holds neither btrfs nor ext2/4, so the target's os-release cannot be read to check extensions against"
            ),
            OsReleaseError::Read(e) => format!(
                "{what}: {e}; the target's os-release is needed to check extensions against it"
            ),
        })?;
    TargetOs::from_os_release(&bytes, &what, arch.map(Arch::systemd_name))
}
