//! The GUID Partition Table: reading and validating the MBR, the primary GPT header and
//! its partition entries from a disk image.
//!
//! This is our own small reader rather than the `gpt` crate: flatbake must tell a user
//! precisely *why* a file is not a usable disk (truncated, foreign layout, bad CRC,
//! overlapping entries), must accept Flatcar's old hybrid MBRs, and later rewrites the
//! table in place for layout growth, keeping every GUID and the MBR boot code
//! byte-for-byte. All of that is a few hundred lines of plain parsing.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Logical sector size. Flatcar images always use 512-byte sectors.
pub const SECTOR: u64 = 512;

/// A GUID as stored on disk (mixed-endian), displayed in the usual textual form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// Parse the textual form `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` (any case).
    pub const fn from_str_const(s: &str) -> Guid {
        let b = s.as_bytes();
        let mut hex = [0u8; 16];
        let mut i = 0;
        let mut n = 0;
        while i < b.len() {
            let c = b[i];
            if c != b'-' {
                let v = match c {
                    b'0'..=b'9' => c - b'0',
                    b'a'..=b'f' => c - b'a' + 10,
                    b'A'..=b'F' => c - b'A' + 10,
                    _ => panic!("bad GUID literal"),
                };
                hex[n / 2] = (hex[n / 2] << 4) | v;
                n += 1;
            }
            i += 1;
        }
        assert!(n == 32, "bad GUID literal");
        // text order -> on-disk mixed-endian order
        Guid([
            hex[3], hex[2], hex[1], hex[0], hex[5], hex[4], hex[7], hex[6], hex[8], hex[9],
            hex[10], hex[11], hex[12], hex[13], hex[14], hex[15],
        ])
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        for x in &b[10..] {
            write!(f, "{x:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One used GPT partition entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// 1-based partition number (index in the entry array + 1).
    pub number: u32,
    pub type_guid: Guid,
    pub unique_guid: Guid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    pub name: String,
}

impl Partition {
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }
    pub fn size(&self) -> u64 {
        (self.last_lba - self.first_lba + 1) * SECTOR
    }
}

/// The parsed partition table of a disk image.
#[derive(Clone, Debug)]
pub struct Gpt {
    pub disk_guid: Guid,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
    pub backup_lba: u64,
    /// What is wrong with the backup GPT, when the primary is sound but the backup is
    /// damaged or disagrees with it.
    pub backup_problem: Option<String>,
    pub entries_lba: u64,
    pub num_entries: u32,
    pub entry_size: u32,
    /// Whether the MBR also carries ordinary partitions besides the 0xEE one.
    pub hybrid_mbr: bool,
    pub partitions: Vec<Partition>,
}

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a disk image: {what}")]
    NotGpt { path: PathBuf, what: String },
    #[error("{path}: corrupt GPT: {what}")]
    Corrupt { path: PathBuf, what: String },
    /// The primary table is damaged but the backup at the end of the disk is sound.
    /// flatbake does not choose between the two copies itself (see [`Gpt::parse`]).
    #[error(
        "{path}: corrupt GPT: {what}; the backup GPT at LBA {backup_lba} is intact: \
         repair the image with `sgdisk -e {path}` (it rebuilds the primary from the backup) and try again"
    )]
    PrimaryCorrupt {
        path: PathBuf,
        what: String,
        backup_lba: u64,
    },
    #[error("{path}: a qcow2 image; flatbake bakes raw disk images: convert it first (qemu-img convert -O raw {path} IMAGE.bin)")]
    Qcow2 { path: PathBuf },
    #[error(
        "{path}: truncated: the partition table describes {needed} bytes but the file has {actual}"
    )]
    Truncated {
        path: PathBuf,
        needed: u64,
        actual: u64,
    },
    #[error("{path}: truncated: partition {number} ({name}) ends at byte {end} but the file has {actual}")]
    PartitionPastEnd {
        path: PathBuf,
        number: u32,
        name: String,
        end: u64,
        actual: u64,
    },
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// The fields of one GPT header (primary or backup) that flatbake uses.
struct Header {
    alternate_lba: u64,
    first_usable_lba: u64,
    last_usable_lba: u64,
    disk_guid: Guid,
    entries_lba: u64,
    num_entries: u32,
    entry_size: u32,
    entries_crc: u32,
}

