//! Archives that carry a vendor's outputs: the OVA (tar of ovf, mf with SHA1 lines of
//! vmdk then ovf, vmdk — ovf first, as the OVF spec requires), the Vagrant box (tar.gz of Vagrantfile,
//! box.ovf, metadata.json and the disk), and GCE's `disk.raw` in a tar.gz, written as a
//! GNU sparse member so the image's holes are neither read nor stored.

use super::conf::GenFile;
use crate::disk::sparse;
use flate2::write::GzEncoder;
use sha1::{Digest, Sha1};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Hex SHA1 of a file, streamed.
pub fn sha1_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

fn header(name: &str, size: u64, mode: u32) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)?;
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime());
    h.set_cksum();
    Ok(h)
}

/// Timestamp for archive members: SOURCE_DATE_EPOCH when set, for reproducible output.
fn mtime() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })
}

/// Write a tar of `files` then the disk at `disk` named `disk_name`, to `out`.
fn write_tar<W: Write>(out: W, files: &[GenFile], disk: &Path, disk_name: &str) -> io::Result<W> {
    let mut b = tar::Builder::new(out);
    for f in files {
        b.append(
            &header(&f.name, f.content.len() as u64, f.mode)?,
            f.content.as_slice(),
        )?;
    }
    let len = std::fs::metadata(disk)?.len();
    b.append(&header(disk_name, len, 0o644)?, File::open(disk)?)?;
    b.into_inner()
}

/// `NAME.ova`: the ovf, a manifest with SHA1 lines, the vmdk.
pub fn ova(out: &Path, ovf: &GenFile, disk: &Path, disk_name: &str) -> io::Result<()> {
    let mf_name = ovf.name.replace(".ovf", ".mf");
    let mut sha = Sha1::new();
    sha.update(&ovf.content);
    // Flatcar's order: the disk, then the ovf
    let mf = format!(
        "SHA1({disk_name})= {}\nSHA1({})= {:x}\n",
        sha1_file(disk)?,
        ovf.name,
        sha.finalize()
    );
    let files = [
        ovf.clone(),
        GenFile {
            name: mf_name,
            content: mf.into_bytes(),
            mode: 0o644,
        },
    ];
    let f = write_tar(File::create(out)?, &files, disk, disk_name)?;
    f.sync_all()
}

