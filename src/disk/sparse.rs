//! Hole-aware copying: Flatcar images are ~8 GiB of mostly holes, so every copy walks
//! the source's data extents (`SEEK_DATA`/`SEEK_HOLE`) and never reads or writes the
//! zeros in between.

use rustix::fs::{FallocateFlags, SeekFrom};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Data extents of `file` within `[start, end)`, as `(offset, len)` pairs.
pub fn data_extents(file: &File, start: u64, end: u64) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = start;
    while pos < end {
        let data = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break,
            // A filesystem without SEEK_DATA: treat everything as data.
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::OPNOTSUPP) => {
                out.push((pos, end - pos));
                break;
            }
            Err(e) => return Err(e.into()),
        };
        if data >= end {
            break;
        }
        let hole = match rustix::fs::seek(file, SeekFrom::Hole(data)) {
            Ok(h) => h.min(end),
            Err(rustix::io::Errno::NXIO) => end,
            Err(e) => return Err(e.into()),
        };
        out.push((data, hole - data));
        pos = hole;
    }
    Ok(out)
}

/// Copy `len` bytes from `src` at `src_off` to `dst` at `dst_off`, data extents only:
/// holes in the source are skipped (the destination must already read as zeros there).
/// Returns the number of data bytes copied.
pub fn copy_range(src: &File, src_off: u64, dst: &File, dst_off: u64, len: u64) -> io::Result<u64> {
    let mut copied = 0;
    for (off, n) in data_extents(src, src_off, src_off + len)? {
        let mut s = off;
        let mut d = dst_off + (off - src_off);
        let mut left = n;
        while left > 0 {
            let chunk = left.min(1 << 30) as usize;
            let w = match rustix::fs::copy_file_range(src, Some(&mut s), dst, Some(&mut d), chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "source ended early",
                    ))
                }
                Ok(w) => w as u64,
                Err(rustix::io::Errno::XDEV)
                | Err(rustix::io::Errno::INVAL)
                | Err(rustix::io::Errno::NOSYS)
                | Err(rustix::io::Errno::OPNOTSUPP) => {
                    copy_plain(src, s, dst, d, left)?;
                    s += left;
                    d += left;
                    left
                }
                Err(e) => return Err(e.into()),
            };
            left -= w;
            copied += w;
        }
    }
    Ok(copied)
}

fn copy_plain(src: &File, mut s: u64, dst: &File, mut d: u64, mut left: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        src.read_exact_at(&mut buf[..n], s)?;
        if buf[..n].iter().any(|&b| b != 0) {
            dst.write_all_at(&buf[..n], d)?;
        }
        s += n as u64;
        d += n as u64;
        left -= n as u64;
    }
    Ok(())
}

/// Make `dst` (empty, freshly created) a copy of the whole of `src`: a reflink where the
/// filesystem supports it, otherwise a sparse copy of the data extents.
pub fn clone_file(src: &File, dst: &File) -> io::Result<()> {
    let len = src.metadata()?.len();
    if rustix::fs::ioctl_ficlone(dst, src).is_ok() {
        return Ok(());
    }
    dst.set_len(len)?;
    copy_range(src, 0, dst, 0, len)?;
    Ok(())
}

/// Make `[off, off+len)` of `file` read as zeros, deallocating it where possible.
pub fn zero_range(file: &File, off: u64, len: u64) -> io::Result<()> {
    let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
    if rustix::fs::fallocate(file, flags, off, len).is_ok() {
        return Ok(());
    }
    let zeros = vec![0u8; 1 << 20];
    for (o, n) in data_extents(file, off, off + len)? {
        let mut p = o;
        while p < o + n {
            let k = (o + n - p).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..k], p)?;
            p += k as u64;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sparse_copy_keeps_holes_and_data() {
        let src = tempfile::tempfile().unwrap();
        src.set_len(64 << 20).unwrap();
        src.write_all_at(b"hello", 4096).unwrap();
        src.write_all_at(&[7u8; 8192], 40 << 20).unwrap();
        let dst = tempfile::tempfile().unwrap();
        dst.set_len(64 << 20).unwrap();
        let n = copy_range(&src, 0, &dst, 0, 64 << 20).unwrap();
        assert!(
            n < 1 << 20,
            "copied {n} bytes, expected only the data extents"
        );
        let mut b = [0u8; 5];
        dst.read_exact_at(&mut b, 4096).unwrap();
        assert_eq!(&b, b"hello");
        let mut c = [0u8; 8192];
        dst.read_exact_at(&mut c, 40 << 20).unwrap();
        assert!(c.iter().all(|&x| x == 7));
        assert!(dst.metadata().unwrap().blocks() * 512 < 1 << 20);
    }

    #[test]
    fn zero_range_clears() {
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(&[9u8; 65536], 0).unwrap();
        zero_range(&f, 4096, 8192).unwrap();
        let mut b = [1u8; 65536];
        f.read_exact_at(&mut b, 0).unwrap();
        assert!(b[..4096].iter().all(|&x| x == 9));
        assert!(b[4096..12288].iter().all(|&x| x == 0));
        assert!(b[12288..].iter().all(|&x| x == 9));
    }
}
