//! A minimal read-only EROFS reader: enough to look up a path and read an uncompressed
//! file (flat plain or flat inline layout), which is what sysext checks need.
//!
//! Layout facts from the kernel's `fs/erofs/erofs_fs.h`: superblock at byte 1024,
//! inodes at `meta_blkaddr * blksz + nid * 32`, compact (32-byte) or extended
//! (64-byte) inodes, directories as blocks of 12-byte dirents followed by names.
//!
//! The image is untrusted: nothing is allocated beyond the image's own length, and
//! [`Erofs::walk`] visits each directory once (a directory reached twice, by a cycle or
//! a shared entry, is refused), iteratively, with limits on depth, path length and
//! entry count.

use std::io::{self, Read, Seek, SeekFrom};

pub const MAGIC: u32 = 0xE0F5_E1E2;
const SB_OFFSET: u64 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ErofsError {
    #[error("not an EROFS image (bad superblock magic)")]
    BadMagic,
    #[error("corrupt EROFS image: {0}")]
    Corrupt(String),
    #[error("{0} is stored compressed; flatbake reads only uncompressed EROFS files")]
    Compressed(String),
    #[error("read error: {0}")]
    Io(#[from] io::Error),
}

/// An opened EROFS image.
pub struct Erofs<R> {
    r: R,
    blksz: u64,
    meta: u64,
    root_nid: u64,
    /// Length of the image in bytes.
    len: u64,
}

/// Directory depth [`Erofs::walk`] accepts (a sysext's deepest paths are far shallower).
pub const MAX_DEPTH: usize = 256;
/// Longest path [`Erofs::walk`] accepts (Linux's PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Entries [`Erofs::walk`] visits at most.
pub const MAX_ENTRIES: usize = 2_000_000;
/// Largest directory read (about a million names).
const MAX_DIR_BYTES: u64 = 32 << 20;

#[derive(Clone, Debug)]
pub struct Inode {
    pub nid: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    layout: u16,
    raw_blkaddr: u64,
    inline_at: u64,
}

impl Inode {
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }
    pub fn is_file(&self) -> bool {
        self.mode & 0o170000 == 0o100000
    }
    pub fn is_symlink(&self) -> bool {
        self.mode & 0o170000 == 0o120000
    }
}

/// One directory entry.
#[derive(Clone, Debug)]
pub struct Dirent {
    pub name: String,
    pub nid: u64,
}

