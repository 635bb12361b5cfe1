//! The ESP's FAT filesystem, read in-process with `fatfs` (the kernel here does not
//! even mount vfat): the image's architecture from its UEFI boot loader's name.

use crate::arch::Arch;
use crate::disk::gpt::Partition;
use crate::disk::region::Region;
use std::fs::File;

/// The architecture whose default UEFI loader (`/EFI/boot/boot<arch>.efi`) the ESP holds.
pub fn detect_arch(file: &File, esp: &Partition) -> Option<Arch> {
    let fs = fatfs::FileSystem::new(
        Region::new(file, esp.offset(), esp.size()),
        fatfs::FsOptions::new(),
    )
    .ok()?;
    let dir = fs.root_dir().open_dir("EFI/boot").ok()?;
    for entry in dir.iter().flatten() {
        match entry.file_name().to_ascii_lowercase().as_str() {
            "bootx64.efi" => return Some(Arch::X86_64),
            "bootaa64.efi" => return Some(Arch::Arm64),
            _ => {}
        }
    }
    None
}

/// Whether the ESP holds `/flatcar/first_boot`, the flag that makes Ignition run on the
/// next boot. `None` when the ESP cannot be read.
pub fn has_first_boot(file: &File, esp: &Partition) -> Option<bool> {
    let fs = fatfs::FileSystem::new(
        Region::new(file, esp.offset(), esp.size()),
        fatfs::FsOptions::new(),
    )
    .ok()?;
    let found = match fs.root_dir().open_dir("flatcar") {
        Ok(dir) => dir
            .iter()
            .flatten()
            .any(|e| e.file_name().eq_ignore_ascii_case("first_boot")),
        Err(_) => false,
    };
    Some(found)
}
