//! Compressed copies of vendor disk images, as Flatcar publishes them
//! (`--image_compression_formats` of its `image_to_vm.sh`: `bz2` like lbzip2, `gz`
//! like pigz, `zip` like `pigz --zip`, `none` keeps the plain file).
//!
//! The image is cut into fixed chunks compressed on all cores in order
//! ([`crate::format::pipeline`]): bz2 and gz write one stream (member) per chunk,
//! concatenated, which every bunzip2/gunzip reads as one file; zip writes one raw
//! deflate stream made of sync-flushed chunks, its CRC combined from the chunks', in
//! a zip64 archive with one entry named like the image. Chunks in the image's holes
//! are never read: their compressed form is computed once and reused.

use crate::format::{pipeline, FormatError};
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A compression Flatcar publishes images in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// keep the uncompressed file (without it, only the compressed copies are kept)
    None,
    Bz2,
    Gz,
    Zip,
}

impl Compression {
    /// File name suffix (without the dot).
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Bz2 => "bz2",
            Compression::Gz => "gz",
            Compression::Zip => "zip",
        }
    }

    /// Parse Flatcar's comma-separated list (`gz,bz2,none`); duplicates are dropped.
    pub fn parse_list(s: &str) -> Result<Vec<Compression>, String> {
        let mut out = Vec::new();
        for w in s.split(',').map(str::trim) {
            let c = match w {
                "none" => Compression::None,
                "bz2" => Compression::Bz2,
                "gz" => Compression::Gz,
                "zip" => Compression::Zip,
                "zst" => {
                    return Err(
                        "--compress zst: flatbake writes none, bz2, gz and zip (Flatcar publishes no zst vendor images)"
                            .into(),
                    )
                }
                other => {
                    return Err(format!(
                        "--compress {other:?}: use a comma-separated list of none, bz2, gz, zip"
                    ))
                }
            };
            if !out.contains(&c) {
                out.push(c);
            }
        }
        Ok(out)
    }
}

const CHUNK: u64 = 4 << 20;

enum Job {
    Data(Vec<u8>, bool),
    Zero(usize, bool),
}

/// The compressed form of an all-zero chunk: ((length, last), bytes, crc).
type ZeroPiece = ((usize, bool), std::sync::Arc<Vec<u8>>, u32);

struct Piece {
    bytes: std::sync::Arc<Vec<u8>>,
    crc: u32,
    len: u64,
}

fn cerr(path: &Path) -> impl Fn(std::io::Error) -> FormatError + '_ {
    move |e| FormatError::Compress {
        path: path.to_owned(),
        problem: e.to_string(),
    }
}

/// Compress one chunk; `last` ends the zip's deflate stream.
fn compress_chunk(c: Compression, data: &[u8], last: bool) -> std::io::Result<Vec<u8>> {
    match c {
        Compression::Bz2 => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
            e.write_all(data)?;
            e.finish()
        }
        Compression::Gz => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data)?;
            e.finish()
        }
        Compression::Zip => {
            let mut e =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data)?;
            if last {
                return e.finish();
            }
            // a sync flush ends on a byte boundary without a final block, so the
            // next chunk's blocks may follow; the encoder's own final block is dropped
            e.flush()?;
            Ok(std::mem::take(e.get_mut()))
        }
        Compression::None => Ok(data.to_vec()),
    }
}

