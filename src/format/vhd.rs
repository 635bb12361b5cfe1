//! VHD (Microsoft Virtual Hard Disk, "vpc" in qemu), fixed and dynamic, with
//! qemu's `force_size` semantics: the footer's current size is exactly the virtual
//! size, which must be a multiple of 1 MiB (Azure's rule).
//!
//! Facts from Microsoft's "Virtual Hard Disk Image Format Specification" (v1.0) and
//! qemu's `block/vpc.c`:
//! - Footer, 512 bytes, big-endian: cookie `conectix`, features 2, version 0x00010000,
//!   data offset (`u64::MAX` for fixed, 512 = the dynamic header for dynamic), timestamp
//!   (seconds since 2000-01-01 UTC), creator app/version/host OS, original and current
//!   size, CHS geometry, disk type (2 fixed, 3 dynamic), checksum (one's complement of
//!   the byte sum with the checksum field zero), a UUID, saved state.
//! - CHS geometry per the spec's appendix algorithm (capped at 65535/16/255).
//! - Which size qemu believes: the CHS product, unless the creator app is one of
//!   `win `, `qem2`, `d2v `, `CTXS`, `tap\0` (or the geometry is the maximum); then the
//!   footer's current size. So flatbake writes creator `qem2` (what `qemu-img convert
//!   -o force_size` writes, version 0x00050003, host `Wi2k`): qemu, Hyper-V and Azure
//!   all then read the exact size. (qemu itself writes the maximum geometry with
//!   force_size; flatbake writes the spec's geometry, which Microsoft's tools expect.)
//! - Fixed: the raw data followed by the footer.
//! - Dynamic: footer copy at 0, dynamic header (1024 bytes, cookie `cxsparse`, table
//!   offset, max table entries, block size 2 MiB, checksum as the footer's) at 512, the
//!   BAT (u32 sector offsets, `0xFFFFFFFF` = unallocated) at 1536 padded to 512 bytes,
//!   then blocks: a 512-byte sector bitmap (all set) followed by 2 MiB of data, then
//!   the footer. Unallocated blocks read as zeros.

use super::source::{Clusters, Source};
use super::{FormatError, Output};
use std::path::Path;

pub const BLOCK: u64 = 2 << 20;
const BITMAP: u64 = 512;
const CLUSTER: u64 = 64 << 10;
/// Seconds from the Unix epoch to 2000-01-01 00:00:00 UTC.
const VHD_EPOCH: u64 = 946_684_800;
pub const CREATOR_APP: &[u8; 4] = b"qem2";
const CREATOR_VERSION: u32 = 0x0005_0003;
const CREATOR_OS: &[u8; 4] = b"Wi2k";

/// The virtual size must be a whole number of MiB.
pub(crate) fn check_size(input: &Path, virtual_size: u64) -> Result<(), FormatError> {
    if virtual_size % (1 << 20) != 0 || virtual_size == 0 {
        return Err(FormatError::Size {
            path: input.to_path_buf(),
            problem: format!("VHD needs a virtual size that is a non-zero multiple of 1 MiB, not {virtual_size} bytes"),
        });
    }
    Ok(())
}

/// CHS geometry `(cylinders, heads, sectors per track)` for a size in bytes, per the
/// VHD specification's appendix.
pub fn chs_geometry(size: u64) -> (u16, u8, u8) {
    let mut total = size / 512;
    total = total.min(65535 * 16 * 255);
    let (spt, heads, cth);
    if total >= 65535 * 16 * 63 {
        spt = 255;
        heads = 16;
        cth = total / spt;
    } else {
        let mut s = 17;
        let mut c = total / s;
        let mut h = c.div_ceil(1024).max(4);
        if c >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            c = total / s;
        }
        if c >= h * 1024 {
            s = 63;
            h = 16;
            c = total / s;
        }
        spt = s;
        heads = h;
        cth = c;
    }
    ((cth / heads) as u16, heads as u8, spt as u8)
}

fn checksum(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(0u32, |a, &b| a.wrapping_add(b as u32))
}

