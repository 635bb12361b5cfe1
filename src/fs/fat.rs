//! The ESP's FAT filesystem, read in-process with `fatfs` (the kernel here does not
//! even mount vfat): the image's architecture from its UEFI boot loader's name, and the
//! first-boot flag. fatfs follows cluster chains without bound (a chain that loops back
//! on itself would be walked forever), so every lookup reads through a [`Budget`]: after
//! a fixed number of bytes or reads the reader fails, fatfs stops with an error, and the
//! lookup reports "cannot tell". A real ESP lookup needs a few KiB.

use crate::arch::Arch;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Bytes one lookup may read from the ESP (directories of a real ESP are a few KiB).
pub const BYTE_BUDGET: u64 = 8 << 20;
/// Read calls one lookup may make (fatfs reads FAT entries a few bytes at a time).
pub const READ_BUDGET: u64 = 1 << 18;

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

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.reads == 0 || self.bytes == 0 {
            return Err(io::Error::other(
                "ESP lookup read too much (a FAT cluster chain loops?)",
            ));
        }
        self.reads -= 1;
        let n = (buf.len() as u64).min(self.bytes) as usize;
        let got = self.inner.read(&mut buf[..n])?;
        self.bytes -= got as u64;
        Ok(got)
    }
}

impl<R: Seek> Seek for Budget<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

impl<R: Write> Write for Budget<R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The filesystem in `bytes` of any reader (used by the fuzz targets too).
pub fn open<R: Read + Write + Seek>(r: R) -> Option<fatfs::FileSystem<Budget<R>>> {
    fatfs::FileSystem::new(Budget::new(r), fatfs::FsOptions::new()).ok()
}

/// The architecture named by a FAT filesystem's `/EFI/boot/boot<arch>.efi`.
pub fn arch_of<R: Read + Write + Seek>(r: R) -> Option<Arch> {
    let fs = open(r)?;
    let dir = fs.root_dir().open_dir("EFI/boot").ok()?;
    for entry in dir.iter() {
        match entry.ok()?.file_name().to_ascii_lowercase().as_str() {
            "bootx64.efi" => return Some(Arch::X86_64),
            "bootaa64.efi" => return Some(Arch::Arm64),
            _ => {}
        }
    }
    None
}

/// Whether a FAT filesystem holds `/flatcar/first_boot`; `None` when it cannot be read.
pub fn first_boot_in<R: Read + Write + Seek>(r: R) -> Option<bool> {
    let fs = open(r)?;
    let dir = match fs.root_dir().open_dir("flatcar") {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    for entry in dir.iter() {
        if entry.ok()?.file_name().eq_ignore_ascii_case("first_boot") {
            return Some(true);
        }
    }
    Some(false)
}