/// Why one copy of the table is unusable.
enum TableError {
    /// No `EFI PART` signature: no table at all there.
    Missing(String),
    /// A table is there but it is inconsistent.
    Corrupt(String),
    Io(std::io::Error),
}

type ReadFn<'a> = dyn FnMut(u64, &mut [u8]) -> std::io::Result<()> + 'a;

/// Parse and check the header sector `hdr` found at `lba`; `which` is `primary` or
/// `backup`.
fn parse_header(hdr: &[u8], lba: u64, which: &str) -> Result<Header, TableError> {
    let corrupt = |what: String| TableError::Corrupt(format!("{which} {what}"));
    if &hdr[0..8] != b"EFI PART" {
        return Err(TableError::Missing(format!(
            "no 'EFI PART' signature at LBA {lba}"
        )));
    }
    let header_size = le32(hdr, 12) as usize;
    if !(92..=SECTOR as usize).contains(&header_size) {
        return Err(corrupt(format!("header size {header_size} out of range")));
    }
    let stored_crc = le32(hdr, 16);
    let mut h = hdr[..header_size].to_vec();
    h[16..20].fill(0);
    let crc = crc32fast::hash(&h);
    if crc != stored_crc {
        return Err(corrupt(format!(
            "header CRC32 is {stored_crc:#010x}, computed {crc:#010x}"
        )));
    }
    let my_lba = le64(hdr, 24);
    let alternate_lba = le64(hdr, 32);
    let first_usable_lba = le64(hdr, 40);
    let last_usable_lba = le64(hdr, 48);
    let mut disk_guid = [0u8; 16];
    disk_guid.copy_from_slice(&hdr[56..72]);
    let entries_lba = le64(hdr, 72);
    let num_entries = le32(hdr, 80);
    let entry_size = le32(hdr, 84);
    let entries_crc = le32(hdr, 88);
    if my_lba != lba {
        return Err(corrupt(format!(
            "header says it is at LBA {my_lba}, not {lba}"
        )));
    }
    if entry_size < 128 || entry_size % 8 != 0 || entry_size > 4096 {
        return Err(corrupt(format!(
            "header: partition entry size {entry_size} is invalid"
        )));
    }
    if num_entries == 0 || num_entries > 1024 {
        return Err(corrupt(format!(
            "header: {num_entries} partition entries is out of range"
        )));
    }
    // The primary is at LBA 1 and the backup after the usable area, at the disk's end.
    let (primary_lba, backup_lba) = if lba == 1 {
        (lba, alternate_lba)
    } else {
        (alternate_lba, lba)
    };
    if primary_lba != 1 || first_usable_lba > last_usable_lba || backup_lba <= last_usable_lba {
        return Err(corrupt(format!(
            "header: usable range {first_usable_lba}..={last_usable_lba} and backup header LBA {backup_lba} are inconsistent"
        )));
    }
    let entries_bytes = num_entries as u64 * entry_size as u64;
    let entries_end = entries_lba
        .checked_mul(SECTOR)
        .and_then(|o| o.checked_add(entries_bytes))
        .ok_or_else(|| corrupt("header: partition entry array is out of range".into()))?;
    let fits = if lba == 1 {
        entries_lba >= 2 && entries_end <= first_usable_lba.saturating_mul(SECTOR)
    } else {
        entries_lba > last_usable_lba && entries_end <= lba.saturating_mul(SECTOR)
    };
    if !fits {
        return Err(corrupt(format!(
            "partition entry array at LBA {entries_lba} overlaps the usable area"
        )));
    }
    Ok(Header {
        alternate_lba,
        first_usable_lba,
        last_usable_lba,
        disk_guid: Guid(disk_guid),
        entries_lba,
        num_entries,
        entry_size,
        entries_crc,
    })
}

