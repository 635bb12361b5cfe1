//! What a fetched image says it is: its Flatcar version from USR-A's `/lib/os-release`
//! (the file `/usr/lib/os-release` of the running system; btrfs, or ext2/4 on old
//! releases, read in place without unpacking) and its architecture from the ESP's UEFI
//! boot loader (and os-release's `FLATCAR_BOARD` when present). A validly signed image
//! of another release or architecture served at the requested URL is refused with this.

use crate::arch::Arch;
use crate::facts::{Facts, FactsError, OsReleaseError};
use crate::sysext::release::{ReleaseFile, MAX_RELEASE_BYTES};
use std::path::Path;

/// What the image itself says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// `VERSION_ID` of USR-A's os-release.
    pub version: Option<String>,
    /// From the ESP's `/EFI/boot/boot<arch>.efi`.
    pub esp_arch: Option<Arch>,
    /// `FLATCAR_BOARD` of USR-A's os-release (`amd64-usr`, `arm64-usr`), when set.
    pub board: Option<String>,
}

/// Reads the identity of the Flatcar image at `image`.
pub fn read(image: &Path) -> Result<Identity, String> {
    let facts = Facts::read(image).map_err(|e| match e {
        FactsError::Io { source, .. } => source.to_string(),
        e => e.to_string(),
    })?;
    if let Err(e) = &facts.layout {
        return Err(e.what.clone());
    }
    let text = facts
        .usr_os_release(MAX_RELEASE_BYTES as u64, None)
        .map_err(|e| match e {
            OsReleaseError::NoFilesystem => "USR-A holds neither btrfs nor ext2/4".to_owned(),
            OsReleaseError::Read(e) => e,
        })
        .map_err(|e| format!("USR-A /lib/os-release: {e}"))?;
    let rel = ReleaseFile::parse_bytes(&text).map_err(|e| format!("USR-A /lib/os-release: {e}"))?;
    Ok(Identity {
        version: rel.get("VERSION_ID").map(str::to_owned),
        esp_arch: facts.arch,
        board: rel.get("FLATCAR_BOARD").map(str::to_owned),
    })
}

/// Checks that the image at `image` is Flatcar `version` for `arch`; the error is one
/// line starting with `shown` (the file's URL or name).
pub fn check(image: &Path, shown: &str, version: &str, arch: Arch) -> Result<Identity, String> {
    let id = read(image)
        .map_err(|e| format!("{shown}: cannot tell which Flatcar release this image is ({e})"))?;
    let Some(found) = id.version.as_deref() else {
        return Err(format!(
            "{shown}: the image's os-release names no VERSION_ID, so it cannot be matched to Flatcar {version}"
        ));
    };
    let board_arch = id.board.as_deref().and_then(|b| b.parse::<Arch>().ok());
    if id.board.is_some() && board_arch.is_none() {
        return Err(format!(
            "{shown}: the image's os-release names an unknown board FLATCAR_BOARD={}",
            id.board.as_deref().unwrap_or_default()
        ));
    }
    let found_arch = match (id.esp_arch, board_arch) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!(
                "{shown}: the image contradicts itself: its boot loader is {a}, its os-release says {b}"
            ))
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => {
            return Err(format!(
                "{shown}: cannot tell the image's architecture (no /EFI/boot/boot*.efi on its ESP, no FLATCAR_BOARD in its os-release)"
            ))
        }
    };
    if found != version || found_arch != arch {
        return Err(format!(
            "{shown}: is a Flatcar {found} {found_arch} image, not the {version} {arch} asked for (--release/--arch, version.txt)"
        ));
    }
    Ok(id)
}
