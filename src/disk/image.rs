//! The one reader of disk images: a raw file, or a qcow2 file (v2/v3, zlib-compressed
//! clusters included, no backing files) decoded on the fly ([`Disk`]), and one
//! partition of it seen as a file of its own ([`Window`]) for the in-process readers
//! (ext4-view, fs::fat, the btrfs reader). Everything that reads an image (bake's facts,
//! `inspect`, a fetched image's identity, `sysext check --target`) reads through here;
//! flatbake never writes through it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn past_end(what: &str, at: u64, file_len: u64) -> io::Error {
    bad(format!(
        "qcow2 {what} at byte {at:#x} lies past the end of the file ({file_len} bytes; truncated?)"
    ))
}

fn be64(b: &[u8], o: usize) -> u64 {
    u64::from_be_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]))
}
fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]))
}

/// A qcow2 image read through its L1/L2 tables.
pub struct Qcow2 {
    file: File,
    file_len: u64,
    size: u64,
    cluster_bits: u32,
    l1: Vec<u64>,
    l2_cache: HashMap<u64, Vec<u64>>,
    cluster_cache: Option<(u64, Vec<u8>)>,
}

const L2_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;

impl Qcow2 {
    pub fn open(file: File) -> io::Result<Qcow2> {
        let file_len = file.metadata()?.len();
        let mut h = [0u8; 112];
        let n = file.read_at(&mut h, 0)?;
        if n < 72 || &h[..4] != b"QFI\xfb" {
            return Err(bad("not a qcow2 image"));
        }
        let version = be32(&h, 4);
        if !(2..=3).contains(&version) {
            return Err(bad(format!("qcow2 version {version} is not supported")));
        }
        if be64(&h, 8) != 0 {
            return Err(bad("qcow2 images with a backing file are not supported"));
        }
        let cluster_bits = be32(&h, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(bad(format!(
                "qcow2 cluster_bits {cluster_bits} out of range"
            )));
        }
        let size = be64(&h, 24);
        if be32(&h, 32) != 0 {
            return Err(bad("encrypted qcow2 images are not supported"));
        }
        if version == 3 {
            let incompat = be64(&h, 72);
            // bit 0 dirty, bit 1 corrupt, bit 2 external data, bit 3 compression type, bit 4 extended L2
            if incompat & !0b1 != 0 {
                return Err(bad(format!(
                    "qcow2 incompatible features {incompat:#x} are not supported"
                )));
            }
        }
        let l1_size = be32(&h, 36) as u64;
        let l1_off = be64(&h, 40);
        let cluster = 1u64 << cluster_bits;
        let needed = size.div_ceil(cluster).div_ceil(cluster / 8);
        if l1_size < needed || l1_size > 1 << 26 {
            return Err(bad("qcow2 L1 table out of range"));
        }
        if l1_off.checked_add(l1_size * 8).is_none_or(|e| e > file_len) {
            return Err(past_end("L1 table", l1_off, file_len));
        }
        let mut raw = vec![0u8; (l1_size * 8) as usize];
        file.read_exact_at(&mut raw, l1_off)?;
        let l1 = raw.chunks_exact(8).map(|c| be64(c, 0)).collect();
        let q = Qcow2 {
            file,
            file_len,
            size,
            cluster_bits,
            l1,
            l2_cache: HashMap::new(),
            cluster_cache: None,
        };
        q.check_tables()?;
        Ok(q)
    }

    /// Every L2 table and every cluster they map must lie inside the file: a truncated
    /// qcow2 is refused when opened, not halfway through reading it.
    fn check_tables(&self) -> io::Result<()> {
        let cl = 1u64 << self.cluster_bits;
        let mut raw = vec![0u8; cl as usize];
        for &e in &self.l1 {
            let l2_off = e & L2_OFFSET_MASK;
            if l2_off == 0 {
                continue;
            }
            if l2_off.checked_add(cl).is_none_or(|end| end > self.file_len) {
                return Err(past_end("L2 table", l2_off, self.file_len));
            }
            self.file.read_exact_at(&mut raw, l2_off)?;
            for c in raw.chunks_exact(8) {
                let entry = be64(c, 0);
                if entry & (1 << 62) != 0 {
                    let x = 62 - (self.cluster_bits - 8);
                    let host = entry & ((1u64 << x) - 1);
                    if host >= self.file_len {
                        return Err(past_end("compressed cluster", host, self.file_len));
                    }
                    continue;
                }
                let host = entry & L2_OFFSET_MASK;
                if host != 0
                    && entry & 1 == 0
                    && host.checked_add(cl).is_none_or(|end| end > self.file_len)
                {
                    return Err(past_end("data cluster", host, self.file_len));
                }
            }
        }
        Ok(())
    }

