//! A byte range of a disk image (one partition) seen as a file of its own, for the
//! in-process readers (ext4-view, fs::fat, backhand) that want `Read + Seek`.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

/// `len` bytes of `file` starting at `offset`. Reads past the end are EOF; writes fail
/// (flatbake never writes a filesystem through an in-process library).
pub struct Region<'f> {
    file: &'f File,
    offset: u64,
    len: u64,
    pos: u64,
}

impl<'f> Region<'f> {
    pub fn new(file: &'f File, offset: u64, len: u64) -> Self {
        Region {
            file,
            offset,
            len,
            pos: 0,
        }
    }
}

impl Read for Region<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.len - self.pos) as usize;
        let got = self.file.read_at(&mut buf[..n], self.offset + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Seek for Region<'_> {
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

impl Write for Region<'_> {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "partition opened read-only",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Owned variant for ext4-view, which takes a boxed reader.
pub struct OwnedRegion {
    pub file: File,
    pub offset: u64,
    pub len: u64,
}

impl ext4_view::Ext4Read for OwnedRegion {
    fn read(
        &mut self,
        start: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        let end = start
            .checked_add(dst.len() as u64)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past the end of the partition",
                )
            })?;
        let _ = end;
        self.file.read_exact_at(dst, self.offset + start)?;
        Ok(())
    }
}
