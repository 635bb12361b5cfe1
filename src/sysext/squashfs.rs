//! Checking a squashfs superblock before the image is handed to backhand: backhand's
//! own errors for a damaged superblock are terse ("corrupted or invalid squashfs
//! image", deku parse errors), so the fields a user can get wrong or a truncation can
//! break are judged here first, each with its own message.

/// Size of the squashfs 4.0 superblock.
pub const SUPERBLOCK_BYTES: usize = 96;
const NONE: u64 = u64::MAX;

/// The superblock fields flatbake checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub inode_count: u32,
    pub block_size: u32,
    pub compressor: u16,
    pub bytes_used: u64,
    pub id_table: u64,
    pub inode_table: u64,
    pub dir_table: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SquashfsError {
    #[error("only {0} bytes, too short for a squashfs superblock")]
    Short(u64),
    #[error("no squashfs magic (hsqs)")]
    Magic,
    #[error("squashfs version {0}.{1}; only 4.0 is supported")]
    Version(u16, u16),
    #[error("corrupt superblock: block size {size} and block_log {log} are inconsistent")]
    BlockSize { size: u32, log: u16 },
    #[error("corrupt superblock: unknown compressor id {0}")]
    UnknownCompressor(u16),
    #[error("compressed with {0}, which flatbake cannot read (use gzip, xz, zstd or lz4)")]
    UnsupportedCompressor(&'static str),
    #[error("truncated: the superblock says the filesystem is {bytes_used} bytes, the file has {file_len}")]
    Truncated { bytes_used: u64, file_len: u64 },
    #[error("corrupt superblock: {table} table at byte {at} is outside the filesystem ({bytes_used} bytes)")]
    TableOutside {
        table: &'static str,
        at: u64,
        bytes_used: u64,
    },
    #[error("corrupt superblock: the inode table (byte {inode}) does not precede the directory table (byte {dir})")]
    TableOrder { inode: u64, dir: u64 },
    #[error("corrupt superblock: {0} inodes, {1} ids")]
    Counts(u32, u16),
}

fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn le64(b: &[u8], o: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(x)
}

impl Superblock {
    /// Parse and check the superblock at the start of `head` (the first bytes of a file
    /// of `file_len` bytes).
    pub fn parse(head: &[u8], file_len: u64) -> Result<Superblock, SquashfsError> {
        if head.len() < SUPERBLOCK_BYTES || file_len < SUPERBLOCK_BYTES as u64 {
            return Err(SquashfsError::Short(file_len.min(head.len() as u64)));
        }
        let b = &head[..SUPERBLOCK_BYTES];
        if &b[0..4] != b"hsqs" {
            return Err(SquashfsError::Magic);
        }
        let (major, minor) = (le16(b, 28), le16(b, 30));
        if (major, minor) != (4, 0) {
            return Err(SquashfsError::Version(major, minor));
        }
        let block_size = le32(b, 12);
        let log = le16(b, 22);
        if !(12..=20).contains(&log) || 1u32 << log != block_size {
            return Err(SquashfsError::BlockSize {
                size: block_size,
                log,
            });
        }
        let compressor = le16(b, 20);
        match compressor {
            1 | 4 | 5 | 6 => {}
            2 => return Err(SquashfsError::UnsupportedCompressor("lzma")),
            3 => return Err(SquashfsError::UnsupportedCompressor("lzo")),
            c => return Err(SquashfsError::UnknownCompressor(c)),
        }
        let (inode_count, id_count) = (le32(b, 4), le16(b, 26));
        if inode_count == 0 || id_count == 0 {
            return Err(SquashfsError::Counts(inode_count, id_count));
        }
        let bytes_used = le64(b, 40);
        if bytes_used > file_len {
            return Err(SquashfsError::Truncated {
                bytes_used,
                file_len,
            });
        }
        let tables = [
            ("id", le64(b, 48)),
            ("xattr", le64(b, 56)),
            ("inode", le64(b, 64)),
            ("directory", le64(b, 72)),
            ("fragment", le64(b, 80)),
            ("export", le64(b, 88)),
        ];
        for (table, at) in tables {
            let optional = matches!(table, "xattr" | "fragment" | "export");
            if optional && at == NONE {
                continue;
            }
            if at < SUPERBLOCK_BYTES as u64 || at >= bytes_used {
                return Err(SquashfsError::TableOutside {
                    table,
                    at,
                    bytes_used,
                });
            }
        }
        let (inode, dir) = (le64(b, 64), le64(b, 72));
        if inode >= dir {
            return Err(SquashfsError::TableOrder { inode, dir });
        }
        Ok(Superblock {
            inode_count,
            block_size,
            compressor,
            bytes_used,
            id_table: le64(b, 48),
            inode_table: inode,
            dir_table: dir,
        })
    }
}

/// Directory nesting accepted in a squashfs (backhand builds its tree recursively, one
/// stack frame per level; far deeper than any sysext, far shallower than a stack).
pub const MAX_DEPTH: usize = 512;

/// `(block_index, file_size, block_offset)` of a directory inode.
fn dir_location(inode: &backhand::Inode) -> Option<(u64, u32, usize)> {
    use backhand::v4::inode::InodeInner;
    match &inode.inner {
        InodeInner::BasicDirectory(d) => Some((
            d.block_index.into(),
            d.file_size.into(),
            d.block_offset.into(),
        )),
        InodeInner::ExtendedDirectory(d) => {
            Some((d.block_index.into(), d.file_size, d.block_offset.into()))
        }
        _ => None,
    }
}

/// Inode numbers of the subdirectories listed in the directory table bytes of one
/// directory, parsed as backhand parses them (headers of up to 256 entries; parsing
/// stops at the first malformed header or entry).
fn subdirs(bytes: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 12 <= bytes.len() {
        let count = le32(bytes, at) as usize;
        let base = le32(bytes, at + 8) as i64;
        if count > 256 {
            break;
        }
        at += 12;
        for _ in 0..=count {
            if at + 8 > bytes.len() {
                return out;
            }
            let delta = i16::from_le_bytes([bytes[at + 2], bytes[at + 3]]) as i64;
            let kind = le16(bytes, at + 4);
            let name_len = le16(bytes, at + 6) as usize + 1;
            if !(1..=14).contains(&kind) || at + 8 + name_len > bytes.len() {
                return out;
            }
            if kind == 1 || kind == 8 {
                if let Ok(n) = u32::try_from(base + delta) {
                    out.push(n);
                }
            }
            at += 8 + name_len;
        }
    }
    out
}

/// Walk the directory tree of `sq` iteratively (each directory once) and refuse one
/// nested deeper than [`MAX_DEPTH`], before backhand's recursive tree builder sees it.
pub fn check_depth(sq: &backhand::Squashfs<'_>) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![(&sq.root_inode, 0usize)];
    while let Some((inode, depth)) = stack.pop() {
        if !seen.insert(inode.header.inode_number) {
            continue;
        }
        if depth > MAX_DEPTH {
            return Err(format!("directories nest deeper than {MAX_DEPTH} levels"));
        }
        let Some((block, size, offset)) = dir_location(inode) else {
            continue;
        };
        if size < 4 {
            continue;
        }
        let Some(start) = sq.dir_blocks.0.get(&block) else {
            continue;
        };
        let Some(bytes) = usize::try_from(*start)
            .ok()
            .and_then(|s| sq.dir_blocks.1.get(s..))
            .and_then(|b| b.get(offset..))
            .and_then(|b| b.get(..size as usize - 3))
        else {
            continue;
        };
        for n in subdirs(bytes) {
            if let Some(child) = sq.inodes.get(&n) {
                stack.push((child, depth + 1));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[0..4].copy_from_slice(b"hsqs");
        b[4..8].copy_from_slice(&3u32.to_le_bytes());
        b[12..16].copy_from_slice(&131072u32.to_le_bytes());
        b[20..22].copy_from_slice(&1u16.to_le_bytes());
        b[22..24].copy_from_slice(&17u16.to_le_bytes());
        b[26..28].copy_from_slice(&1u16.to_le_bytes());
        b[28..30].copy_from_slice(&4u16.to_le_bytes());
        b[40..48].copy_from_slice(&4000u64.to_le_bytes());
        for (at, v) in [
            (48, 3900u64),
            (56, NONE),
            (64, 100),
            (72, 2000),
            (80, NONE),
            (88, NONE),
        ] {
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    fn set(mut b: Vec<u8>, at: usize, v: &[u8]) -> Vec<u8> {
        b[at..at + v.len()].copy_from_slice(v);
        b
    }

    #[test]
    fn judges_fields() {
        assert_eq!(
            Superblock::parse(&good(), 4096).map(|s| s.block_size),
            Ok(131072)
        );
        let e = |b: Vec<u8>, len: u64| Superblock::parse(&b, len).unwrap_err().to_string();
        assert!(e(good(), 50).contains("too short"));
        assert!(e(set(good(), 0, b"sqsh"), 4096).contains("magic"));
        assert!(e(set(good(), 28, &9u16.to_le_bytes()), 4096).contains("version 9.0"));
        assert!(e(set(good(), 12, &12345u32.to_le_bytes()), 4096)
            .contains("block size 12345 and block_log 17"));
        assert!(e(set(good(), 22, &40u16.to_le_bytes()), 4096).contains("block_log 40"));
        assert!(e(set(good(), 20, &99u16.to_le_bytes()), 4096).contains("unknown compressor id 99"));
        assert!(e(set(good(), 20, &3u16.to_le_bytes()), 4096).contains("lzo"));
        assert!(e(good(), 3000).contains(
            "truncated: the superblock says the filesystem is 4000 bytes, the file has 3000"
        ));
        assert!(e(set(good(), 64, &(1u64 << 40).to_le_bytes()), 4096)
            .contains("inode table at byte 1099511627776"));
        assert!(
            e(set(good(), 72, &50u64.to_le_bytes()), 4096).contains("directory table at byte 50")
        );
        assert!(e(set(good(), 72, &90u64.to_le_bytes()), 4096).contains("directory table"));
        assert!(e(set(good(), 64, &2500u64.to_le_bytes()), 4096).contains("does not precede"));
        assert!(e(set(good(), 4, &0u32.to_le_bytes()), 4096).contains("0 inodes"));
    }
}