fn u16le(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32le(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

impl<R: Read + Seek> Erofs<R> {
    pub fn open(mut r: R) -> Result<Self, ErofsError> {
        let mut sb = [0u8; 128];
        r.seek(SeekFrom::Start(SB_OFFSET))?;
        r.read_exact(&mut sb).map_err(|_| ErofsError::BadMagic)?;
        if u32le(&sb, 0) != MAGIC {
            return Err(ErofsError::BadMagic);
        }
        let len = r.seek(SeekFrom::End(0))?;
        let bits = sb[0x0C];
        if !(9..=16).contains(&bits) {
            return Err(ErofsError::Corrupt(format!("block size 2^{bits}")));
        }
        Ok(Erofs {
            r,
            blksz: 1 << bits,
            meta: u32le(&sb, 0x28) as u64,
            root_nid: u16le(&sb, 0x0E) as u64,
            len,
        })
    }

    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> Result<(), ErofsError> {
        if buf.is_empty() {
            return Ok(());
        }
        if off
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(ErofsError::Corrupt(format!(
                "{} bytes at {off} lie past the end of the image",
                buf.len()
            )));
        }
        self.r.seek(SeekFrom::Start(off))?;
        self.r
            .read_exact(buf)
            .map_err(|e| ErofsError::Corrupt(format!("read at {off}: {e}")))
    }

    pub fn inode(&mut self, nid: u64) -> Result<Inode, ErofsError> {
        // nids come from directory entries: any u64
        let at = nid
            .checked_mul(32)
            .and_then(|o| o.checked_add(self.meta * self.blksz))
            .ok_or_else(|| ErofsError::Corrupt(format!("inode number {nid} is out of range")))?;
        let mut b = [0u8; 64];
        self.read_at(at, &mut b[..32])?;
        let format = u16le(&b, 0);
        let extended = format & 1 == 1;
        let layout = (format >> 1) & 0x7;
        let xattr_icount = u16le(&b, 2) as u64;
        let mode = u16le(&b, 4) as u32;
        let (size, uid, gid, isize) = if extended {
            self.read_at(at, &mut b)?;
            let size = u64::from_le_bytes(b[8..16].try_into().unwrap_or([0; 8]));
            (size, u32le(&b, 24), u32le(&b, 28), 64)
        } else {
            (
                u32le(&b, 8) as u64,
                u16le(&b, 24) as u32,
                u16le(&b, 26) as u32,
                32,
            )
        };
        let xattr = if xattr_icount == 0 {
            0
        } else {
            12 + (xattr_icount - 1) * 4
        };
        Ok(Inode {
            nid,
            mode,
            uid,
            gid,
            size,
            layout,
            raw_blkaddr: u32le(&b, 16) as u64,
            inline_at: at.saturating_add(isize + xattr),
        })
    }

    /// The whole content of a file or directory inode, at most `limit` bytes.
    pub fn read(&mut self, ino: &Inode, what: &str, limit: u64) -> Result<Vec<u8>, ErofsError> {
        if ino.size > limit {
            return Err(ErofsError::Corrupt(format!(
                "{what} is {} bytes, over {limit}",
                ino.size
            )));
        }
        if matches!(ino.layout, 1 | 3) {
            // a compressed file may well be larger than the whole image
            return Err(ErofsError::Compressed(what.to_owned()));
        }
        if ino.size > self.len {
            return Err(ErofsError::Corrupt(format!(
                "{what} is {} bytes, more than the whole image",
                ino.size
            )));
        }
        let mut out = vec![0u8; ino.size as usize];
        match ino.layout {
            0 => {
                let at = ino.raw_blkaddr * self.blksz;
                self.read_at(at, &mut out)?;
            }
            2 => {
                let full = (ino.size / self.blksz) * self.blksz;
                let at = ino.raw_blkaddr * self.blksz;
                self.read_at(at, &mut out[..full as usize])?;
                let inline_at = ino.inline_at;
                self.read_at(inline_at, &mut out[full as usize..])?;
            }
            1 | 3 => return Err(ErofsError::Compressed(what.to_owned())),
            l => {
                return Err(ErofsError::Corrupt(format!(
                    "{what}: unsupported data layout {l}"
                )))
            }
        }
        Ok(out)
    }

    pub fn read_dir(&mut self, dir: &Inode, what: &str) -> Result<Vec<Dirent>, ErofsError> {
        let data = self.read(dir, what, MAX_DIR_BYTES)?;
        let mut out = Vec::new();
        for block in data.chunks(self.blksz as usize) {
            if block.len() < 12 {
                return Err(ErofsError::Corrupt(format!(
                    "{what}: short directory block"
                )));
            }
            let n = u16le(block, 8) as usize / 12;
            if n == 0 || n * 12 > block.len() {
                return Err(ErofsError::Corrupt(format!("{what}: bad directory block")));
            }
            for i in 0..n {
                let d = &block[i * 12..i * 12 + 12];
                let nid = u64::from_le_bytes(d[0..8].try_into().unwrap_or([0; 8]));
                let start = u16le(d, 8) as usize;
                let end = if i + 1 < n {
                    u16le(block, (i + 1) * 12 + 8) as usize
                } else {
                    block.len()
                };
                if start > end || end > block.len() {
                    return Err(ErofsError::Corrupt(format!("{what}: bad name offsets")));
                }
                let raw = &block[start..end];
                let raw = match raw.iter().position(|&c| c == 0) {
                    Some(z) => &raw[..z],
                    None => raw,
                };
                out.push(Dirent {
                    name: String::from_utf8_lossy(raw).into_owned(),
                    nid,
                });
            }
        }
        Ok(out)
    }

    /// Call `f(path, inode)` for the root (`/`) and every entry below it, each directory
    /// read once. Errors on a directory reached twice, and beyond [`MAX_DEPTH`],
    /// [`MAX_PATH`] or [`MAX_ENTRIES`].
    pub fn walk(&mut self, mut f: impl FnMut(&str, &Inode)) -> Result<(), ErofsError> {
        let root = self.inode(self.root_nid)?;
        f("/", &root);
        let mut seen = std::collections::HashSet::from([root.nid]);
        let mut count = 1usize;
        let mut stack = vec![(String::new(), root, 0usize)];
        while let Some((dir_path, dir, depth)) = stack.pop() {
            let shown = if dir_path.is_empty() { "/" } else { &dir_path };
            for d in self.read_dir(&dir, shown)? {
                if d.name == "." || d.name == ".." {
                    continue;
                }
                if d.name.is_empty() || d.name.contains('/') {
                    return Err(ErofsError::Corrupt(format!(
                        "{shown}: bad entry name {:?}",
                        d.name
                    )));
                }
                let p = format!("{dir_path}/{}", d.name);
                if p.len() > MAX_PATH {
                    return Err(ErofsError::Corrupt(format!(
                        "a path is longer than {MAX_PATH} bytes: {}...",
                        p.chars().take(64).collect::<String>()
                    )));
                }
                count += 1;
                if count > MAX_ENTRIES {
                    return Err(ErofsError::Corrupt(format!(
                        "more than {MAX_ENTRIES} entries"
                    )));
                }
                let ino = self.inode(d.nid)?;
                f(&p, &ino);
                if ino.is_dir() {
                    if !seen.insert(ino.nid) {
                        return Err(ErofsError::Corrupt(format!(
                            "directory {p} is reached twice (a directory cycle)"
                        )));
                    }
                    if depth + 1 > MAX_DEPTH {
                        return Err(ErofsError::Corrupt(format!(
                            "directories nest deeper than {MAX_DEPTH} levels"
                        )));
                    }
                    stack.push((p, ino, depth + 1));
                }
            }
        }
        Ok(())
    }

    /// Look up an absolute path (no symlinks followed).
    pub fn lookup(&mut self, path: &str) -> Result<Option<Inode>, ErofsError> {
        let mut cur = self.inode(self.root_nid)?;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            if !cur.is_dir() {
                return Ok(None);
            }
            let entries = self.read_dir(&cur, path)?;
            match entries.into_iter().find(|e| e.name == comp) {
                Some(e) => cur = self.inode(e.nid)?,
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Found by `scripts/fuzz.sh` (erofs target): a directory entry with a huge nid
    /// overflowed the inode offset computation (a panic with overflow checks).
    #[test]
    fn huge_inode_number_is_an_error() {
        let crash = include_bytes!("../../fixtures/fuzz/erofs-nid-overflow.bin");
        let mut e = Erofs::open(std::io::Cursor::new(&crash[..])).unwrap();
        assert!(e.lookup("/usr/lib/extension-release.d").is_err());
        let e = e.inode(u64::MAX).unwrap_err().to_string();
        assert!(
            e.contains("inode number 18446744073709551615 is out of range"),
            "{e}"
        );
    }

    #[test]
    fn reads_mkfs_erofs_output() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("usr/lib/extension-release.d")).unwrap();
        std::fs::write(
            root.join("usr/lib/extension-release.d/extension-release.x"),
            "ID=_any\n",
        )
        .unwrap();
        let big: Vec<u8> = (0..10000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(root.join("usr/big"), &big).unwrap();
        let img = dir.path().join("x.raw");
        let st = Command::new("mkfs.erofs")
            .arg("--quiet")
            .arg(&img)
            .arg(&root)
            .status()
            .unwrap();
        assert!(st.success());
        let mut e = Erofs::open(std::fs::File::open(&img).unwrap()).unwrap();
        let ino = e
            .lookup("/usr/lib/extension-release.d/extension-release.x")
            .unwrap()
            .unwrap();
        assert_eq!(e.read(&ino, "x", 1 << 20).unwrap(), b"ID=_any\n");
        let ino = e.lookup("/usr/big").unwrap().unwrap();
        assert_eq!(e.read(&ino, "big", 1 << 20).unwrap(), big);
        assert!(e.lookup("/usr/nope").unwrap().is_none());
        let d = e.lookup("/usr/lib/extension-release.d").unwrap().unwrap();
        let names: Vec<String> = e
            .read_dir(&d, "d")
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert!(names.contains(&"extension-release.x".to_owned()));
    }
}