/// Write `src` compressed with `c` to `dst`; `entry` names the zip member.
pub fn compress_file(
    c: Compression,
    src: &Path,
    dst: &Path,
    entry: &str,
    threads: usize,
) -> Result<(), FormatError> {
    let input = crate::input::open_regular(src).map_err(FormatError::read(src))?;
    let size = input.metadata().map_err(FormatError::read(src))?.len();
    let extents =
        crate::disk::sparse::data_extents(&input, 0, size).map_err(FormatError::read(src))?;
    let n = size.div_ceil(CHUNK).max(1);
    let mut data_chunks = extents
        .iter()
        .filter(|(_, l)| *l > 0)
        .flat_map(|&(o, l)| (o / CHUNK)..(o + l).div_ceil(CHUNK))
        .peekable();
    let out = File::create(dst).map_err(cerr(dst))?;
    let mut w = BufWriter::with_capacity(1 << 20, out);
    let header_len = if c == Compression::Zip {
        zip_local_header(&mut w, entry, 0, 0, 0).map_err(cerr(dst))?
    } else {
        0
    };
    let zero_cache: std::sync::Mutex<Vec<ZeroPiece>> = std::sync::Mutex::new(Vec::new());
    let mut next = 0u64;
    let mut crc = crc32fast::Hasher::new();
    let mut total_in = 0u64;
    let mut total_out = 0u64;
    pipeline::run(
        threads,
        threads * 2,
        || {
            if next >= n {
                return Ok(None);
            }
            let i = next;
            next += 1;
            let len = (size - i * CHUNK).min(CHUNK) as usize;
            let last = i + 1 == n;
            while data_chunks.peek().is_some_and(|&d| d < i) {
                data_chunks.next();
            }
            if data_chunks.peek() == Some(&i) {
                let mut buf = vec![0u8; len];
                input
                    .read_exact_at(&mut buf, i * CHUNK)
                    .map_err(FormatError::read(src))?;
                if crate::format::source::is_zero(&buf) {
                    return Ok(Some(Job::Zero(len, last)));
                }
                return Ok(Some(Job::Data(buf, last)));
            }
            Ok(Some(Job::Zero(len, last)))
        },
        |job| {
            let compressed = |data: &[u8], last| {
                compress_chunk(c, data, last).map_err(|e| FormatError::Compress {
                    path: dst.to_owned(),
                    problem: e.to_string(),
                })
            };
            match job {
                Job::Data(buf, last) => {
                    let mut h = crc32fast::Hasher::new();
                    h.update(&buf);
                    Ok(Piece {
                        bytes: std::sync::Arc::new(compressed(&buf, last)?),
                        crc: h.finalize(),
                        len: buf.len() as u64,
                    })
                }
                Job::Zero(len, last) => {
                    let hit = zero_cache
                        .lock()
                        .ok()
                        .and_then(|g| g.iter().find(|(k, _, _)| *k == (len, last)).cloned());
                    let (bytes, crc) = match hit {
                        Some((_, b, crc)) => (b, crc),
                        None => {
                            let zeros = vec![0u8; len];
                            let mut h = crc32fast::Hasher::new();
                            h.update(&zeros);
                            let b = std::sync::Arc::new(compressed(&zeros, last)?);
                            let crc = h.finalize();
                            if let Ok(mut g) = zero_cache.lock() {
                                g.push(((len, last), b.clone(), crc));
                            }
                            (b, crc)
                        }
                    };
                    Ok(Piece {
                        bytes,
                        crc,
                        len: len as u64,
                    })
                }
            }
        },
        |p: Piece| {
            w.write_all(&p.bytes).map_err(cerr(dst))?;
            crc.combine(&crc32fast::Hasher::new_with_initial_len(p.crc, p.len));
            total_in += p.len;
            total_out += p.bytes.len() as u64;
            Ok(())
        },
    )?;
    if c == Compression::Zip {
        let crc = crc.finalize();
        zip_trailer(&mut w, entry, crc, total_out, total_in, header_len).map_err(cerr(dst))?;
        let mut f = w.into_inner().map_err(|e| cerr(dst)(e.into_error()))?;
        f.seek(SeekFrom::Start(0)).map_err(cerr(dst))?;
        zip_local_header(&mut f, entry, crc, total_out, total_in).map_err(cerr(dst))?;
        f.sync_all().map_err(cerr(dst))?;
    } else {
        let f = w.into_inner().map_err(|e| cerr(dst)(e.into_error()))?;
        f.sync_all().map_err(cerr(dst))?;
    }
    Ok(())
}

const ZIP_TIME: u16 = 0;
/// 1980-01-01, zip's epoch, for reproducible archives
const ZIP_DATE: u16 = 0x21;

