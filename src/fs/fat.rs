//! The ESP's FAT filesystem, read in-process by our own small reader (the kernel here
//! does not even mount vfat): the image's architecture from its UEFI boot loader's
//! name, and the first-boot flag. Only lookups are needed, so only directories are read:
//! the boot sector, the FAT entries of the directories walked, and their clusters.
//!
//! An ESP comes from an untrusted image, so every step is bounded: the boot sector's
//! geometry is checked (sector and cluster sizes, FAT and data areas inside the
//! filesystem), a cluster number must name a data cluster, a cluster chain may not be
//! longer than the filesystem has clusters nor than [`MAX_DIR_BYTES`] (a chain that
//! loops back on itself ends there), and one lookup reads at most [`BYTE_BUDGET`] bytes
//! in at most [`READ_BUDGET`] reads. Anything out of bounds is "cannot tell" (`None`),
//! never a panic. (fatfs, used here before, follows chains without bound and panics on
//! cluster numbers below 2, which fuzzing found.)

use crate::arch::Arch;
use std::io::{self, Read, Seek, SeekFrom};

/// Bytes one lookup may read from the ESP (directories of a real ESP are a few KiB).
pub const BYTE_BUDGET: u64 = 8 << 20;
/// Read calls one lookup may make.
pub const READ_BUDGET: u64 = 1 << 18;
/// The largest directory FAT allows: 65536 entries of 32 bytes.
pub const MAX_DIR_BYTES: u64 = 65536 * 32;

/// A reader that fails once it has read `bytes` bytes or made `reads` reads.
pub struct Budget<R> {
    inner: R,
    bytes: u64,
    reads: u64,
}

impl<R> Budget<R> {
    pub fn new(inner: R) -> Self {
        Budget {
            inner,
            bytes: BYTE_BUDGET,
            reads: READ_BUDGET,
        }
    }
}

impl<R: Read + Seek> Budget<R> {
    /// Exactly `buf.len()` bytes at `off`, within the budget.
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        if self.reads == 0 || self.bytes < buf.len() as u64 {
            return Err(io::Error::other(
                "ESP lookup read too much (a FAT cluster chain loops?)",
            ));
        }
        self.reads -= 1;
        self.bytes -= buf.len() as u64;
        self.inner.seek(SeekFrom::Start(off))?;
        self.inner.read_exact(buf)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Fat12,
    Fat16,
    Fat32,
}

/// The geometry of a FAT filesystem, checked against itself.
#[derive(Debug)]
struct Geometry {
    kind: Kind,
    cluster: u64,
    /// Byte offset of the first FAT.
    fat: u64,
    /// Byte length of one FAT.
    fat_len: u64,
    /// FAT12/16: byte offset and length of the fixed root directory.
    root: (u64, u64),
    /// FAT32: the root directory's first cluster.
    root_cluster: u32,
    /// Byte offset of cluster 2.
    data: u64,
    /// Data clusters: valid cluster numbers are 2..clusters+2.
    clusters: u32,
}

fn le16(b: &[u8], o: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[o], b[o + 1]]))
}
fn le32(b: &[u8], o: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]))
}

