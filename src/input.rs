//! Opening what the user names, and the files flatbake finds beside it (version.txt,
//! NAME.conf): regular files only, checked on the opened handle, never blocking on a
//! FIFO, with a size cap on everything read whole. Also the private staged copy that
//! makes "what is baked is what was checked": an input is read once, from one handle,
//! into a file only this run can see, hashed on the way; checks and writers then use
//! that copy.

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Cap for small text inputs: sysupdate configs, version.txt, recipes, vendor files.
pub const TEXT_CAP: u64 = 1 << 20;
/// Cap for JSON and key files (Ignition configs, OCI manifests, signing keys).
pub const JSON_CAP: u64 = 64 << 20;

fn kind(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

fn not_regular(ft: std::fs::FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}, not a regular file; give a regular file", kind(ft)),
    )
}

/// The directory holding `path`, where its output or the files beside it live ("." for a
/// bare file name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Open `path` for reading if it is a regular file (after following symlinks). The type
/// is checked before opening (so no device is ever opened) and again on the handle; the
/// open itself is non-blocking, so a FIFO swapped in between cannot hang it.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let ft = std::fs::metadata(path)?.file_type();
    if !ft.is_file() {
        return Err(not_regular(ft));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32)
        .open(path)?;
    let ft = file.metadata()?.file_type();
    if !ft.is_file() {
        return Err(not_regular(ft));
    }
    rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::empty()).map_err(io::Error::from)?;
    Ok(file)
}

fn too_large(len: u64, cap: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{len} bytes, more than the {} this input may have",
            crate::util::human(cap)
        ),
    )
}

/// Read all of an open regular file, at most `cap` bytes (a file growing past the cap
/// while being read is refused too).
pub fn read_capped(file: &mut File, cap: u64) -> io::Result<Vec<u8>> {
    let len = file.metadata()?.len();
    if len > cap {
        return Err(too_large(len, cap));
    }
    let mut buf = Vec::with_capacity(len as usize);
    file.take(cap + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Err(too_large(buf.len() as u64, cap));
    }
    Ok(buf)
}

/// The bytes of the regular file `path`, at most `cap` of them.
pub fn read_bytes(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    read_capped(&mut open_regular(path)?, cap)
}

/// The UTF-8 text of the regular file `path`, at most `cap` bytes.
pub fn read_text(path: &Path, cap: u64) -> io::Result<String> {
    String::from_utf8(read_bytes(path, cap)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// An input copied into this run's private work directory.
#[derive(Clone, Debug)]
pub struct Staged {
    /// The private copy: checks read it and writers copy from it.
    pub path: PathBuf,
    /// sha256 (hex) and length of the bytes copied, so of the bytes baked.
    pub sha256: String,
    pub size: u64,
}

/// Create `dest` (which must not exist, mode 0600) holding `bytes`.
pub fn stage_bytes(bytes: &[u8], dest: &Path) -> io::Result<Staged> {
    let mut out = create_private(dest)?;
    out.write_all(bytes)?;
    out.sync_all()?;
    Ok(Staged {
        path: dest.to_owned(),
        sha256: format!("{:x}", Sha256::digest(bytes)),
        size: bytes.len() as u64,
    })
}

fn create_private(dest: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(dest)
}

/// Copy the regular file `src` (opened once) to `dest`, hashing the bytes on the way. A
/// file that changes size while being copied is refused.
pub fn stage_file(src: &Path, dest: &Path) -> io::Result<Staged> {
    let mut from = open_regular(src)?;
    let len = from.metadata()?.len();
    let mut out = create_private(dest)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = from.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        out.write_all(&buf[..k])?;
        n += k as u64;
        if n > len {
            break;
        }
    }
    if n != len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "changed size while being read; try again when nothing writes to it",
        ));
    }
    out.sync_all()?;
    Ok(Staged {
        path: dest.to_owned(),
        sha256: format!("{:x}", h.finalize()),
        size: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_regular_file() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let e = read_text(&fifo, TEXT_CAP).unwrap_err().to_string();
        assert!(e.contains("a FIFO, not a regular file"), "{e}");
        let e = read_text(Path::new("/dev/zero"), TEXT_CAP)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a character device"), "{e}");
        let e = read_text(d.path(), TEXT_CAP).unwrap_err().to_string();
        assert!(e.contains("a directory"), "{e}");
        let link = d.path().join("link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert!(open_regular(&link).is_err());
        let big = d.path().join("big");
        std::fs::write(&big, vec![b'a'; 100]).unwrap();
        let e = read_text(&big, 10).unwrap_err().to_string();
        assert!(e.contains("100 bytes, more than the 10 B"), "{e}");
        assert_eq!(read_text(&big, 100).unwrap().len(), 100);
    }

    #[test]
    fn stages_once_and_hashes_what_it_copied() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("a");
        std::fs::write(&src, b"hello").unwrap();
        let s = stage_file(&src, &d.path().join("copy")).unwrap();
        assert_eq!(s.size, 5);
        assert_eq!(
            s.sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(std::fs::read(&s.path).unwrap(), b"hello");
        assert!(
            stage_file(&src, &d.path().join("copy")).is_err(),
            "an existing destination is never overwritten"
        );
    }
}
