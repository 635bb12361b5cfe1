//! What a fetched image says it is: its Flatcar version from USR-A's `/lib/os-release`
//! (the file `/usr/lib/os-release` of the running system; btrfs, or ext2/4 on old
//! releases, read in place without unpacking) and its architecture from the ESP's UEFI
//! boot loader (and os-release's `FLATCAR_BOARD` when present). A validly signed image
//! of another release or architecture served at the requested URL is refused with this.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::arch::Arch;
use crate::disk::{gpt::Gpt, layout::FlatcarLayout, region::OwnedRegion};
use crate::sysext::release::{ReleaseFile, MAX_RELEASE_BYTES};

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
    let file = crate::input::open_regular(image).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let gpt = Gpt::read_from(&file, len, image).map_err(|e| e.to_string())?;
    let layout = FlatcarLayout::find(gpt, image).map_err(|e| e.what)?;
    let esp_arch = crate::fs::fat::detect_arch(&file, &layout.esp);
    let usr = &layout.usr_a;
    let text = os_release(&file, usr.offset(), usr.size())
        .map_err(|e| format!("USR-A /lib/os-release: {e}"))?;
    let rel = ReleaseFile::parse_bytes(&text).map_err(|e| format!("USR-A /lib/os-release: {e}"))?;
    Ok(Identity {
        version: rel.get("VERSION_ID").map(str::to_owned),
        esp_arch,
        board: rel.get("FLATCAR_BOARD").map(str::to_owned),
    })
}

fn os_release(file: &File, offset: u64, len: u64) -> Result<Vec<u8>, String> {
    let max = MAX_RELEASE_BYTES as u64;
    let mut magic = [0u8; 8];
    if len > 0x10048
        && file.read_exact_at(&mut magic, offset + 0x10040).is_ok()
        && &magic == b"_BHRfS_M"
    {
        return crate::fs::btrfs_tree::read_file(
            file,
            offset,
            len,
            "/usr",
            "/usr/lib/os-release",
            max,
        )
        .map_err(|e| e.to_string());
    }
    let mut m = [0u8; 2];
    if len > 1082 && file.read_exact_at(&mut m, offset + 1024 + 56).is_ok() && m == [0x53, 0xEF] {
        let region = OwnedRegion {
            file: file.try_clone().map_err(|e| e.to_string())?,
            offset,
            len,
        };
        let fs = ext4_view::Ext4::load(Box::new(region)).map_err(|e| e.to_string())?;
        let meta = fs.metadata("/lib/os-release").map_err(|e| e.to_string())?;
        if meta.len() > max {
            return Err(format!("{} bytes, more than {max}", meta.len()));
        }
        return fs.read("/lib/os-release").map_err(|e| e.to_string());
    }
    Err("USR-A holds neither btrfs nor ext2/4".into())
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