/// The zip64 local file header of the one entry; returns its length.
fn zip_local_header<W: Write>(
    w: &mut W,
    name: &str,
    crc: u32,
    comp: u64,
    uncomp: u64,
) -> std::io::Result<u64> {
    let mut h = Vec::new();
    h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    h.extend_from_slice(&45u16.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&8u16.to_le_bytes());
    h.extend_from_slice(&ZIP_TIME.to_le_bytes());
    h.extend_from_slice(&ZIP_DATE.to_le_bytes());
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(&u32::MAX.to_le_bytes());
    h.extend_from_slice(&u32::MAX.to_le_bytes());
    h.extend_from_slice(&(name.len() as u16).to_le_bytes());
    h.extend_from_slice(&20u16.to_le_bytes());
    h.extend_from_slice(name.as_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend_from_slice(&uncomp.to_le_bytes());
    h.extend_from_slice(&comp.to_le_bytes());
    w.write_all(&h)?;
    Ok(h.len() as u64)
}

/// Central directory, zip64 end records and end of central directory.
fn zip_trailer<W: Write>(
    w: &mut W,
    name: &str,
    crc: u32,
    comp: u64,
    uncomp: u64,
    header_len: u64,
) -> std::io::Result<()> {
    let cd_offset = header_len + comp;
    let mut c = Vec::new();
    c.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    c.extend_from_slice(&(45u16 | (3 << 8)).to_le_bytes());
    c.extend_from_slice(&45u16.to_le_bytes());
    c.extend_from_slice(&0u16.to_le_bytes());
    c.extend_from_slice(&8u16.to_le_bytes());
    c.extend_from_slice(&ZIP_TIME.to_le_bytes());
    c.extend_from_slice(&ZIP_DATE.to_le_bytes());
    c.extend_from_slice(&crc.to_le_bytes());
    c.extend_from_slice(&u32::MAX.to_le_bytes());
    c.extend_from_slice(&u32::MAX.to_le_bytes());
    c.extend_from_slice(&(name.len() as u16).to_le_bytes());
    c.extend_from_slice(&28u16.to_le_bytes());
    c.extend_from_slice(&0u16.to_le_bytes());
    c.extend_from_slice(&0u16.to_le_bytes());
    c.extend_from_slice(&0u16.to_le_bytes());
    c.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
    c.extend_from_slice(&u32::MAX.to_le_bytes());
    c.extend_from_slice(name.as_bytes());
    c.extend_from_slice(&1u16.to_le_bytes());
    c.extend_from_slice(&24u16.to_le_bytes());
    c.extend_from_slice(&uncomp.to_le_bytes());
    c.extend_from_slice(&comp.to_le_bytes());
    c.extend_from_slice(&0u64.to_le_bytes());
    let cd_len = c.len() as u64;
    let eocd64 = cd_offset + cd_len;
    c.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
    c.extend_from_slice(&44u64.to_le_bytes());
    c.extend_from_slice(&45u16.to_le_bytes());
    c.extend_from_slice(&45u16.to_le_bytes());
    c.extend_from_slice(&0u32.to_le_bytes());
    c.extend_from_slice(&0u32.to_le_bytes());
    c.extend_from_slice(&1u64.to_le_bytes());
    c.extend_from_slice(&1u64.to_le_bytes());
    c.extend_from_slice(&cd_len.to_le_bytes());
    c.extend_from_slice(&cd_offset.to_le_bytes());
    c.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
    c.extend_from_slice(&0u32.to_le_bytes());
    c.extend_from_slice(&eocd64.to_le_bytes());
    c.extend_from_slice(&1u32.to_le_bytes());
    c.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    c.extend_from_slice(&0u16.to_le_bytes());
    c.extend_from_slice(&0u16.to_le_bytes());
    c.extend_from_slice(&u16::MAX.to_le_bytes());
    c.extend_from_slice(&u16::MAX.to_le_bytes());
    c.extend_from_slice(&u32::MAX.to_le_bytes());
    c.extend_from_slice(&u32::MAX.to_le_bytes());
    c.extend_from_slice(&0u16.to_le_bytes());
    w.write_all(&c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A sparse 40 MiB file with data in a few places (more than one chunk, a
    /// partial last chunk).
    fn sample(dir: &Path) -> std::path::PathBuf {
        let p = dir.join("disk.img");
        let f = File::create(&p).unwrap();
        f.set_len((40 << 20) + 12345).unwrap();
        for i in 0..7u64 {
            let data: Vec<u8> = (0..300_000u32).map(|x| (x * 7 + i as u32) as u8).collect();
            f.write_all_at(&data, i * (6 << 20) + 999).unwrap();
        }
        f.write_all_at(b"tail", (40 << 20) + 12000).unwrap();
        p
    }

    #[test]
    fn outside_tools_read_every_format_back() {
        let d = tempfile::tempdir().unwrap();
        let src = sample(d.path());
        let want = std::fs::read(&src).unwrap();
        for (c, cmd) in [
            (Compression::Bz2, vec!["bzip2", "-dc"]),
            (Compression::Gz, vec!["gzip", "-dc"]),
            (Compression::Zip, vec!["unzip", "-p"]),
        ] {
            let dst = d.path().join(format!("disk.img.{}", c.suffix()));
            compress_file(c, &src, &dst, "disk.img", 3).unwrap();
            let o = Command::new(cmd[0])
                .args(&cmd[1..])
                .arg(&dst)
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{c:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(o.stdout == want, "{c:?}: content differs");
            assert!(std::fs::metadata(&dst).unwrap().len() < 4 << 20);
        }
        let t = Command::new("unzip")
            .arg("-tq")
            .arg(d.path().join("disk.img.zip"))
            .output()
            .unwrap();
        assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stdout));
        let l = Command::new("unzip")
            .arg("-Z1")
            .arg(d.path().join("disk.img.zip"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&l.stdout).trim(), "disk.img");
    }

    #[test]
    fn lists_parse_like_flatcar() {
        assert_eq!(
            Compression::parse_list("gz,bz2,none").unwrap(),
            [Compression::Gz, Compression::Bz2, Compression::None]
        );
        assert!(Compression::parse_list("zst").unwrap_err().contains("zst"));
        assert!(Compression::parse_list("lzma").is_err());
    }
}