/// Read the header at `lba` and its partition entries, and check them.
fn read_table(
    read: &mut ReadFn<'_>,
    len: u64,
    lba: u64,
    which: &str,
) -> Result<(Header, Vec<Partition>), TableError> {
    let mut hdr = [0u8; SECTOR as usize];
    read(lba * SECTOR, &mut hdr).map_err(TableError::Io)?;
    let h = parse_header(&hdr, lba, which)?;
    let corrupt = |what: String| TableError::Corrupt(format!("{which} {what}"));
    let mut entries = vec![0u8; h.num_entries as usize * h.entry_size as usize];
    read(h.entries_lba * SECTOR, &mut entries).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => corrupt(format!(
            "partition entry array at LBA {} lies past the end of the file",
            h.entries_lba
        )),
        _ => TableError::Io(e),
    })?;
    let ecrc = crc32fast::hash(&entries);
    if ecrc != h.entries_crc {
        return Err(corrupt(format!(
            "partition entry array CRC32 is {:#010x}, computed {ecrc:#010x}",
            h.entries_crc
        )));
    }
    let corrupt = |what: String| TableError::Corrupt(what);
    let mut partitions = Vec::new();
    for (i, e) in entries.chunks_exact(h.entry_size as usize).enumerate() {
        let mut t = [0u8; 16];
        t.copy_from_slice(&e[0..16]);
        let type_guid = Guid(t);
        if type_guid.is_zero() {
            continue;
        }
        let mut u = [0u8; 16];
        u.copy_from_slice(&e[16..32]);
        let first_lba = le64(e, 32);
        let last_lba = le64(e, 40);
        let attributes = le64(e, 48);
        let units: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&c| c != 0)
            .collect();
        let name = String::from_utf16_lossy(&units);
        let number = i as u32 + 1;
        if first_lba > last_lba {
            return Err(corrupt(format!(
                "partition {number} ({name}) ends (LBA {last_lba}) before it starts (LBA {first_lba})"
            )));
        }
        if first_lba < h.first_usable_lba || last_lba > h.last_usable_lba {
            let sectors = len / SECTOR;
            let eof = if last_lba >= sectors {
                format!(", past the end of the file ({sectors} sectors)")
            } else {
                String::new()
            };
            return Err(corrupt(format!(
                "partition {number} ({name}) at LBA {first_lba}..={last_lba} lies outside the usable area {}..={}{eof}",
                h.first_usable_lba, h.last_usable_lba
            )));
        }
        partitions.push(Partition {
            number,
            type_guid,
            unique_guid: Guid(u),
            first_lba,
            last_lba,
            attributes,
            name,
        });
    }
    let mut sorted: Vec<&Partition> = partitions.iter().collect();
    sorted.sort_by_key(|p| p.first_lba);
    for w in sorted.windows(2) {
        if w[1].first_lba <= w[0].last_lba {
            return Err(corrupt(format!(
                "partitions {} ({}) and {} ({}) overlap",
                w[0].number, w[0].name, w[1].number, w[1].name
            )));
        }
    }
    Ok((h, partitions))
}

