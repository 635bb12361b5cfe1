//! Reading `.zip` archives (HashiCorp's releases): the central directory, stored and
//! deflated entries, CRC-32 checked, written under a destination directory. Bounded: at
//! most [`MAX_ENTRIES`] entries, each at most [`MAX_ENTRY`] bytes unpacked; no ZIP64,
//! encryption or multi-disk archives (refused by name).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path};

pub const MAX_ENTRIES: usize = 100_000;
pub const MAX_ENTRY: u64 = 4 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ZipError {
    #[error("{0}")]
    Bad(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn bad(s: impl Into<String>) -> ZipError {
    ZipError::Bad(s.into())
}

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

struct Entry {
    name: String,
    method: u16,
    crc: u32,
    csize: u64,
    usize: u64,
    offset: u64,
    /// Unix mode from the external attributes, when made on Unix.
    mode: Option<u32>,
}

/// Unpack every entry of `archive` into `dest`.
pub fn unpack(archive: &Path, dest: &Path) -> Result<(), ZipError> {
    let mut f = crate::input::open_regular(archive)?;
    let len = f.metadata()?.len();
    // the end of central directory record lies in the last 22 + 65535 bytes
    let tail_len = len.min(22 + 65535);
    f.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = vec![0u8; tail_len as usize];
    f.read_exact(&mut tail)?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or_else(|| bad("not a zip archive (no end of central directory)"))?;
    let e = &tail[eocd..];
    if u16le(e, 4) != 0 || u16le(e, 6) != 0 {
        return Err(bad("multi-disk zip archives are not supported"));
    }
    let count = u16le(e, 10) as usize;
    let (cd_size, cd_off) = (u32le(e, 12) as u64, u32le(e, 16) as u64);
    if count == 0xffff || cd_off == 0xffff_ffff {
        return Err(bad("ZIP64 archives are not supported"));
    }
    if count > MAX_ENTRIES || cd_off + cd_size > len {
        return Err(bad("central directory out of bounds"));
    }
    f.seek(SeekFrom::Start(cd_off))?;
    let mut cd = vec![0u8; cd_size as usize];
    f.read_exact(&mut cd)?;
    let mut entries = Vec::with_capacity(count);
    let mut at = 0usize;
    for _ in 0..count {
        if at + 46 > cd.len() || u32le(&cd, at) != 0x0201_4b50 {
            return Err(bad("corrupt central directory"));
        }
        let h = &cd[at..];
        let (nlen, xlen, clen) = (
            u16le(h, 28) as usize,
            u16le(h, 30) as usize,
            u16le(h, 32) as usize,
        );
        if at + 46 + nlen > cd.len() {
            return Err(bad("corrupt central directory"));
        }
        if u16le(h, 8) & 1 != 0 {
            return Err(bad("encrypted zip entries are not supported"));
        }
        let name = String::from_utf8_lossy(&h[46..46 + nlen]).into_owned();
        let made_on_unix = h[5] == 3;
        let ext = u32le(h, 38);
        entries.push(Entry {
            name,
            method: u16le(h, 10),
            crc: u32le(h, 16),
            csize: u32le(h, 20) as u64,
            usize: u32le(h, 24) as u64,
            offset: u32le(h, 42) as u64,
            mode: made_on_unix.then_some(ext >> 16).filter(|m| *m != 0),
        });
        at += 46 + nlen + xlen + clen;
    }
    for e in &entries {
        extract(&mut f, len, e, dest)?;
    }
    Ok(())
}

fn extract(f: &mut std::fs::File, len: u64, e: &Entry, dest: &Path) -> Result<(), ZipError> {
    let rel = Path::new(&e.name);
    if e.name.is_empty()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad(format!("entry {} points outside the archive", e.name)));
    }
    let target = dest.join(rel);
    let kind = e.mode.map(|m| m & 0o170000);
    let is_dir = e.name.ends_with('/') || kind == Some(0o040000);
    // directories on the way are made here, and none may be a symlink an earlier entry
    // planted (`a -> /etc`, then `a/passwd`)
    let mut at = dest.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    let parents = if is_dir {
        comps.len()
    } else {
        comps.len().saturating_sub(1)
    };
    for c in &comps[..parents] {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(bad(format!(
                    "entry {} goes through {}, which is not a directory",
                    e.name,
                    at.display()
                )))
            }
            Err(_) => std::fs::create_dir(&at)?,
        }
    }
    if is_dir {
        return Ok(());
    }
    if e.usize > MAX_ENTRY || e.offset + 30 > len {
        return Err(bad(format!("{}: entry out of bounds", e.name)));
    }
    f.seek(SeekFrom::Start(e.offset))?;
    let mut lh = [0u8; 30];
    f.read_exact(&mut lh)?;
    if u32le(&lh, 0) != 0x0403_4b50 {
        return Err(bad(format!("{}: corrupt local header", e.name)));
    }
    let data = e.offset + 30 + u16le(&lh, 26) as u64 + u16le(&lh, 28) as u64;
    if data + e.csize > len {
        return Err(bad(format!("{}: data out of bounds", e.name)));
    }
    f.seek(SeekFrom::Start(data))?;
    let raw = (&mut *f).take(e.csize);
    let mut reader: Box<dyn Read + '_> = match e.method {
        0 => Box::new(raw),
        8 => Box::new(flate2::read::DeflateDecoder::new(raw)),
        m => {
            return Err(bad(format!(
                "{}: compression method {m} not supported",
                e.name
            )))
        }
    };
    let _ = std::fs::remove_file(&target);
    let mut buf = Vec::new();
    let is_link = kind == Some(0o120000);
    let mut hasher = crc32fast::Hasher::new();
    let mut written = 0u64;
    let mut out: Option<std::fs::File> = if is_link {
        None
    } else {
        Some(std::fs::File::create(&target)?)
    };
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        written += n as u64;
        if written > e.usize {
            return Err(bad(format!("{}: larger than its recorded size", e.name)));
        }
        hasher.update(&chunk[..n]);
        match &mut out {
            Some(o) => o.write_all(&chunk[..n])?,
            None if buf.len() < 4096 => buf.extend_from_slice(&chunk[..n]),
            None => return Err(bad(format!("{}: symlink target too long", e.name))),
        }
    }
    if written != e.usize || hasher.finalize() != e.crc {
        let _ = std::fs::remove_file(&target);
        return Err(bad(format!("{}: CRC or size mismatch", e.name)));
    }
    if is_link {
        let t = String::from_utf8_lossy(&buf).into_owned();
        std::os::unix::fs::symlink(t, &target)?;
    } else {
        use std::os::unix::fs::PermissionsExt;
        let mode = e.mode.map(|m| m & 0o7777).unwrap_or(0o644);
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_zip_writes_and_refuses_garbage() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("dir")).unwrap();
        std::fs::write(src.join("nomad"), b"#!/bin/sh\necho nomad\n".repeat(100)).unwrap();
        std::fs::write(src.join("dir/a.txt"), b"a").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(src.join("nomad"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let z = d.path().join("x.zip");
        let st = std::process::Command::new("zip")
            .current_dir(&src)
            .args(["-qrX", z.to_str().unwrap(), "nomad", "dir"])
            .status()
            .expect("zip (apt-get install zip)");
        assert!(st.success());
        let out = d.path().join("out");
        std::fs::create_dir(&out).unwrap();
        unpack(&z, &out).unwrap();
        assert_eq!(
            std::fs::read(out.join("nomad")).unwrap(),
            std::fs::read(src.join("nomad")).unwrap()
        );
        assert_eq!(
            std::fs::metadata(out.join("nomad"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
        assert_eq!(std::fs::read(out.join("dir/a.txt")).unwrap(), b"a");
        // a flipped byte in the compressed data is a CRC error, not a wrong file
        let mut bytes = std::fs::read(&z).unwrap();
        bytes[40] ^= 0xff;
        let zb = d.path().join("bad.zip");
        std::fs::write(&zb, &bytes).unwrap();
        let out2 = d.path().join("out2");
        std::fs::create_dir(&out2).unwrap();
        assert!(unpack(&zb, &out2).is_err());
        // an entry through a symlink an earlier entry planted, or with "..", stays out
        for (name, script) in [
            ("slip.zip", "z.writestr('../evil', 'x')"),
            (
                "link.zip",
                "i = zipfile.ZipInfo('a'); i.create_system = 3; i.external_attr = 0o120777 << 16; z.writestr(i, '/tmp'); z.writestr('a/evil-flatbake-zip', 'x')",
            ),
        ] {
            let p = d.path().join(name);
            let st = std::process::Command::new("python3")
                .arg("-c")
                .arg(format!(
                    "import zipfile\nz = zipfile.ZipFile('{}', 'w')\n{script}\nz.close()",
                    p.display()
                ))
                .status()
                .unwrap();
            assert!(st.success());
            let o = d.path().join(format!("out-{name}"));
            std::fs::create_dir(&o).unwrap();
            assert!(unpack(&p, &o).is_err(), "{name}");
        }
        assert!(!d.path().join("evil").exists());
        assert!(!Path::new("/tmp/evil-flatbake-zip").exists());
        std::fs::write(&zb, b"not a zip").unwrap();
        assert!(unpack(&zb, &out2)
            .unwrap_err()
            .to_string()
            .contains("not a zip"));
    }
}