/// Vagrant `.box`: tar.gz of the Vagrant files and the disk, as Flatcar's
/// `tar -czf BOX -C box .` lays it out: a `./` directory entry, then `./NAME` members.
pub fn vagrant_box(out: &Path, files: &[GenFile], disk: &Path, disk_name: &str) -> io::Result<()> {
    let gz = GzEncoder::new(File::create(out)?, flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    let mut dir = tar::Header::new_ustar();
    dir.set_path("./")?;
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    dir.set_mode(0o755);
    dir.set_uid(0);
    dir.set_gid(0);
    dir.set_mtime(mtime());
    dir.set_cksum();
    b.append(&dir, io::empty())?;
    for f in files {
        b.append(
            &dotted(header(&f.name, f.content.len() as u64, f.mode)?, &f.name)?,
            f.content.as_slice(),
        )?;
    }
    let len = std::fs::metadata(disk)?.len();
    b.append(
        &dotted(header(disk_name, len, 0o644)?, disk_name)?,
        File::open(disk)?,
    )?;
    let f = b.into_inner()?.finish()?;
    f.sync_all()
}

/// `h` named `./NAME` (the tar crate's `set_path` drops a leading `./`).
fn dotted(mut h: tar::Header, name: &str) -> io::Result<tar::Header> {
    let full = format!("./{name}");
    let field = &mut h.as_old_mut().name;
    if full.len() > field.len() {
        return Err(io::Error::other(format!(
            "{full}: name too long for a tar header"
        )));
    }
    field.fill(0);
    field[..full.len()].copy_from_slice(full.as_bytes());
    h.set_cksum();
    Ok(h)
}

/// Octal or (when too large) GNU base-256 numeric field.
fn num_field(dst: &mut [u8], v: u64) {
    let digits = dst.len() - 1;
    if v < 8u64.pow(digits as u32) {
        let s = format!("{v:0digits$o}");
        dst[..digits].copy_from_slice(s.as_bytes());
        dst[digits] = 0;
    } else {
        dst.fill(0);
        dst[0] = 0x80;
        let be = v.to_be_bytes();
        let n = dst.len();
        dst[n - 8..].copy_from_slice(&be);
    }
}

/// Append `raw` as a GNU (oldgnu) sparse member named `name`: only its data extents are
/// stored, with the sparse map in the header and extension blocks.
fn append_sparse<W: Write>(w: &mut W, raw: &File, name: &str) -> io::Result<()> {
    let real = raw.metadata()?.len();
    let mut map = sparse::data_extents(raw, 0, real)?;
    // GNU tar expects the map to reach the end of the file
    if map.last().map(|(o, n)| o + n) != Some(real) {
        map.push((real, 0));
    }
    let stored: u64 = map.iter().map(|(_, n)| n).sum();
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    num_field(&mut h[100..108], 0o644);
    num_field(&mut h[108..116], 0);
    num_field(&mut h[116..124], 0);
    num_field(&mut h[124..136], stored);
    num_field(&mut h[136..148], mtime());
    h[156] = b'S';
    h[257..265].copy_from_slice(b"ustar  \0");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    let put = |blk: &mut [u8], at: usize, (o, n): (u64, u64)| {
        num_field(&mut blk[at..at + 12], o);
        num_field(&mut blk[at + 12..at + 24], n);
    };
    let (first, rest) = map.split_at(map.len().min(4));
    for (i, e) in first.iter().enumerate() {
        put(&mut h, 386 + 24 * i, *e);
    }
    h[482] = u8::from(!rest.is_empty());
    num_field(&mut h[483..495], real);
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    w.write_all(&h)?;
    let chunks: Vec<&[(u64, u64)]> = rest.chunks(21).collect();
    for (ci, chunk) in chunks.iter().enumerate() {
        let mut x = [0u8; 512];
        for (i, e) in chunk.iter().enumerate() {
            put(&mut x, 24 * i, *e);
        }
        x[504] = u8::from(ci + 1 < chunks.len());
        w.write_all(&x)?;
    }
    let mut buf = vec![0u8; 1 << 20];
    for (off, len) in &map {
        let mut pos = 0;
        while pos < *len {
            let n = (len - pos).min(buf.len() as u64) as usize;
            raw.read_exact_at(&mut buf[..n], off + pos)?;
            w.write_all(&buf[..n])?;
            pos += n as u64;
        }
    }
    let pad = (512 - (stored % 512) as usize) % 512;
    w.write_all(&vec![0u8; pad])
}

/// GCE's image: `disk.raw` in a gzip-compressed tar, sparse.
pub fn gce_tar(out: &Path, raw: &Path) -> io::Result<()> {
    let mut gz = GzEncoder::new(
        io::BufWriter::new(File::create(out)?),
        flate2::Compression::default(),
    );
    append_sparse(&mut gz, &File::open(raw)?, "disk.raw")?;
    gz.write_all(&[0u8; 1024])?;
    let f = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn gnu_sparse_tar_extracts_identically() {
        let d = tempfile::tempdir().unwrap();
        let raw = d.path().join("disk.raw");
        let f = File::create(&raw).unwrap();
        f.set_len(64 << 20).unwrap();
        // more than 4 extents, to need extension blocks
        for i in 0..30u64 {
            f.write_all_at(&[i as u8 + 1; 5000], i * (2 << 20) + 4096)
                .unwrap();
        }
        drop(f);
        let tgz = d.path().join("x.tar.gz");
        gce_tar(&tgz, &raw).unwrap();
        assert!(std::fs::metadata(&tgz).unwrap().len() < 1 << 20);
        let x = d.path().join("x");
        std::fs::create_dir(&x).unwrap();
        let st = Command::new("tar")
            .arg("-xzf")
            .arg(&tgz)
            .arg("-C")
            .arg(&x)
            .status()
            .unwrap();
        assert!(st.success());
        let a = std::fs::read(&raw).unwrap();
        let b = std::fs::read(x.join("disk.raw")).unwrap();
        assert!(a == b, "extracted disk.raw differs");
    }

    #[test]
    fn base256_for_large_numbers() {
        let mut f = [0u8; 12];
        num_field(&mut f, 12 << 30);
        assert_eq!(f[0], 0x80);
        assert_eq!(u64::from_be_bytes(f[4..12].try_into().unwrap()), 12 << 30);
        num_field(&mut f, 8);
        assert_eq!(&f, b"00000000010\0");
    }
}
