//! The disk image as a whole: its partition table, Flatcar's partition roles, and
//! hole-aware copying between images.

pub mod gpt;
pub mod grow;
pub mod layout;
pub mod qcow2map;
pub mod region;
pub mod source;
pub mod sparse;

/// The architecture of the Flatcar image at `path`, from its ESP's UEFI boot loader;
/// `None` when the ESP does not tell.
pub fn detect_arch(
    path: &std::path::Path,
) -> Result<Option<crate::arch::Arch>, Box<dyn std::error::Error + Send + Sync>> {
    let file = crate::input::open_regular(path)?;
    let len = file.metadata()?.len();
    let layout = layout::FlatcarLayout::find(gpt::Gpt::read_from(&file, len, path)?, path)?;
    Ok(crate::fs::fat::detect_arch(&file, &layout.esp))
}