impl Geometry {
    fn parse(bs: &[u8; 512]) -> Option<Geometry> {
        let sector = le16(bs, 11);
        let per_cluster = u64::from(bs[13]);
        let reserved = le16(bs, 14);
        let fats = u64::from(bs[16]);
        let root_entries = le16(bs, 17);
        let total = match le16(bs, 19) {
            0 => le32(bs, 32),
            n => n,
        };
        let fat_sectors = match le16(bs, 22) {
            0 => le32(bs, 36),
            n => n,
        };
        if !matches!(sector, 512 | 1024 | 2048 | 4096)
            || !per_cluster.is_power_of_two()
            || per_cluster > 128
            || reserved == 0
            || fats == 0
            || fat_sectors == 0
        {
            return None;
        }
        let root_sectors = (root_entries * 32).div_ceil(sector);
        let first_data = reserved
            .checked_add(fats.checked_mul(fat_sectors)?)?
            .checked_add(root_sectors)?;
        let clusters = total.checked_sub(first_data)? / per_cluster;
        let kind = match clusters {
            0 => return None,
            1..4085 => Kind::Fat12,
            4085..65525 => Kind::Fat16,
            _ => Kind::Fat32,
        };
        // the FAT must have an entry for every cluster
        let need = match kind {
            Kind::Fat12 => (clusters + 2) * 3 / 2 + 1,
            Kind::Fat16 => (clusters + 2) * 2,
            Kind::Fat32 => (clusters + 2) * 4,
        };
        let fat_len = fat_sectors.checked_mul(sector)?;
        if fat_len < need || clusters > u64::from(u32::MAX - 16) {
            return None;
        }
        let root_cluster = if kind == Kind::Fat32 {
            u32::try_from(le32(bs, 44)).ok()?
        } else {
            0
        };
        Some(Geometry {
            kind,
            cluster: sector * per_cluster,
            fat: reserved * sector,
            fat_len,
            root: ((reserved + fats * fat_sectors) * sector, root_entries * 32),
            root_cluster,
            data: first_data.checked_mul(sector)?,
            clusters: u32::try_from(clusters).ok()?,
        })
    }

    fn valid(&self, cluster: u32) -> bool {
        cluster >= 2 && cluster - 2 < self.clusters
    }

    /// The cluster after `cluster` in its chain; `None` at the end of the chain.
    fn next<R: Read + Seek>(&self, r: &mut Budget<R>, cluster: u32) -> io::Result<Option<u32>> {
        let n = u64::from(cluster);
        let (off, width) = match self.kind {
            Kind::Fat12 => (n + n / 2, 2),
            Kind::Fat16 => (n * 2, 2),
            Kind::Fat32 => (n * 4, 4),
        };
        if off + width > self.fat_len {
            return Err(bad("FAT entry outside the FAT"));
        }
        let mut b = [0u8; 4];
        r.read_at(self.fat + off, &mut b[..width as usize])?;
        let v = u32::from_le_bytes(b);
        let (v, end) = match self.kind {
            Kind::Fat12 => (if n % 2 == 1 { v >> 4 } else { v & 0xFFF }, 0xFF8),
            Kind::Fat16 => (v & 0xFFFF, 0xFFF8),
            Kind::Fat32 => (v & 0x0FFF_FFFF, 0x0FFF_FFF8),
        };
        if v >= end {
            Ok(None)
        } else if self.valid(v) {
            Ok(Some(v))
        } else {
            Err(bad("FAT cluster chain leaves the data area"))
        }
    }

