//! Where a disk image's bytes come from when flatbake only reads it: a raw file, or a
//! qcow2 file (v2/v3, zlib-compressed clusters included, no backing files) decoded
//! on the fly. Used by `inspect`, so vendor outputs can be inspected as they are.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Random-access reads of a virtual disk.
pub trait DiskSource: Send {
    /// Virtual size in bytes.
    fn len(&self) -> u64;
    /// Whether the virtual disk has no bytes at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fill `buf` from virtual offset `off` (zeros past the end are an error).
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Name of the container format (`raw`, `qcow2`).
    fn format(&self) -> &'static str;
    /// Whether `off..off+len` may hold data (false: certainly zeros).
    fn may_have_data(&mut self, _off: u64, _len: u64) -> io::Result<bool> {
        Ok(true)
    }
}

pub struct Raw {
    file: File,
    len: u64,
}

impl DiskSource for Raw {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&mut self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, off)
    }
    fn format(&self) -> &'static str {
        "raw"
    }
    fn may_have_data(&mut self, off: u64, len: u64) -> io::Result<bool> {
        Ok(!super::sparse::data_extents(&self.file, off, off + len)?.is_empty())
    }
}

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

impl DiskSource for Qcow2 {
    fn len(&self) -> u64 {
        self.size
    }
    fn read_at(&mut self, mut off: u64, mut buf: &mut [u8]) -> io::Result<()> {
        if off
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.size)
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of the virtual disk",
            ));
        }
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
    fn format(&self) -> &'static str {
        "qcow2"
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

/// Open a disk image, raw or qcow2 (by its magic).
pub fn open(path: &Path) -> io::Result<Box<dyn DiskSource>> {
    let file = crate::input::open_regular(path)?;
    let len = file.metadata()?.len();
    let mut magic = [0u8; 4];
    if len >= 4 {
        file.read_exact_at(&mut magic, 0)?;
    }
    if &magic == b"QFI\xfb" {
        Ok(Box::new(Qcow2::open(file)?))
    } else {
        Ok(Box::new(Raw { file, len }))
    }
}

/// Copy `len` bytes at `off` of `src` into a new sparse file at `dst`, skipping zeros.
pub fn extract(src: &mut dyn DiskSource, off: u64, len: u64, dst: &Path) -> io::Result<()> {
    let out = File::create(dst)?;
    out.set_len(len)?;
    let chunk = 1u64 << 20;
    let mut buf = vec![0u8; chunk as usize];
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(chunk);
        if src.may_have_data(off + pos, n)? {
            src.read_at(off + pos, &mut buf[..n as usize])?;
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

/// A window of a [`DiskSource`] as `Read + Seek` (+ a failing `Write`), for in-process readers.
pub struct SourceRegion<'a> {
    pub src: &'a mut dyn DiskSource,
    pub offset: u64,
    pub len: u64,
    pub pos: u64,
}

impl Read for SourceRegion<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.len - self.pos) as usize;
        self.src.read_at(self.offset + self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl io::Seek for SourceRegion<'_> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        let new = match pos {
            io::SeekFrom::Start(p) => Some(p),
            io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos =
            new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        Ok(self.pos)
    }
}

impl io::Write for SourceRegion<'_> {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(io::ErrorKind::PermissionDenied, "read-only"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
                let mut src = open(&q).unwrap();
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
        let e = open(&q).err().unwrap().to_string();
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
        let e = open(&q).err().unwrap().to_string();
        assert!(
            e.contains("qcow2 data cluster at byte") && e.contains("lies past the end of the file"),
            "{e}"
        );
    }
}
