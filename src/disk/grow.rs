//! Layout growth: make a disk image larger, move the backup GPT to the new end, grow
//! ROOT to fill it and grow ROOT's ext4 to fill the partition — what Flatcar's
//! `disk_util update` does for the `vm`, `azure` and `vagrant` layouts, rootless.
//!
//! Every GUID (disk, partitions) and the MBR boot code are kept. The ext4 is grown with
//! `resize2fs` on an extracted sparse copy of ROOT (never `resize2fs 'img?offset='`,
//! which truncates the whole image), checked with `e2fsck -fn` before and after.
//! Growing the filesystem matters: Flatcar's first-boot `extend-filesystems` only grows
//! a filesystem when it grows the partition, so a grown partition with a small ext4
//! stays small forever.

use super::gpt::{Gpt, SECTOR};
use super::layout::FlatcarLayout;
use super::sparse;
use crate::tools;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

/// Flatcar sizes disks to a multiple of this many sectors (2 MiB and the 16x63 CHS
/// cylinder, for VHD).
pub const DISK_ALIGNMENT: u64 = 258048;

#[derive(Debug, thiserror::Error)]
pub enum GrowError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tool(#[from] tools::ToolError),
    #[error("{0}")]
    Gpt(#[from] super::gpt::GptError),
    #[error("{path}: {what}")]
    Invalid { path: String, what: String },
}

/// The disk size Flatcar gives a disk whose last partition ends before `end_lba`.
pub fn disk_sectors_for(end_lba: u64) -> u64 {
    (end_lba + 33).div_ceil(DISK_ALIGNMENT) * DISK_ALIGNMENT
}

/// Grow ROOT of the image at `path` (open as `file`) to `root_sectors`, the disk to
/// fit, and ROOT's ext4 to fill it. A ROOT already that large is left alone.
/// Returns the new disk size in bytes.
pub fn grow_root(
    path: &Path,
    file: &File,
    layout: &FlatcarLayout,
    root_sectors: u64,
    work: &Path,
) -> Result<u64, GrowError> {
    let io = |source| GrowError::Io {
        path: path.display().to_string(),
        source,
    };
    let old_len = file.metadata().map_err(io)?.len();
    let root = &layout.root;
    let old_root_sectors = root.last_lba - root.first_lba + 1;
    if root_sectors <= old_root_sectors {
        return Ok(old_len);
    }
    if layout
        .gpt
        .partitions
        .iter()
        .any(|p| p.number != root.number && p.first_lba > root.first_lba)
    {
        return Err(GrowError::Invalid {
            path: path.display().to_string(),
            what: "ROOT is not the last partition; cannot grow it".into(),
        });
    }
    let new_last = root.first_lba + root_sectors - 1;
    let disk = disk_sectors_for(new_last + 1).max(old_len / SECTOR);

    // 1. Grow the ext4 on an extracted copy.
    let tmp = work.join("root-grow.img");
    let t = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|source| GrowError::Io {
            path: tmp.display().to_string(),
            source,
        })?;
    let tio = |source| GrowError::Io {
        path: tmp.display().to_string(),
        source,
    };
    t.set_len(root.size()).map_err(tio)?;
    sparse::copy_range(file, root.offset(), &t, 0, root.size()).map_err(tio)?;
    t.set_len(root_sectors * SECTOR).map_err(tio)?;
    tools::run(
        Command::new("e2fsck").arg("-fn").arg(&tmp),
        "checking ROOT before growing it (e2fsck -fn)",
    )?;
    tools::run(
        Command::new("resize2fs").arg("-f").arg(&tmp),
        "growing ROOT's ext4 (resize2fs)",
    )?;
    tools::run(
        Command::new("e2fsck").arg("-fn").arg(&tmp),
        "checking the grown ROOT (e2fsck -fn)",
    )?;

    // 2. Grow the disk, write the grown filesystem over the new ROOT range.
    file.set_len(disk * SECTOR).map_err(io)?;
    sparse::zero_range(file, root.offset(), root_sectors * SECTOR).map_err(io)?;
    sparse::copy_range(&t, 0, file, root.offset(), root_sectors * SECTOR).map_err(io)?;
    drop(t);
    std::fs::remove_file(&tmp).map_err(tio)?;

    // 3. Rewrite both GPTs and the protective MBR entry for the new size.
    let mut gpt = layout.gpt.clone();
    for p in &mut gpt.partitions {
        if p.number == root.number {
            p.last_lba = new_last;
        }
    }
    write_gpt(path, file, &gpt, disk)?;
    Ok(disk * SECTOR)
}

/// Write the primary and backup GPT for a disk of `disk` sectors, keeping every field
/// of `gpt` (GUIDs, names, attributes), and resize a protective MBR's 0xEE entry.
pub fn write_gpt(path: &Path, file: &File, gpt: &Gpt, disk: u64) -> Result<(), GrowError> {
    let io = |source| GrowError::Io {
        path: path.display().to_string(),
        source,
    };
    // entries: start from the on-disk array so unknown bytes of used entries survive
    let entries_len = gpt.num_entries as usize * gpt.entry_size as usize;
    let mut entries = vec![0u8; entries_len];
    file.read_exact_at(&mut entries, gpt.entries_lba * SECTOR)
        .map_err(io)?;
    for p in &gpt.partitions {
        let at = (p.number as usize - 1) * gpt.entry_size as usize;
        entries[at + 32..at + 40].copy_from_slice(&p.first_lba.to_le_bytes());
        entries[at + 40..at + 48].copy_from_slice(&p.last_lba.to_le_bytes());
    }
    let entries_crc = crc32fast::hash(&entries);
    let entry_sectors = (entries_len as u64).div_ceil(SECTOR);
    let backup_lba = disk - 1;
    let backup_entries = backup_lba - entry_sectors;
    let last_usable = backup_entries - 1;
    if gpt.partitions.iter().any(|p| p.last_lba > last_usable) {
        return Err(GrowError::Invalid {
            path: path.display().to_string(),
            what: "partitions do not fit the new disk".into(),
        });
    }
    let mut hdr = [0u8; SECTOR as usize];
    file.read_exact_at(&mut hdr, SECTOR).map_err(io)?;
    let header_size = u32::from_le_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]) as usize;
    let make = |my: u64, alt: u64, entries_at: u64| -> [u8; SECTOR as usize] {
        let mut h = hdr;
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alt.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[72..80].copy_from_slice(&entries_at.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        h[16..20].fill(0);
        let crc = crc32fast::hash(&h[..header_size]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    file.write_all_at(&entries, gpt.entries_lba * SECTOR)
        .map_err(io)?;
    file.write_all_at(&make(1, backup_lba, gpt.entries_lba), SECTOR)
        .map_err(io)?;
    file.write_all_at(&entries, backup_entries * SECTOR)
        .map_err(io)?;
    file.write_all_at(&make(backup_lba, 1, backup_entries), backup_lba * SECTOR)
        .map_err(io)?;
    // protective MBR: a lone 0xEE entry covers the whole disk (capped at 2^32-1)
    let mut mbr = [0u8; SECTOR as usize];
    file.read_exact_at(&mut mbr, 0).map_err(io)?;
    if !gpt.hybrid_mbr {
        for i in 0..4 {
            let e = 446 + 16 * i;
            if mbr[e + 4] == 0xEE {
                let size = (disk - 1).min(u32::MAX as u64) as u32;
                mbr[e + 12..e + 16].copy_from_slice(&size.to_le_bytes());
            }
        }
        file.write_all_at(&mbr[446..512], 446).map_err(io)?;
    }
    Ok(())
}