    /// The L2 entry for the cluster holding virtual offset `off` (0: unallocated).
    fn l2_entry(&mut self, off: u64) -> io::Result<u64> {
        let l2_bits = self.cluster_bits - 3;
        let l1_index = (off >> (self.cluster_bits + l2_bits)) as usize;
        let l2_off = self.l1.get(l1_index).copied().unwrap_or(0) & L2_OFFSET_MASK;
        if l2_off == 0 {
            return Ok(0);
        }
        if !self.l2_cache.contains_key(&l2_off) {
            if self.l2_cache.len() > 256 {
                self.l2_cache.clear();
            }
            let cl = 1usize << self.cluster_bits;
            if l2_off + cl as u64 > self.file_len {
                return Err(bad("qcow2 L2 table past the end of the file"));
            }
            let mut raw = vec![0u8; cl];
            self.file.read_exact_at(&mut raw, l2_off)?;
            self.l2_cache
                .insert(l2_off, raw.chunks_exact(8).map(|c| be64(c, 0)).collect());
        }
        let idx = ((off >> self.cluster_bits) & ((1 << l2_bits) - 1)) as usize;
        Ok(self
            .l2_cache
            .get(&l2_off)
            .and_then(|t| t.get(idx).copied())
            .unwrap_or(0))
    }

    fn read_cluster_part(&mut self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let cl = 1u64 << self.cluster_bits;
        let within = off & (cl - 1);
        let entry = self.l2_entry(off)?;
        if entry & (1 << 62) != 0 {
            let x = 62 - (self.cluster_bits - 8);
            let host = entry & ((1u64 << x) - 1);
            let sectors = ((entry >> x) & ((1u64 << (self.cluster_bits - 8)) - 1)) + 1;
            let cluster_index = off >> self.cluster_bits;
            let hit = matches!(&self.cluster_cache, Some((i, _)) if *i == cluster_index);
            if !hit {
                let clen = (sectors * 512 - (host & 511)).min(self.file_len.saturating_sub(host));
                let mut comp = vec![0u8; clen as usize];
                self.file.read_exact_at(&mut comp, host)?;
                let mut out = vec![0u8; cl as usize];
                let mut dec = flate2::read::DeflateDecoder::new(&comp[..]);
                let mut got = 0;
                while got < out.len() {
                    let n = dec.read(&mut out[got..])?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                if got != out.len() {
                    return Err(bad(format!(
                        "qcow2 compressed cluster at {host:#x} decodes to {got} bytes"
                    )));
                }
                self.cluster_cache = Some((cluster_index, out));
            }
            if let Some((_, data)) = &self.cluster_cache {
                buf.copy_from_slice(&data[within as usize..within as usize + buf.len()]);
            }
            return Ok(());
        }
        let host = entry & L2_OFFSET_MASK;
        if host == 0 || entry & 1 != 0 {
            buf.fill(0);
            return Ok(());
        }
        self.file.read_exact_at(buf, host + within)
    }
}

impl Qcow2 {
    fn read_at(&mut self, mut off: u64, mut buf: &mut [u8]) -> io::Result<()> {
        let cl = 1u64 << self.cluster_bits;
        while !buf.is_empty() {
            let n = ((cl - (off & (cl - 1))) as usize).min(buf.len());
            let (head, rest) = buf.split_at_mut(n);
            self.read_cluster_part(off, head)?;
            buf = rest;
            off += n as u64;
        }
        Ok(())
    }

    fn may_have_data(&mut self, off: u64, len: u64) -> io::Result<bool> {
        let cl = 1u64 << self.cluster_bits;
        let mut c = off & !(cl - 1);
        while c < off + len {
            let e = self.l2_entry(c)?;
            if e & (1 << 62) != 0 || (e & L2_OFFSET_MASK != 0 && e & 1 == 0) {
                return Ok(true);
            }
            c += cl;
        }
        Ok(false)
    }
}

enum Container {
    Raw(File),
    /// The decoder keeps table and cluster caches, so reads through `&Disk` lock it.
    Qcow2(Mutex<Qcow2>),
}

/// A disk image opened read-only, raw or qcow2 (told by its magic).
pub struct Disk {
    container: Container,
    len: u64,
}

impl Disk {
    /// Open the image at `path` (a regular file; see [`crate::input::open_regular`]).
    pub fn open(path: &Path) -> io::Result<Disk> {
        Disk::from_file(crate::input::open_regular(path)?)
    }