/// The 512-byte footer.
pub fn footer(size: u64, dynamic: bool, timestamp: u32, uuid: [u8; 16]) -> [u8; 512] {
    let mut f = [0u8; 512];
    f[0..8].copy_from_slice(b"conectix");
    f[8..12].copy_from_slice(&2u32.to_be_bytes());
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    let data_offset: u64 = if dynamic { 512 } else { u64::MAX };
    f[16..24].copy_from_slice(&data_offset.to_be_bytes());
    f[24..28].copy_from_slice(&timestamp.to_be_bytes());
    f[28..32].copy_from_slice(CREATOR_APP);
    f[32..36].copy_from_slice(&CREATOR_VERSION.to_be_bytes());
    f[36..40].copy_from_slice(CREATOR_OS);
    f[40..48].copy_from_slice(&size.to_be_bytes());
    f[48..56].copy_from_slice(&size.to_be_bytes());
    let (c, h, s) = chs_geometry(size);
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f[58] = h;
    f[59] = s;
    let disk_type: u32 = if dynamic { 3 } else { 2 };
    f[60..64].copy_from_slice(&disk_type.to_be_bytes());
    f[68..84].copy_from_slice(&uuid);
    let sum = checksum(&f);
    f[64..68].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The 1024-byte dynamic disk header.
pub fn dynamic_header(table_offset: u64, max_table_entries: u32) -> [u8; 1024] {
    let mut h = [0u8; 1024];
    h[0..8].copy_from_slice(b"cxsparse");
    h[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
    h[16..24].copy_from_slice(&table_offset.to_be_bytes());
    h[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    h[28..32].copy_from_slice(&max_table_entries.to_be_bytes());
    h[32..36].copy_from_slice(&(BLOCK as u32).to_be_bytes());
    let sum = checksum(&h);
    h[36..40].copy_from_slice(&sum.to_be_bytes());
    h
}

fn timestamp() -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(VHD_EPOCH);
    now.saturating_sub(VHD_EPOCH) as u32
}

/// Fixed VHD: the data at its own offsets (non-zero clusters only), footer at the end.
pub(crate) fn write_fixed(
    src: &Source,
    out: &Output,
    virtual_size: u64,
) -> Result<u64, FormatError> {
    check_size(src.path(), virtual_size)?;
    out.set_len(virtual_size + 512)?;
    let mut clusters = Clusters::new(src, CLUSTER as usize);
    let mut data = 0;
    // Coalesce runs of adjacent clusters into one write.
    let mut run: Vec<u8> = Vec::with_capacity(4 << 20);
    let mut run_start = 0u64;
    while let Some((i, c)) = clusters.next_cluster()? {
        let off = i * CLUSTER;
        if run.is_empty() || run_start + run.len() as u64 != off || run.len() >= 4 << 20 {
            if !run.is_empty() {
                out.write_at(&run, run_start)?;
            }
            run.clear();
            run_start = off;
        }
        // the last cluster may pass the end of the input: never write past the data area
        let keep = (virtual_size - off).min(CLUSTER) as usize;
        run.extend_from_slice(&c[..keep]);
        data += CLUSTER;
    }
    if !run.is_empty() {
        out.write_at(&run, run_start)?;
    }
    let uuid = super::unique_bytes(out.path.as_os_str().as_encoded_bytes());
    out.write_at(
        &footer(virtual_size, false, timestamp(), uuid),
        virtual_size,
    )?;
    Ok(data)
}

/// Dynamic VHD with 2 MiB blocks; only blocks holding non-zero data are stored.
pub(crate) fn write_dynamic(
    src: &Source,
    out: &Output,
    virtual_size: u64,
) -> Result<u64, FormatError> {
    check_size(src.path(), virtual_size)?;
    let entries = virtual_size.div_ceil(BLOCK);
    let entries_u32 = u32::try_from(entries).map_err(|_| FormatError::Size {
        path: src.path().to_path_buf(),
        problem: "too large for VHD".into(),
    })?;
    let bat_offset = 1536u64;
    let bat_bytes = (entries * 4).div_ceil(512) * 512;
    let mut bat = vec![0xFFu8; bat_bytes as usize];
    let mut next_block = bat_offset + bat_bytes; // file offset of the next block's bitmap
    let bitmap = [0xFFu8; BITMAP as usize];
    let mut current: Option<(u64, u64)> = None; // (block index, its data offset)
    let mut clusters = Clusters::new(src, CLUSTER as usize);
    let mut data = 0;
    while let Some((i, c)) = clusters.next_cluster()? {
        let block = i * CLUSTER / BLOCK;
        let data_off = match current {
            Some((b, off)) if b == block => off,
            _ => {
                out.write_at(&bitmap, next_block)?;
                let sector = u32::try_from(next_block / 512).map_err(|_| FormatError::Size {
                    path: out.path.to_path_buf(),
                    problem: "VHD file passes 2 TiB".into(),
                })?;
                bat[(block * 4) as usize..(block * 4 + 4) as usize]
                    .copy_from_slice(&sector.to_be_bytes());
                let off = next_block + BITMAP;
                next_block = off + BLOCK;
                current = Some((block, off));
                off
            }
        };
        out.write_at(c, data_off + (i * CLUSTER) % BLOCK)?;
        data += CLUSTER;
    }
    let uuid = super::unique_bytes(out.path.as_os_str().as_encoded_bytes());
    let foot = footer(virtual_size, true, timestamp(), uuid);
    out.write_at(&foot, 0)?;
    out.write_at(&dynamic_header(bat_offset, entries_u32), 512)?;
    out.write_at(&bat, bat_offset)?;
    out.write_at(&foot, next_block)?;
    out.set_len(next_block + 512)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_follows_the_spec() {
        assert_eq!(chs_geometry(64 << 20), (963, 8, 17));
        assert_eq!(chs_geometry(8 << 30), (16644, 16, 63));
        assert_eq!(chs_geometry(30 << 30), (62415, 16, 63));
        // past 65535*16*63 sectors: 255 sectors per track
        assert_eq!(chs_geometry(40 << 30), (20560, 16, 255));
        // capped at the maximum
        assert_eq!(chs_geometry(200 << 30), (65535, 16, 255));
    }

    #[test]
    fn footer_layout_and_checksum() {
        let f = footer(8 << 30, false, 1234, [7; 16]);
        assert_eq!(&f[0..8], b"conectix");
        assert_eq!(&f[16..24], &[0xff; 8]);
        assert_eq!(&f[28..32], b"qem2");
        assert_eq!(u64::from_be_bytes(f[48..56].try_into().unwrap()), 8 << 30);
        assert_eq!(&f[56..60], &[0x41, 0x04, 16, 63]);
        assert_eq!(u32::from_be_bytes(f[60..64].try_into().unwrap()), 2);
        let stored = u32::from_be_bytes(f[64..68].try_into().unwrap());
        let mut z = f;
        z[64..68].fill(0);
        assert_eq!(stored, checksum(&z));
        let d = footer(1 << 20, true, 0, [0; 16]);
        assert_eq!(u64::from_be_bytes(d[16..24].try_into().unwrap()), 512);
    }

    #[test]
    fn dynamic_header_layout() {
        let h = dynamic_header(1536, 150);
        assert_eq!(&h[0..8], b"cxsparse");
        assert_eq!(u32::from_be_bytes(h[28..32].try_into().unwrap()), 150);
        assert_eq!(u32::from_be_bytes(h[32..36].try_into().unwrap()), 2 << 20);
        // the qemu-created 300M image's header checksum (same fields) is 0xfffff3e1
        assert_eq!(
            u32::from_be_bytes(h[36..40].try_into().unwrap()),
            0xffff_f3e1
        );
    }

    #[test]
    fn size_must_be_whole_mib() {
        assert!(check_size(Path::new("x"), (1 << 20) + 512).is_err());
        assert!(check_size(Path::new("x"), 0).is_err());
        assert!(check_size(Path::new("x"), 3 << 20).is_ok());
    }
}