impl Gpt {
    /// Read and validate the primary GPT of the disk image at `path`.
    pub fn read(path: &Path) -> Result<Gpt, GptError> {
        let io = |source| GptError::Io {
            path: path.to_owned(),
            source,
        };
        let file = crate::input::open_regular(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Gpt::read_from(&file, len, path)
    }

    /// Read and validate the primary GPT from an open file of `len` bytes; `path` only
    /// names the file in errors.
    pub fn read_from(file: &File, len: u64, path: &Path) -> Result<Gpt, GptError> {
        Gpt::parse(&mut |off, buf| file.read_exact_at(buf, off), len, path)
    }

    /// Read and validate the primary GPT of a disk of `len` bytes through `read`.
    ///
    /// Only a sound primary table is accepted. When it is damaged, the backup table in
    /// the last sector of the file is read too, only to say whether it is intact: a
    /// damaged primary with a sound backup gives [`GptError::PrimaryCorrupt`], which
    /// tells the user how to rebuild the primary (`sgdisk -e`). flatbake does not fall
    /// back to the backup itself: its outputs are copies of the input, so they would
    /// carry the damaged primary on, and which copy is right (a damaged primary, or a
    /// stale backup left by an interrupted repartitioning) is the user's call.
    ///
    /// Every partition must lie inside the file; a file shorter than the disk its table
    /// describes is [`GptError::PartitionPastEnd`] or [`GptError::Truncated`].
    pub fn parse(read: &mut ReadFn<'_>, len: u64, path: &Path) -> Result<Gpt, GptError> {
        let not_gpt = |what: &str| GptError::NotGpt {
            path: path.to_owned(),
            what: what.to_owned(),
        };
        let mut mbr = [0u8; SECTOR as usize];
        let head = len.min(SECTOR) as usize;
        read(0, &mut mbr[..head]).map_err(|source| GptError::Io {
            path: path.to_owned(),
            source,
        })?;
        if mbr[..4] == *b"QFI\xfb" {
            return Err(GptError::Qcow2 {
                path: path.to_owned(),
            });
        }
        if len < 34 * SECTOR {
            return Err(not_gpt(&format!(
                "only {len} bytes, too small for a GPT disk"
            )));
        }
        if mbr[510] != 0x55 || mbr[511] != 0xAA {
            return Err(not_gpt("no MBR boot signature (0x55AA) in sector 0"));
        }
        let mut protective = false;
        let mut others = false;
        for i in 0..4 {
            match mbr[446 + 16 * i + 4] {
                0 => {}
                0xEE => protective = true,
                _ => others = true,
            }
        }
        if !protective {
            return Err(not_gpt("the MBR has no GPT protective (0xEE) partition"));
        }
        let (h, partitions) = match read_table(read, len, 1, "primary") {
            Ok(t) => t,
            Err(TableError::Io(source)) => {
                return Err(GptError::Io {
                    path: path.to_owned(),
                    source,
                })
            }
            Err(primary) => {
                let last = len / SECTOR - 1;
                let backup = read_table(read, len, last, "backup");
                return Err(match (primary, backup) {
                    (TableError::Corrupt(what) | TableError::Missing(what), Ok(_)) => {
                        GptError::PrimaryCorrupt {
                            path: path.to_owned(),
                            what,
                            backup_lba: last,
                        }
                    }
                    (TableError::Missing(what), Err(_)) => GptError::NotGpt {
                        path: path.to_owned(),
                        what,
                    },
                    (
                        TableError::Corrupt(what),
                        Err(TableError::Corrupt(b) | TableError::Missing(b)),
                    ) => GptError::Corrupt {
                        path: path.to_owned(),
                        what: format!("{what}; no usable backup either ({b})"),
                    },
                    (TableError::Corrupt(what), Err(TableError::Io(_))) => GptError::Corrupt {
                        path: path.to_owned(),
                        what,
                    },
                    (TableError::Io(source), _) => GptError::Io {
                        path: path.to_owned(),
                        source,
                    },
                });
            }
        };
        let actual = len;
        if let Some(p) = partitions
            .iter()
            .find(|p| p.last_lba.saturating_add(1).saturating_mul(SECTOR) > len)
        {
            return Err(GptError::PartitionPastEnd {
                path: path.to_owned(),
                number: p.number,
                name: p.name.clone(),
                end: p.last_lba.saturating_add(1).saturating_mul(SECTOR),
                actual,
            });
        }
        let needed = h.alternate_lba.saturating_add(1).saturating_mul(SECTOR);
        if len < needed {
            return Err(GptError::Truncated {
                path: path.to_owned(),
                needed,
                actual,
            });
        }
        // The backup is not used, but a damaged or stale one is worth a warning: a copy
        // of this image carries it on.
        let backup_problem = match read_table(read, len, h.alternate_lba, "backup") {
            Ok((_, b)) if b == partitions => None,
            Ok(_) => {
                Some("the backup GPT's partition entries differ from the primary's".to_owned())
            }
            Err(TableError::Corrupt(w) | TableError::Missing(w)) => Some(w),
            Err(TableError::Io(e)) => Some(format!("backup GPT unreadable: {e}")),
        };
        Ok(Gpt {
            backup_problem,
            disk_guid: h.disk_guid,
            first_usable_lba: h.first_usable_lba,
            last_usable_lba: h.last_usable_lba,
            backup_lba: h.alternate_lba,
            entries_lba: h.entries_lba,
            num_entries: h.num_entries,
            entry_size: h.entry_size,
            hybrid_mbr: others,
            partitions,
        })
    }

    pub fn partition(&self, number: u32) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.number == number)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    pub const LINUX: Guid = Guid::from_str_const("0FC63DAF-8483-4772-8E79-3D69D8477DE4");