    /// The bytes of a directory: the fixed FAT12/16 root (`cluster` 0) or a chain.
    fn dir<R: Read + Seek>(&self, r: &mut Budget<R>, cluster: u32) -> io::Result<Vec<u8>> {
        if cluster == 0 && self.kind != Kind::Fat32 {
            let (off, len) = self.root;
            let mut buf = vec![0u8; len.min(MAX_DIR_BYTES) as usize];
            r.read_at(off, &mut buf)?;
            return Ok(buf);
        }
        let mut buf = Vec::new();
        let mut at = Some(cluster);
        let mut walked = 0u64;
        while let Some(c) = at {
            if !self.valid(c) {
                return Err(bad("cluster number outside the data area"));
            }
            walked += 1;
            if walked > u64::from(self.clusters) || buf.len() as u64 >= MAX_DIR_BYTES {
                return Err(bad("FAT directory chain loops or is too long"));
            }
            let start = buf.len();
            buf.resize(start + self.cluster as usize, 0);
            r.read_at(
                self.data + u64::from(c - 2) * self.cluster,
                &mut buf[start..],
            )?;
            // an end-of-directory entry ends the walk (no need to read the rest)
            if buf[start..].chunks(32).any(|e| e[0] == 0) {
                break;
            }
            at = self.next(r, c)?;
        }
        Ok(buf)
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// One directory entry: its name (long name when it has one) and what it is.
#[derive(Debug)]
struct Entry {
    name: String,
    dir: bool,
    cluster: u32,
}

/// The entries of a directory's bytes (long names assembled, deleted entries,
/// volume labels and `.`/`..` skipped).
fn entries(g: &Geometry, buf: &[u8]) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut long: Vec<(u8, [u16; 13])> = Vec::new();
    for e in buf.chunks_exact(32) {
        match e[0] {
            0 => break,
            0xE5 => {
                long.clear();
                continue;
            }
            _ => {}
        }
        let attr = e[11];
        if attr & 0x3F == 0x0F {
            let mut part = [0u16; 13];
            let offsets = (1..11)
                .step_by(2)
                .chain((14..26).step_by(2))
                .chain((28..32).step_by(2));
            for (slot, o) in part.iter_mut().zip(offsets) {
                *slot = u16::from_le_bytes([e[o], e[o + 1]]);
            }
            long.push((e[0] & 0x1F, part));
            continue;
        }
        let pending = std::mem::take(&mut long);
        if attr & 0x08 != 0 {
            continue; // volume label
        }
        let short = short_name(e);
        if short == "." || short == ".." {
            continue;
        }
        let name = long_name(pending).unwrap_or(short);
        let hi = if g.kind == Kind::Fat32 {
            le16(e, 20)
        } else {
            0
        };
        out.push(Entry {
            name,
            dir: attr & 0x10 != 0,
            cluster: ((hi << 16) | le16(e, 26)) as u32,
        });
    }
    out
}

fn short_name(e: &[u8]) -> String {
    let part = |b: &[u8]| -> String {
        let mut s: String = b.iter().map(|&c| char::from(c)).collect();
        s.truncate(s.trim_end_matches(' ').len());
        s
    };
    let mut base = part(&e[0..8]);
    if e[0] == 0x05 {
        base.replace_range(0..1, "\u{e5}");
    }
    let ext = part(&e[8..11]);
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

/// A long name from its entries (stored last part first); `None` when they do not
/// form one sequence 1..=n.
fn long_name(mut parts: Vec<(u8, [u16; 13])>) -> Option<String> {
    if parts.is_empty() {
        return None;
    }
    parts.sort_by_key(|p| p.0);
    if parts
        .iter()
        .enumerate()
        .any(|(i, p)| usize::from(p.0) != i + 1)
    {
        return None;
    }
    let units: Vec<u16> = parts
        .iter()
        .flat_map(|p| p.1)
        .take_while(|&u| u != 0)
        .filter(|&u| u != 0xFFFF)
        .collect();
    String::from_utf16(&units).ok()
}

/// An opened FAT filesystem: its geometry and its budgeted reader.
struct Fat<R> {
    g: Geometry,
    r: Budget<R>,
}

impl<R: Read + Seek> Fat<R> {
    fn open(r: R) -> Option<Fat<R>> {
        let mut r = Budget::new(r);
        let mut bs = [0u8; 512];
        r.read_at(0, &mut bs).ok()?;
        let g = Geometry::parse(&bs)?;
        Some(Fat { g, r })
    }

    fn root(&self) -> u32 {
        if self.g.kind == Kind::Fat32 {
            self.g.root_cluster
        } else {
            0
        }
    }

    fn list(&mut self, cluster: u32) -> io::Result<Vec<Entry>> {
        let buf = self.g.dir(&mut self.r, cluster)?;
        Ok(entries(&self.g, &buf))
    }

    /// The directory at `path` (components matched case-insensitively, as FAT does):
    /// `Ok(None)` when some component does not exist or is not a directory.
    fn open_dir(&mut self, path: &[&str]) -> io::Result<Option<Vec<Entry>>> {
        let mut list = self.list(self.root())?;
        for want in path {
            let Some(e) = list.iter().find(|e| e.name.eq_ignore_ascii_case(want)) else {
                return Ok(None);
            };
            if !e.dir {
                return Ok(None);
            }
            if e.cluster == 0 {
                return Err(bad("directory entry without a cluster"));
            }
            list = self.list(e.cluster)?;
        }
        Ok(Some(list))
    }
}

/// The architecture named by a FAT filesystem's `/EFI/boot/boot<arch>.efi`.
pub fn arch_of<R: Read + Seek>(r: R) -> Option<Arch> {
    let mut fs = Fat::open(r)?;
    let dir = fs.open_dir(&["EFI", "boot"]).ok()??;
    dir.iter()
        .find_map(|e| match e.name.to_ascii_lowercase().as_str() {
            "bootx64.efi" => Some(Arch::X86_64),
            "bootaa64.efi" => Some(Arch::Arm64),
            _ => None,
        })
}

/// Whether a FAT filesystem holds `/flatcar/first_boot`; `None` when it cannot be read.
pub fn first_boot_in<R: Read + Seek>(r: R) -> Option<bool> {
    let mut fs = Fat::open(r)?;
    let dir = fs.open_dir(&["flatcar"]).ok()?;
    Some(dir.is_some_and(|d| d.iter().any(|e| e.name.eq_ignore_ascii_case("first_boot"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::process::Command;

    fn tool(cmd: &mut Command) -> bool {
        cmd.output().map(|o| o.status.success()).unwrap_or(false)
    }

    /// A FAT image made by mkfs.fat/mtools (scripts/setup.sh installs them) with
    /// `dirs` and empty `files`.
    fn image(fat: &str, size_kib: u32, dirs: &[&str], files: &[&str]) -> Vec<u8> {
        let d = tempfile::tempdir().expect("tmp");
        let img = d.path().join("esp.img");
        assert!(tool(
            Command::new("mkfs.fat")
                .args(["-F", fat, "-C"])
                .arg(&img)
                .arg(size_kib.to_string()),
        ));
        for dir in dirs {
            assert!(tool(
                Command::new("mmd")
                    .arg("-i")
                    .arg(&img)
                    .arg(format!("::{dir}"))
            ));
        }
        let empty = d.path().join("empty");
        std::fs::write(&empty, b"").expect("write");
        for f in files {
            assert!(tool(
                Command::new("mcopy")
                    .arg("-i")
                    .arg(&img)
                    .arg(&empty)
                    .arg(format!("::{f}"))
            ));
        }
        std::fs::read(&img).expect("read")
    }

    #[test]
    fn reads_what_mtools_wrote_on_fat12_16_32() {
        for (fat, kib) in [("12", 1024), ("16", 16 * 1024), ("32", 40 * 1024)] {
            let x64 = image(
                fat,
                kib,
                &["EFI", "EFI/boot", "flatcar"],
                &["EFI/boot/bootx64.efi", "flatcar/first_boot"],
            );
            assert_eq!(arch_of(Cursor::new(&x64)), Some(Arch::X86_64), "FAT{fat}");
            assert_eq!(first_boot_in(Cursor::new(&x64)), Some(true), "FAT{fat}");
            let aa64 = image(fat, kib, &["EFI", "EFI/BOOT"], &["EFI/BOOT/BOOTAA64.EFI"]);
            assert_eq!(arch_of(Cursor::new(&aa64)), Some(Arch::Arm64), "FAT{fat}");
            assert_eq!(first_boot_in(Cursor::new(&aa64)), Some(false), "FAT{fat}");
        }
    }

    #[test]
    fn many_entries_span_clusters() {
        let names: Vec<String> = (0..200)
            .map(|i| format!("flatcar/long-name-{i:04}.x"))
            .collect();
        let mut files: Vec<&str> = names.iter().map(String::as_str).collect();
        files.push("flatcar/first_boot");
        let img = image("32", 40 * 1024, &["flatcar"], &files);
        assert_eq!(first_boot_in(Cursor::new(&img)), Some(true));
    }

    /// Write FAT entry `n` of a FAT16 image.
    fn set_fat16(img: &mut [u8], n: usize, v: u16) {
        let reserved = le16(img, 14) as usize * 512;
        img[reserved + 2 * n..reserved + 2 * n + 2].copy_from_slice(&v.to_le_bytes());
    }

    /// The directory entry named `short` (11 bytes, space padded) in `img`.
    fn find_entry(img: &[u8], short: &[u8; 11]) -> usize {
        img.chunks(32)
            .position(|e| &e[..11] == short)
            .map(|i| i * 32)
            .expect("entry")
    }

    #[test]
    fn a_looping_chain_or_a_bad_cluster_ends_with_cannot_tell() {
        let base = image(
            "16",
            16 * 1024,
            &["EFI", "EFI/boot"],
            &["EFI/boot/bootx64.efi"],
        );
        assert_eq!(arch_of(Cursor::new(&base)), Some(Arch::X86_64));
        let at = find_entry(&base, b"BOOT       ");
        let cluster = le16(&base, at + 26) as usize;
        // the directory's chain points back at itself: a loop
        let mut looped = base.clone();
        let boot = &mut looped[..];
        // fill the directory cluster with entries so the walk continues
        let g = Geometry::parse(boot[..512].try_into().expect("bs")).expect("geometry");
        let off = (g.data + (cluster as u64 - 2) * g.cluster) as usize;
        for e in boot[off..off + g.cluster as usize].chunks_mut(32).skip(3) {
            e[0] = 0xE5;
        }
        set_fat16(boot, cluster, cluster as u16);
        assert_eq!(arch_of(Cursor::new(&looped)), None);
        // cluster numbers 0 and 1, and one past the end, in a directory entry
        for bad in [1u16, 0xFFF6, (g.clusters + 2) as u16] {
            let mut img = base.clone();
            img[at + 26..at + 28].copy_from_slice(&bad.to_le_bytes());
            assert_eq!(arch_of(Cursor::new(&img)), None, "cluster {bad}");
        }
        // a chain entry pointing at cluster 1
        let mut img = base.clone();
        set_fat16(&mut img, cluster, 1);
        for e in img[off..off + g.cluster as usize].chunks_mut(32).skip(3) {
            e[0] = 0xE5;
        }
        assert_eq!(arch_of(Cursor::new(&img)), None);
    }

    #[test]
    fn a_bad_boot_sector_or_truncated_image_is_cannot_tell() {
        let base = image("12", 1024, &["EFI", "EFI/boot"], &["EFI/boot/bootx64.efi"]);
        for (at, v) in [(12usize, 0u8), (13, 3), (14, 0), (16, 0), (22, 0), (19, 1)] {
            let mut img = base.clone();
            img[at] = v;
            if at == 14 || at == 22 || at == 19 {
                img[at + 1] = 0;
            }
            assert_eq!(arch_of(Cursor::new(&img)), None, "byte {at} = {v}");
        }
        for len in [0, 100, 511, 600, 4096, 8192] {
            assert_eq!(arch_of(Cursor::new(&base[..len])), None, "{len} bytes");
        }
    }

    /// The input fuzzing found (fuzz/regressions/fat/): a FAT12 whose directory entry
    /// names cluster 1 (fatfs panicked subtracting 2 from it).
    #[test]
    fn fuzz_regression_cluster_below_two() {
        let data = include_bytes!("../../fuzz/regressions/fat/fat-root-cluster-underflow.bin");
        assert_eq!(arch_of(Cursor::new(&data[..])), None);
        assert_eq!(first_boot_in(Cursor::new(&data[..])), None);
    }

    /// The same underflow through a FAT32 root cluster of 0 or 1.
    #[test]
    fn fat32_root_cluster_below_two_is_cannot_tell() {
        let base = image(
            "32",
            40 * 1024,
            &["EFI", "EFI/boot"],
            &["EFI/boot/bootx64.efi"],
        );
        for root in [0u32, 1, u32::MAX] {
            let mut img = base.clone();
            img[44..48].copy_from_slice(&root.to_le_bytes());
            assert_eq!(arch_of(Cursor::new(&img)), None);
            assert_eq!(first_boot_in(Cursor::new(&img)), None);
        }
    }
}