    /// The file at `path` as a raw image, whatever it holds (a qcow2 file is then refused
    /// by the GPT reader, saying so: for readers that edit raw images).
    pub fn open_raw(path: &Path) -> io::Result<Disk> {
        let file = crate::input::open_regular(path)?;
        let len = file.metadata()?.len();
        Ok(Disk {
            container: Container::Raw(file),
            len,
        })
    }

    /// The image in an already open file.
    pub fn from_file(file: File) -> io::Result<Disk> {
        let len = file.metadata()?.len();
        let mut magic = [0u8; 4];
        if len >= 4 {
            file.read_exact_at(&mut magic, 0)?;
        }
        if &magic == b"QFI\xfb" {
            let q = Qcow2::open(file)?;
            let len = q.size;
            return Ok(Disk {
                container: Container::Qcow2(Mutex::new(q)),
                len,
            });
        }
        Ok(Disk {
            container: Container::Raw(file),
            len,
        })
    }

    /// Virtual size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the virtual disk has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Name of the container format (`raw`, `qcow2`).
    pub fn format(&self) -> &'static str {
        match self.container {
            Container::Raw(_) => "raw",
            Container::Qcow2(_) => "qcow2",
        }
    }

    /// The file of a raw image (the one flatbake can copy and edit); `None` for qcow2.
    pub fn raw_file(&self) -> Option<&File> {
        match &self.container {
            Container::Raw(f) => Some(f),
            Container::Qcow2(_) => None,
        }
    }

    /// Fill `buf` from virtual offset `off` (reading past the end is an error).
    pub fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        within(
            off,
            buf.len(),
            self.len,
            "read past the end of the virtual disk",
        )?;
        match &self.container {
            Container::Raw(f) => f.read_exact_at(buf, off),
            Container::Qcow2(q) => lock(q).read_at(off, buf),
        }
    }

    /// Whether `off..off+len` may hold data (false: certainly zeros).
    pub fn may_have_data(&self, off: u64, len: u64) -> io::Result<bool> {
        match &self.container {
            Container::Raw(f) => Ok(!super::sparse::data_extents(f, off, off + len)?.is_empty()),
            Container::Qcow2(q) => lock(q).may_have_data(off, len),
        }
    }

    /// Copy `len` bytes at `off` into a new sparse file at `dst`, skipping zeros.
    pub fn extract(&self, off: u64, len: u64, dst: &Path) -> io::Result<()> {
        let out = File::create(dst)?;
        out.set_len(len)?;
        let chunk = 1u64 << 20;
        let mut buf = vec![0u8; chunk as usize];
        let mut pos = 0;
        while pos < len {
            let n = (len - pos).min(chunk);
            if self.may_have_data(off + pos, n)? {
                self.read_at(off + pos, &mut buf[..n as usize])?;
                for (i, block) in buf[..n as usize].chunks(4096).enumerate() {
                    if block.iter().any(|&b| b != 0) {
                        out.write_all_at(block, pos + (i * 4096) as u64)?;
                    }
                }
            }
            pos += n;
        }
        Ok(())
    }
}

/// `len` bytes at `off` lie inside `limit` bytes; else an EOF error saying `what`.
fn within(off: u64, len: usize, limit: u64, what: &str) -> io::Result<()> {
    if off.checked_add(len as u64).is_none_or(|e| e > limit) {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            what.to_owned(),
        ));
    }
    Ok(())
}

fn lock(q: &Mutex<Qcow2>) -> std::sync::MutexGuard<'_, Qcow2> {
    q.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Positioned reads (and, for files, writes) of a device: a [`Disk`] or a plain file.
/// The btrfs reader works over this, so it reads qcow2 images and edits raw files alike.
pub trait Dev {
    fn pread(&self, buf: &mut [u8], off: u64) -> io::Result<()>;
    fn pwrite(&self, buf: &[u8], off: u64) -> io::Result<()>;
}

impl Dev for File {
    fn pread(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.read_exact_at(buf, off)
    }
    fn pwrite(&self, buf: &[u8], off: u64) -> io::Result<()> {
        self.write_all_at(buf, off)
    }
}