    /// Build a minimal GPT disk image in memory: `parts` are (type, first, last, name).
    pub fn make_disk(sectors: u64, parts: &[(Guid, u64, u64, &str)]) -> Vec<u8> {
        let mut d = vec![0u8; (sectors * SECTOR) as usize];
        d[446 + 4] = 0xEE;
        d[510] = 0x55;
        d[511] = 0xAA;
        let mut entries = vec![0u8; 128 * 128];
        for (i, (t, first, last, name)) in parts.iter().enumerate() {
            let e = &mut entries[i * 128..(i + 1) * 128];
            e[0..16].copy_from_slice(&t.0);
            e[16] = i as u8 + 1;
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
            for (j, u) in name.encode_utf16().enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
            }
        }
        d[1024..1024 + entries.len()].copy_from_slice(&entries);
        let h = &mut d[512..1024];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&1u64.to_le_bytes());
        h[32..40].copy_from_slice(&(sectors - 1).to_le_bytes());
        h[40..48].copy_from_slice(&34u64.to_le_bytes());
        h[48..56].copy_from_slice(&(sectors - 34).to_le_bytes());
        h[56] = 7;
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32fast::hash(&entries).to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        // the backup: entries just before the last sector, header in it
        let mut b = d[512..1024].to_vec();
        b[16..20].fill(0);
        b[24..32].copy_from_slice(&(sectors - 1).to_le_bytes());
        b[32..40].copy_from_slice(&1u64.to_le_bytes());
        b[72..80].copy_from_slice(&(sectors - 33).to_le_bytes());
        let crc = crc32fast::hash(&b[..92]);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
        let end = d.len();
        d[end - 512..].copy_from_slice(&b);
        d[end - 512 - entries.len()..end - 512].copy_from_slice(&entries);
        d
    }

    fn write_tmp(d: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(d).unwrap();
        f
    }

    #[test]
    fn guid_round_trip() {
        let s = "3884DD41-8582-4404-B9A8-E9B84F2DF50E";
        let g = Guid::from_str_const(s);
        assert_eq!(g.to_string(), s);
        // on-disk order of the first field is little-endian
        assert_eq!(g.0[0], 0x41);
    }

    #[test]
    fn reads_entries() {
        let d = make_disk(2048, &[(LINUX, 40, 99, "OEM"), (LINUX, 100, 2000, "ROOT")]);
        let f = write_tmp(&d);
        let g = Gpt::read(f.path()).unwrap();
        assert_eq!(g.partitions.len(), 2);
        assert_eq!(g.partitions[1].name, "ROOT");
        assert_eq!(g.partitions[1].number, 2);
        assert_eq!(g.partitions[0].offset(), 40 * 512);
        assert_eq!(g.partitions[0].size(), 60 * 512);
        assert!(!g.hybrid_mbr);
    }

    fn err_of(d: &[u8]) -> String {
        let f = write_tmp(d);
        Gpt::read(f.path()).unwrap_err().to_string()
    }

    #[test]
    fn damaged_primary_names_the_intact_backup() {
        let good = make_disk(2048, &[(LINUX, 40, 99, "A"), (LINUX, 100, 2000, "B")]);
        assert!(Gpt::parse(
            &mut |o, b| slice_read(&good, o, b),
            2048 * 512,
            Path::new("d")
        )
        .is_ok());
        // header CRC, entry CRC, missing signature: each with the backup intact
        for (at, want) in [
            (512 + 40, "primary header CRC32"),
            (1024 + 33, "primary partition entry array CRC32"),
            (512, "no 'EFI PART' signature at LBA 1"),
        ] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            let e = err_of(&bad);
            assert!(
                e.contains(want)
                    && e.contains("the backup GPT at LBA 2047 is intact")
                    && e.contains("sgdisk -e"),
                "{e}"
            );
        }
        // both copies damaged
        let mut bad = good.clone();
        bad[512 + 40] ^= 1;
        let n = bad.len();
        bad[n - 512 + 40] ^= 1;
        let e = err_of(&bad);
        assert!(
            e.contains("corrupt GPT: primary header CRC32")
                && e.contains("no usable backup either (backup header CRC32"),
            "{e}"
        );
        // backup entries damaged
        let mut bad = good.clone();
        bad[512 + 40] ^= 1;
        bad[n - 512 - 128 * 128 + 33] ^= 1;
        assert!(
            err_of(&bad).contains("no usable backup either (backup partition entry array CRC32")
        );
        // no signature in either copy: not a GPT disk at all
        let mut bad = good.clone();
        bad[512] = 0;
        bad[n - 512] = 0;
        assert!(err_of(&bad).contains("not a disk image: no 'EFI PART' signature at LBA 1"));
    }

    fn slice_read(d: &[u8], off: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let s = d
            .get(off as usize..off as usize + buf.len())
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(s);
        Ok(())
    }

    #[test]
    fn rejects_bad_input() {
        assert!(err_of(&[0u8; 100]).contains("too small"));
        assert!(err_of(&vec![0u8; 512 * 64]).contains("0x55AA"));
        let good = make_disk(2048, &[(LINUX, 40, 99, "A"), (LINUX, 100, 2000, "B")]);
        // truncated
        assert!(err_of(&good[..512 * 1500]).contains("truncated"));
        // header CRC
        let mut bad = good.clone();
        bad[512 + 40] ^= 1;
        assert!(err_of(&bad).contains("header CRC32"));
        // entry CRC
        let mut bad = good.clone();
        bad[1024 + 33] ^= 1;
        assert!(err_of(&bad).contains("entry array CRC32"));
        // overlap
        let ov = make_disk(2048, &[(LINUX, 40, 150, "A"), (LINUX, 100, 2000, "B")]);
        assert!(err_of(&ov).contains("overlap"));
        // past the end of the usable area
        let past = make_disk(2048, &[(LINUX, 40, 5000, "A")]);
        assert!(err_of(&past).contains("at LBA 40..=5000 lies outside the usable area 34..=2014, past the end of the file (2048 sectors)"));
        // a partition past the end of the file (header and entries consistent, file short)
        let big = make_disk(4096, &[(LINUX, 40, 3000, "ROOT")]);
        let e = err_of(&big[..512 * 2048]);
        assert!(
            e.contains(
                "truncated: partition 1 (ROOT) ends at byte 1536512 but the file has 1048576"
            ),
            "{e}"
        );
        // a qcow2 file given as a raw disk
        let mut q = vec![0u8; 4096];
        q[..4].copy_from_slice(b"QFI\xfb");
        assert!(err_of(&q).contains("a qcow2 image; flatbake bakes raw disk images"));
        // no protective MBR entry
        let mut nombr = good.clone();
        nombr[446 + 4] = 0x83;
        assert!(err_of(&nombr).contains("protective"));
    }
}
