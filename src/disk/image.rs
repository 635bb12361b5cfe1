//! The one reader of disk images: a raw file, or a qcow2 file (v2/v3, zlib-compressed
//! clusters included, no backing files) decoded on the fly through its cluster map
//! (`disk::qcow2map`, the one qcow2 parser, which the fast path uses too) ([`Disk`]), and one
//! partition of it seen as a file of its own ([`Window`]) for the in-process readers
//! (ext4-view, fs::fat, the btrfs reader). Everything that reads an image (bake's facts,
//! `inspect`, a fetched image's identity, `sysext check --target`) reads through here;
//! flatbake never writes through it.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::qcow2map::{Host, MapError, Qcow2Map};

/// A qcow2 image read through its cluster map ([`Qcow2Map`], flatbake's one qcow2
/// parser): the map is read and bound-checked when opened, so a truncated or hostile
/// file is refused then, not halfway through reading it.
pub struct Qcow2 {
    file: File,
    map: Qcow2Map,
    /// The last compressed cluster inflated (guest index, its bytes), so sequential
    /// small reads inflate each cluster once.
    cluster_cache: Option<(u64, Vec<u8>)>,
    scratch: Vec<u8>,
}

/// The map's problem as an I/O error (the caller names the file).
fn map_err(e: MapError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.problem)
}

impl Qcow2 {
    pub fn open(file: File) -> io::Result<Qcow2> {
        let map = Qcow2Map::read(&file, Path::new("")).map_err(map_err)?;
        Ok(Qcow2 {
            file,
            map,
            cluster_cache: None,
            scratch: Vec::new(),
        })
    }

    /// Fill `buf` from virtual offset `off`, all inside one cluster.
    fn read_cluster_part(&mut self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let bits = self.map.cluster_bits;
        let guest = off >> bits;
        let within = (off & ((1u64 << bits) - 1)) as usize;
        match self.map.host_of(guest) {
            None => buf.fill(0),
            Some(Host::Plain(host)) => self.file.read_exact_at(buf, host + within as u64)?,
            Some(host @ Host::Compressed { .. }) => {
                if !matches!(&self.cluster_cache, Some((g, _)) if *g == guest) {
                    let mut out = self.cluster_cache.take().map(|c| c.1).unwrap_or_default();
                    self.map
                        .read_cluster(&self.file, guest, host, &mut self.scratch, &mut out)
                        .map_err(map_err)?;
                    self.cluster_cache = Some((guest, out));
                }
                let data = self.cluster_cache.as_ref().map_or(&[][..], |c| &c.1[..]);
                let part = data.get(within..within + buf.len()).ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "read past the end of the virtual disk",
                    )
                })?;
                buf.copy_from_slice(part);
            }
        }
        Ok(())
    }

    fn read_at(&mut self, mut off: u64, mut buf: &mut [u8]) -> io::Result<()> {
        let cl = self.map.cluster_size();
        while !buf.is_empty() {
            let n = ((cl - (off & (cl - 1))) as usize).min(buf.len());
            let (head, rest) = buf.split_at_mut(n);
            self.read_cluster_part(off, head)?;
            buf = rest;
            off += n as u64;
        }
        Ok(())
    }

    fn may_have_data(&self, off: u64, len: u64) -> bool {
        let bits = self.map.cluster_bits;
        let end = off.saturating_add(len).div_ceil(1 << bits);
        self.map.any_mapped(off >> bits, end)
    }
}

enum Container {
    Raw(File),
    /// The decoder keeps a cluster cache, so reads through `&Disk` lock it.
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
            let len = q.map.virtual_size;
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
            Container::Qcow2(q) => Ok(lock(q).may_have_data(off, len)),
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

    /// What qemu-img makes of the qcow2 at `q`, as raw bytes.
    fn qemu_raw(q: &Path) -> Vec<u8> {
        let raw = q.with_extension("raw");
        assert!(Command::new("qemu-img")
            .args(["convert", "-f", "qcow2", "-O", "raw"])
            .arg(q)
            .arg(&raw)
            .status()
            .unwrap()
            .success());
        std::fs::read(&raw).unwrap()
    }

    fn read_all(q: &Path) -> Vec<u8> {
        let src = Disk::open(q).unwrap();
        let mut got = vec![0u8; src.len() as usize];
        src.read_at(0, &mut got).unwrap();
        got
    }

    #[test]
    fn reads_dirty_and_shrunk_qcow2_like_qemu() {
        let d = tempfile::tempdir().unwrap();
        let q = d.path().join("s.qcow2");
        let run = |args: &[&str]| {
            assert!(Command::new(args[0])
                .args(&args[1..])
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap()
                .success())
        };
        let qs = q.to_str().unwrap();
        // 512-byte clusters: one L2 table maps 32 KiB, so 8 MiB needs 256 L1 entries
        run(&[
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=512",
            qs,
            "8M",
        ]);
        run(&["qemu-io", "-c", "write -P 7 0 8M", qs]);
        let unshrunk = std::fs::read(&q).unwrap();
        // shrinking keeps the L1 table's size (256 entries for the 32 needed)
        run(&["qemu-img", "resize", "-q", "--shrink", qs, "1M"]);
        let h = std::fs::read(&q).unwrap();
        assert_eq!(u32::from_be_bytes(h[36..40].try_into().unwrap()), 256);
        let want = qemu_raw(&q);
        assert_eq!(want.len(), 1 << 20);
        assert!(read_all(&q) == want, "shrunk qcow2 differs from qemu-img's");
        // the dirty bit (incompatible feature bit 0) changes nothing for reading
        let mut dirty = h.clone();
        dirty[79] |= 1;
        std::fs::write(&q, &dirty).unwrap();
        assert!(read_all(&q) == want, "dirty qcow2 differs");
        // the corrupt bit (1) is refused
        dirty[79] |= 2;
        std::fs::write(&q, &dirty).unwrap();
        let e = Disk::open(&q).err().unwrap().to_string();
        assert!(e.contains("incompatible features 0x2"), "{e}");
        // the unshrunk tables under a 1 MiB header: entries past the virtual size map data
        let mut big = unshrunk;
        big[24..32].copy_from_slice(&(1u64 << 20).to_be_bytes());
        std::fs::write(&q, &big).unwrap();
        let e = Disk::open(&q).err().unwrap().to_string();
        assert!(e.contains("beyond the virtual size"), "{e}");
    }
}