impl Dev for Disk {
    fn pread(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.read_at(off, buf)
    }
    fn pwrite(&self, _: &[u8], _: u64) -> io::Result<()> {
        Err(read_only())
    }
}

fn read_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "partition opened read-only",
    )
}

/// `len` bytes of a [`Disk`] from `offset` (one partition) as a file of its own: `Read +
/// Seek` (+ a failing `Write`) for fs::fat, `Ext4Read` for ext4-view. Reads past its end
/// are EOF, so no reader strays into a neighbouring partition.
#[derive(Clone)]
pub struct Window {
    disk: Arc<Disk>,
    offset: u64,
    len: u64,
    pos: u64,
}

impl Window {
    pub fn new(disk: Arc<Disk>, offset: u64, len: u64) -> Window {
        Window {
            disk,
            offset,
            len,
            pos: 0,
        }
    }

    /// Partition `p` of `disk`.
    pub fn of(disk: &Arc<Disk>, p: &super::gpt::Partition) -> Window {
        Window::new(disk.clone(), p.offset(), p.size())
    }

    /// The partition's size.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the partition is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fill `buf` from `off` into the partition (past its end is an error).
    pub fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        within(
            off,
            buf.len(),
            self.len,
            "read past the end of the partition",
        )?;
        self.disk.read_at(self.offset + off, buf)
    }
}

impl Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.len - self.pos) as usize;
        self.disk.read_at(self.offset + self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Window {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos =
            new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        Ok(self.pos)
    }
}

impl Write for Window {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(read_only())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ext4_view::Ext4Read for Window {
    fn read(
        &mut self,
        start: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(self.read_at(start, dst)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn qcow2_reads_like_raw() {
        let d = tempfile::tempdir().unwrap();
        let raw = d.path().join("a.raw");
        let f = File::create(&raw).unwrap();
        f.set_len(8 << 20).unwrap();
        let pattern: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        f.write_all_at(&pattern, 70_000).unwrap();
        f.write_all_at(&pattern, 5 << 20).unwrap();
        drop(f);
        let want = std::fs::read(&raw).unwrap();
        for compress in [false, true] {
            for compat in ["0.10", "1.1"] {
                let q = d.path().join(format!("a-{compress}-{compat}.qcow2"));
                let mut c = Command::new("qemu-img");
                c.args(["convert", "-f", "raw", "-O", "qcow2", "-o"])
                    .arg(format!("compat={compat}"));
                if compress {
                    c.arg("-c");
                }
                assert!(c.arg(&raw).arg(&q).status().unwrap().success());
                let src = Disk::open(&q).unwrap();
                assert_eq!(src.format(), "qcow2");
                assert_eq!(src.len(), 8 << 20);
                let mut got = vec![0u8; want.len()];
                // odd-sized reads across cluster boundaries
                let mut pos = 0;
                while pos < got.len() {
                    let n = (got.len() - pos).min(77_777);
                    src.read_at(pos as u64, &mut got[pos..pos + n]).unwrap();
                    pos += n;
                }
                assert!(
                    got == want,
                    "qcow2 (compressed={compress}, compat={compat}) differs from raw"
                );
                assert!(!src.may_have_data(7 << 20, 1 << 20).unwrap());
            }
        }
    }

    #[test]
    fn rejects_bad_qcow2() {
        let d = tempfile::tempdir().unwrap();
        let q = d.path().join("bad.qcow2");
        let mut h = vec![0u8; 4096];
        h[..4].copy_from_slice(b"QFI\xfb");
        h[7] = 2;
        h[23] = 16;
        h[24..32].copy_from_slice(&(1u64 << 40).to_be_bytes());
        std::fs::write(&q, &h).unwrap();
        let e = Disk::open(&q).err().unwrap().to_string();
        assert!(e.contains("L1 table out of range"), "{e}");
        // truncated: the last data cluster is missing
        let raw = d.path().join("a.raw");
        std::fs::write(&raw, vec![7u8; 1 << 20]).unwrap();
        let q = d.path().join("t.qcow2");
        assert!(Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&q)
            .status()
            .unwrap()
            .success());
        let len = std::fs::metadata(&q).unwrap().len();
        File::options()
            .write(true)
            .open(&q)
            .unwrap()
            .set_len(len - 4096)
            .unwrap();
        let e = Disk::open(&q).err().unwrap().to_string();
        assert!(
            e.contains("qcow2 data cluster at byte") && e.contains("lies past the end of the file"),
            "{e}"
        );
    }
}
