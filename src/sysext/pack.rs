//! Building a sysext image from a directory: the `usr/` and `opt/` trees of a source
//! directory plus a generated `extension-release.NAME`, every file owned by root, written
//! as squashfs in-process (backhand) or as compressed EROFS by `mkfs.erofs`.
//!
//! Fidelity: extended attributes (`security.capability` of a `setcap` binary) are kept.
//! backhand cannot write squashfs xattrs, so a tree that has any is written by
//! `mksquashfs` instead (refused with the fix named when it is missing). flatbake's
//! backhand (vendor/backhand, see its FLATBAKE.md) deduplicates small files stored in
//! fragments as well as whole-block files, by length and SHA-256, and compresses blocks
//! on every CPU, so the image matches mksquashfs's in size and time. backhand writes a
//! duplicate file's data and then seeks back over it, which leaves stale bytes past the
//! filesystem when nothing overwrites them: the file is cut at `bytes_used` and padded to
//! 4 KiB, as mksquashfs does. Every timestamp is the epoch (`SOURCE_DATE_EPOCH`,
//! default 0, as the bakery's `--epoch 0`), so the same tree gives the same bytes.

use super::image::{Format, RELEASE_DIR};
use crate::arch::Arch;
use backhand::compression::Compressor;
use backhand::{CompressionExtra, ExtraXz, FilesystemCompressor, FilesystemWriter, NodeHeader};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufWriter, Cursor, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The top-level directories systemd-sysext merges; everything else in an image is ignored.
pub const MERGED_TOPS: [&str; 2] = ["usr", "opt"];

/// Compressors the Flatcar kernel reads: gzip, xz, zstd, lz4 for squashfs; lz4hc, lz4
/// (and, with an erofs-utils that has them, xz as lzma, gzip as deflate, zstd) or none
/// for EROFS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    Gzip,
    Xz,
    Zstd,
    Lz4,
    Lz4hc,
    None,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
            Compression::Lz4hc => "lz4hc",
            Compression::None => "none",
        })
    }
}

/// The bakery runs plain `mksquashfs` (lib/generate.sh), whose defaults are gzip with
/// 128 KiB blocks; flatbake uses the same defaults.
pub const DEFAULT_COMPRESSION: Compression = Compression::Gzip;
/// The bakery builds EROFS images with `mkfs.erofs -zlz4hc`.
pub const DEFAULT_EROFS_COMPRESSION: Compression = Compression::Lz4hc;
pub const DEFAULT_BLOCK_SIZE: u32 = 128 * 1024;
/// The epoch every timestamp gets when no `SOURCE_DATE_EPOCH` is given (the bakery's
/// `--epoch 0`, `mkfs.erofs -T0`).
pub const DEFAULT_EPOCH: u32 = 0;

/// The default compressor of a format.
pub fn default_compression(format: Format) -> Compression {
    match format {
        Format::Squashfs => DEFAULT_COMPRESSION,
        Format::Erofs => DEFAULT_EROFS_COMPRESSION,
    }
}

/// What to build.
#[derive(Clone, Debug)]
pub struct PackOptions {
    pub name: String,
    pub version: String,
    pub arch: Arch,
    /// `ID=` of the extension-release: `_any` or an OS ID such as `flatcar`.
    pub os: String,
    pub format: Format,
    pub compression: Compression,
    /// Squashfs compression level; `None` is the compressor's mksquashfs default.
    pub level: Option<u32>,
    pub block_size: u32,
    pub reload_manager: bool,
    /// `SOURCE_DATE_EPOCH`: every timestamp in the image. `None`: files keep their
    /// modification times and the image gets the current time.
    pub epoch: Option<u32>,
}

impl PackOptions {
    /// `NAME-VERSION-ARCH.raw`, the bakery's file name.
    pub fn file_name(&self) -> String {
        format!(
            "{}-{}-{}.raw",
            self.name,
            self.version,
            self.arch.systemd_name()
        )
    }

    /// The text of `extension-release.NAME`, in the bakery's field order.
    pub fn release_text(&self) -> String {
        let mut s = format!("ID={}\n", self.os);
        if self.os != "_any" {
            s.push_str("SYSEXT_LEVEL=1.0\n");
        }
        s.push_str(&format!("ARCHITECTURE={}\n", self.arch.systemd_name()));
        if self.reload_manager {
            s.push_str("EXTENSION_RELOAD_MANAGER=1\n");
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Unsupported { path: PathBuf, what: String },
    #[error("writing squashfs: {0}")]
    Squashfs(String),
    #[error(transparent)]
    Tool(#[from] crate::tools::ToolError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PackError + '_ {
    move |source| PackError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What `pack` did.
#[derive(Clone, Debug)]
pub struct PackReport {
    pub output: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub files: usize,
    /// Top-level entries of the source left out (not under usr/ or opt/).
    pub skipped: Vec<String>,
}

/// Extended attributes of one entry, by name.
type Xattrs = Vec<(String, Vec<u8>)>;

/// One entry of the tree to write, by its path inside the image (no leading `/`).
#[derive(Clone, Debug)]
enum Entry {
    Dir {
        mode: u16,
        mtime: u32,
        xattrs: Xattrs,
    },
    File {
        src: PathBuf,
        mode: u16,
        mtime: u32,
        xattrs: Xattrs,
    },
    Data {
        bytes: Vec<u8>,
        mode: u16,
        mtime: u32,
    },
    Symlink {
        target: PathBuf,
        mtime: u32,
    },
}

impl Entry {
    fn xattrs(&self) -> &[(String, Vec<u8>)] {
        match self {
            Entry::Dir { xattrs, .. } | Entry::File { xattrs, .. } => xattrs,
            _ => &[],
        }
    }
}

/// Most extended attributes one entry may carry (a real file has a handful).
const MAX_XATTRS: usize = 64;

/// The extended attributes of `p` (not following a symlink), sorted by name. A
/// filesystem without xattr support has none.
fn read_xattrs(p: &Path) -> Result<Xattrs, PackError> {
    let err = |e: rustix::io::Errno| PackError::Io {
        path: p.to_owned(),
        source: std::io::Error::from_raw_os_error(e.raw_os_error()),
    };
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(p, &mut names) {
        Ok(n) => n,
        Err(rustix::io::Errno::OPNOTSUPP) => return Ok(Vec::new()),
        Err(rustix::io::Errno::RANGE) => {
            names = vec![0u8; 65536];
            rustix::fs::llistxattr(p, &mut names).map_err(err)?
        }
        Err(e) => return Err(err(e)),
    };
    let mut out = Vec::new();
    for name in names[..n.min(names.len())].split(|&b| b == 0) {
        if name.is_empty() {
            continue;
        }
        let Ok(name) = std::str::from_utf8(name) else {
            return Err(PackError::Unsupported {
                path: p.to_owned(),
                what: "an extended attribute name is not UTF-8".into(),
            });
        };
        let mut val = vec![0u8; 65536];
        let len = rustix::fs::lgetxattr(p, name, &mut val).map_err(err)?;
        val.truncate(len);
        out.push((name.to_owned(), val));
        if out.len() > MAX_XATTRS {
            return Err(PackError::Unsupported {
                path: p.to_owned(),
                what: format!("more than {MAX_XATTRS} extended attributes"),
            });
        }
    }
    out.sort();
    Ok(out)
}

/// Check the options before anything is read or written.
pub fn validate(opts: &PackOptions) -> Result<(), PackError> {
    if let Some(p) = super::name_problem(&opts.name) {
        return Err(PackError::Invalid(p));
    }
    let v = &opts.version;
    if v.is_empty() || v.contains('-') || v.contains('/') || v.chars().any(char::is_whitespace) {
        return Err(PackError::Invalid(format!(
            "version '{v}' must be non-empty without '-', '/' or spaces (the bakery splits file names on the last two dashes)"
        )));
    }
    if opts.os.is_empty()
        || !opts
            .os
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
    {
        return Err(PackError::Invalid(format!(
            "--os '{}': use _any or an os-release ID such as flatcar",
            opts.os
        )));
    }
    let b = opts.block_size;
    if !b.is_power_of_two() || !(4096..=1024 * 1024).contains(&b) {
        return Err(PackError::Invalid(format!(
            "block size {b}: must be a power of two from 4 KiB to 1 MiB"
        )));
    }
    let c = opts.compression;
    match (opts.format, c) {
        (Format::Squashfs, Compression::Lz4hc | Compression::None) => {
            return Err(PackError::Invalid(format!(
                "--compression {c} is for EROFS; squashfs takes gzip, xz, zstd or lz4"
            )))
        }
        (Format::Erofs, Compression::None | Compression::Lz4) if opts.level.is_some() => {
            return Err(PackError::Invalid(format!(
                "{c} takes no compression level"
            )))
        }
        _ => {}
    }
    match (c, opts.level) {
        (_, None) => {}
        (Compression::Gzip, Some(1..=9))
        | (Compression::Xz, Some(0..=9))
        | (Compression::Zstd, Some(1..=22))
        | (Compression::Lz4hc, Some(0..=12)) => {}
        (Compression::Lz4 | Compression::None, Some(_)) => {
            return Err(PackError::Invalid(format!(
                "{c} takes no compression level"
            )))
        }
        (c, Some(l)) => {
            return Err(PackError::Invalid(format!(
                "{c} compression level {l} is out of range"
            )))
        }
    }
    Ok(())
}

/// Collect the tree: `usr/` and `opt/` of `src`, plus the generated release file.
fn collect(
    src: &Path,
    opts: &PackOptions,
) -> Result<(BTreeMap<String, Entry>, Vec<String>), PackError> {
    let meta = std::fs::metadata(src).map_err(io(src))?;
    if !meta.is_dir() {
        return Err(PackError::Invalid(format!(
            "{}: not a directory",
            src.display()
        )));
    }
    let mut skipped = Vec::new();
    for e in std::fs::read_dir(src).map_err(io(src))? {
        let e = e.map_err(io(src))?;
        let n = e.file_name().to_string_lossy().into_owned();
        if !MERGED_TOPS.contains(&n.as_str()) {
            skipped.push(n);
        }
    }
    skipped.sort();
    let mut out = BTreeMap::new();
    let time = |m: &std::fs::Metadata| {
        opts.epoch
            .unwrap_or_else(|| m.mtime().clamp(0, u32::MAX as i64) as u32)
    };
    for top in MERGED_TOPS {
        let p = src.join(top);
        match std::fs::symlink_metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(PackError::Io { path: p, source: e }),
            Ok(m) if !m.is_dir() => {
                return Err(PackError::Unsupported {
                    path: p,
                    what:
                        "must be a directory (systemd-sysext merges /usr and /opt as directories)"
                            .into(),
                })
            }
            Ok(_) => walk(&p, top, &mut out, &time)?,
        }
    }
    let epoch_or_now = opts.epoch.unwrap_or_else(now);
    let dir = Entry::Dir {
        mode: 0o755,
        mtime: epoch_or_now,
        xattrs: Vec::new(),
    };
    let rel_dir = RELEASE_DIR.trim_start_matches('/');
    let mut acc = String::new();
    for comp in rel_dir.split('/') {
        if !acc.is_empty() {
            acc.push('/');
        }
        acc.push_str(comp);
        match out.get(&acc) {
            Some(Entry::Dir { .. }) => {}
            Some(_) => {
                return Err(PackError::Unsupported {
                    path: src.join(&acc),
                    what: format!(
                        "must be a directory: {RELEASE_DIR}/extension-release.{} goes inside",
                        opts.name
                    ),
                })
            }
            None => {
                out.insert(acc.clone(), dir.clone());
            }
        }
    }
    out.insert(
        format!("{rel_dir}/extension-release.{}", opts.name),
        Entry::Data {
            bytes: opts.release_text().into_bytes(),
            mode: 0o644,
            mtime: epoch_or_now,
        },
    );
    Ok((out, skipped))
}

fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().min(u32::MAX as u64) as u32)
        .unwrap_or(0)
}

fn walk(
    dir: &Path,
    rel: &str,
    out: &mut BTreeMap<String, Entry>,
    time: &dyn Fn(&std::fs::Metadata) -> u32,
) -> Result<(), PackError> {
    let m = std::fs::symlink_metadata(dir).map_err(io(dir))?;
    out.insert(
        rel.to_owned(),
        Entry::Dir {
            mode: (m.permissions().mode() & 0o7777) as u16,
            mtime: time(&m),
            xattrs: read_xattrs(dir)?,
        },
    );
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        names.push(e.map_err(io(dir))?.file_name());
    }
    names.sort();
    for n in names {
        let p = dir.join(&n);
        let Some(name) = n.to_str() else {
            return Err(PackError::Unsupported {
                path: p,
                what: "file name is not UTF-8".into(),
            });
        };
        let child = format!("{rel}/{name}");
        let m = std::fs::symlink_metadata(&p).map_err(io(&p))?;
        let ft = m.file_type();
        let mode = (m.permissions().mode() & 0o7777) as u16;
        if ft.is_dir() {
            walk(&p, &child, out, time)?;
        } else if ft.is_file() {
            out.insert(
                child,
                Entry::File {
                    xattrs: read_xattrs(&p)?,
                    src: p,
                    mode,
                    mtime: time(&m),
                },
            );
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&p).map_err(io(&p))?;
            out.insert(
                child,
                Entry::Symlink {
                    target,
                    mtime: time(&m),
                },
            );
        } else {
            return Err(PackError::Unsupported {
                path: p,
                what: "device, fifo or socket: a sysext holds only files, directories and symlinks"
                    .into(),
            });
        }
    }
    Ok(())
}

/// The image (and the SHA256SUMS and NAME.conf written beside it) may not land inside
/// what is packed: it would replace a file of the tree, or be packed into the next image.
fn output_outside(src: &Path, output: &Path) -> Result<(), PackError> {
    let parent = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let (Ok(src), Ok(parent)) = (src.canonicalize(), parent.canonicalize()) else {
        return Ok(()); // a missing directory is reported where it is used
    };
    for top in MERGED_TOPS {
        let packed = src.join(top);
        if parent.starts_with(&packed) {
            return Err(PackError::Invalid(format!(
                "{}: inside {}, which is packed into the image; write the image elsewhere",
                output.display(),
                packed.display()
            )));
        }
    }
    Ok(())
}

/// Build the image at `output` (written under a temporary name, renamed at the end).
pub fn pack(src: &Path, output: &Path, opts: &PackOptions) -> Result<PackReport, PackError> {
    validate(opts)?;
    output_outside(src, output)?;
    let (tree, skipped) = collect(src, opts)?;
    let files = tree
        .values()
        .filter(|e| matches!(e, Entry::File { .. } | Entry::Data { .. }))
        .count();
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let (tmp, _tmp_guard) = crate::cleanup::temp_file(&dir, "pack-", ".partial")
        .map_err(io(&dir))?
        .split();
    let has_xattrs = tree.values().any(|e| !e.xattrs().is_empty());
    match opts.format {
        Format::Squashfs if has_xattrs => write_mksquashfs(&tree, tmp.path(), opts, &dir)?,
        Format::Squashfs => write_squashfs(&tree, tmp.path(), opts)?,
        Format::Erofs => write_erofs(&tree, tmp.path(), opts, &dir)?,
    }
    crate::cleanup::pause_point("pack-written");
    let f = tmp.as_file();
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(io(tmp.path()))?;
    f.sync_all().map_err(io(tmp.path()))?;
    tmp.persist(output).map_err(|e| PackError::Io {
        path: output.to_owned(),
        source: e.error,
    })?;
    let size = std::fs::metadata(output).map_err(io(output))?.len();
    let (sha256, _) = crate::util::sha256_file(output).map_err(io(output))?;
    Ok(PackReport {
        output: output.to_owned(),
        size,
        sha256,
        files,
        skipped,
    })
}

fn compressor(opts: &PackOptions) -> Result<FilesystemCompressor, backhand::BackhandError> {
    use backhand::compression::{CompressionOptions as O, Lz4, Zstd};
    Ok(match opts.compression {
        // refused by validate(); kept total for the type
        Compression::Lz4hc | Compression::None => {
            return Err(backhand::BackhandError::UnsupportedCompression(
                opts.compression.to_string(),
            ))
        }
        Compression::Gzip => match opts.level {
            None | Some(9) => FilesystemCompressor::new(Compressor::Gzip, None)?,
            Some(l) => FilesystemCompressor::new(
                Compressor::Gzip,
                Some(O::Gzip(backhand::compression::Gzip {
                    compression_level: l,
                    window_size: 15,
                    strategies: 0,
                })),
            )?,
        },
        Compression::Xz => {
            let mut c = FilesystemCompressor::new(Compressor::Xz, None)?;
            if let Some(l) = opts.level {
                let mut x = ExtraXz::default();
                x.level(l)?;
                c.extra(CompressionExtra::Xz(x))?;
            }
            c
        }
        // mksquashfs' zstd default is level 15
        Compression::Zstd => FilesystemCompressor::new(
            Compressor::Zstd,
            Some(O::Zstd(Zstd {
                compression_level: opts.level.unwrap_or(15),
            })),
        )?,
        // version 1 is the only lz4 format the kernel reads
        Compression::Lz4 => FilesystemCompressor::new(
            Compressor::Lz4,
            Some(O::Lz4(Lz4 {
                version: 1,
                flags: 0,
            })),
        )?,
    })
}

fn write_squashfs(
    tree: &BTreeMap<String, Entry>,
    out: &Path,
    opts: &PackOptions,
) -> Result<(), PackError> {
    write_squashfs_threads(tree, out, opts, 0)
}

/// [`write_squashfs`] compressing on `threads` threads (0: every CPU); the bytes are the
/// same whatever the number.
fn write_squashfs_threads(
    tree: &BTreeMap<String, Entry>,
    out: &Path,
    opts: &PackOptions,
    threads: usize,
) -> Result<(), PackError> {
    let sq = |e: backhand::BackhandError| PackError::Squashfs(e.to_string());
    let mut fs = FilesystemWriter::default();
    fs.set_compression_threads(threads);
    fs.set_block_size(opts.block_size);
    fs.set_time(opts.epoch.unwrap_or_else(now));
    fs.set_only_root_id();
    fs.set_compressor(compressor(opts).map_err(sq)?);
    fs.set_root_mode(0o755);
    fs.set_root_uid(0);
    fs.set_root_gid(0);
    let h = |mode: u16, mtime: u32| NodeHeader::new(mode, 0, 0, mtime);
    for (path, e) in tree {
        match e {
            Entry::Dir { mode, mtime, .. } => fs.push_dir(path, h(*mode, *mtime)),
            Entry::File {
                src, mode, mtime, ..
            } => fs.push_file_from_path(src.clone(), path, h(*mode, *mtime)),
            Entry::Data { bytes, mode, mtime } => {
                fs.push_file(Cursor::new(bytes.clone()), path, h(*mode, *mtime))
            }
            Entry::Symlink { target, mtime } => {
                fs.push_symlink(target.clone(), path, h(0o777, *mtime))
            }
        }
        .map_err(|e| PackError::Squashfs(format!("{path}: {e}")))?;
    }
    fs.set_no_padding();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(out)
        .map_err(io(out))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let (sb, _) = fs.write(&mut w).map_err(sq)?;
    w.flush().map_err(io(out))?;
    let f = w.into_inner().map_err(|e| PackError::Io {
        path: out.to_owned(),
        source: e.into_error(),
    })?;
    // backhand writes a duplicate file's blocks, then seeks back so later data
    // overwrites them; whatever is not overwritten is stale data past the filesystem.
    // Cut the file at bytes_used, then pad with zeros to 4 KiB as mksquashfs does.
    f.set_len(sb.bytes_used).map_err(io(out))?;
    f.set_len(pad_4k(sb.bytes_used)).map_err(io(out))?;
    Ok(())
}

/// `n` rounded up to a multiple of 4 KiB (mksquashfs' padding of a squashfs file).
pub fn pad_4k(n: u64) -> u64 {
    n.div_ceil(4096) * 4096
}

/// Lay the tree out under `root` for an outside writer: files hard linked from the
/// source where possible (their mode and xattrs come along), else copied with mode and
/// xattrs; directories get their mode and xattrs last.
fn stage(tree: &BTreeMap<String, Entry>, root: &Path) -> Result<(), PackError> {
    let set_xattrs = |dst: &Path, xattrs: &[(String, Vec<u8>)]| -> Result<(), PackError> {
        for (n, v) in xattrs {
            rustix::fs::lsetxattr(dst, n.as_str(), v, rustix::fs::XattrFlags::empty()).map_err(
                |e| PackError::Unsupported {
                    path: dst.to_owned(),
                    what: format!(
                        "cannot set extended attribute {n} on the staged copy ({e}); stage the source on the same filesystem as the output, or pack as a user allowed to set it"
                    ),
                },
            )?;
        }
        Ok(())
    };
    let mut dirs = Vec::new();
    for (path, e) in tree {
        let dst = root.join(path);
        match e {
            Entry::Dir { mode, xattrs, .. } => {
                std::fs::create_dir_all(&dst).map_err(io(&dst))?;
                dirs.push((dst, *mode, xattrs));
            }
            Entry::File {
                src, mode, xattrs, ..
            } => {
                if std::fs::hard_link(src, &dst).is_err() {
                    std::fs::copy(src, &dst).map_err(io(&dst))?;
                    std::fs::set_permissions(
                        &dst,
                        std::fs::Permissions::from_mode(u32::from(*mode)),
                    )
                    .map_err(io(&dst))?;
                    set_xattrs(&dst, xattrs)?;
                }
            }
            Entry::Data { bytes, mode, .. } => {
                std::fs::write(&dst, bytes).map_err(io(&dst))?;
                std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(u32::from(*mode)))
                    .map_err(io(&dst))?;
            }
            Entry::Symlink { target, .. } => {
                std::os::unix::fs::symlink(target, &dst).map_err(io(&dst))?
            }
        }
    }
    for (d, mode, xattrs) in dirs.iter().rev() {
        set_xattrs(d, xattrs)?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(u32::from(*mode)))
            .map_err(io(d))?;
    }
    Ok(())
}

/// A tree with extended attributes, as squashfs: through `mksquashfs` (backhand writes
/// no xattr table), with the same compressor, level, block size, root ownership and
/// timestamps as the in-process writer.
fn write_mksquashfs(
    tree: &BTreeMap<String, Entry>,
    out: &Path,
    opts: &PackOptions,
    scratch: &Path,
) -> Result<(), PackError> {
    let with = tree
        .iter()
        .find(|(_, e)| !e.xattrs().is_empty())
        .map(|(p, _)| p.as_str())
        .unwrap_or("");
    if opts.compression == Compression::Xz && opts.level.is_some() {
        return Err(PackError::Invalid(format!(
            "{with} has extended attributes, so mksquashfs writes the image, and its xz takes no level: drop --compression-level"
        )));
    }
    let stage_dir = crate::cleanup::temp_dir(scratch, "stage-").map_err(io(scratch))?;
    stage(tree, stage_dir.path())?;
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(stage_dir.path())
        .arg(out)
        .args([
            "-noappend",
            "-quiet",
            "-no-progress",
            "-all-root",
            "-xattrs",
        ])
        .arg("-comp")
        .arg(opts.compression.to_string())
        .arg("-b")
        .arg(opts.block_size.to_string());
    let level = match opts.compression {
        Compression::Gzip => Some(opts.level.unwrap_or(9)),
        Compression::Zstd => Some(opts.level.unwrap_or(15)),
        _ => None,
    };
    if let Some(l) = level {
        cmd.arg("-Xcompression-level").arg(l.to_string());
    }
    if let Some(t) = opts.epoch {
        cmd.arg("-mkfs-time")
            .arg(t.to_string())
            .arg("-all-time")
            .arg(t.to_string());
    }
    cmd.env_remove("SOURCE_DATE_EPOCH");
    match crate::tools::run(&mut cmd, "writing the squashfs image") {
        Err(crate::tools::ToolError::Missing { .. }) => Err(PackError::Invalid(format!(
            "{with} has extended attributes, which flatbake's own squashfs writer cannot store: install squashfs-tools (mksquashfs), or use --format erofs"
        ))),
        Err(e) => Err(e.into()),
        Ok(_) => Ok(()),
    }
}

/// EROFS through `mkfs.erofs`, compressed with `opts.compression` (lz4hc by default,
/// like the bakery), xattrs kept: the tree is staged with hard links (copies across
/// filesystems) in a scratch directory.
fn write_erofs(
    tree: &BTreeMap<String, Entry>,
    out: &Path,
    opts: &PackOptions,
    scratch: &Path,
) -> Result<(), PackError> {
    let z = erofs_compressor(opts)?;
    let stage_dir = crate::cleanup::temp_dir(scratch, "stage-").map_err(io(scratch))?;
    let root = stage_dir.path();
    stage(tree, root)?;
    let mut cmd = Command::new("mkfs.erofs");
    cmd.arg("--quiet").arg("--all-root");
    if let Some(z) = z {
        cmd.arg(format!("-z{z}"));
    }
    if let Some(t) = opts.epoch {
        // a fixed time for every inode and a UUID derived from the name, for reproducibility
        let seed = crate::util::sha256_bytes(
            format!("{}-{}-{}", opts.name, opts.version, opts.arch).as_bytes(),
        );
        let u = &seed[..32];
        cmd.arg(format!("-T{t}")).arg("--ignore-mtime").arg(format!(
            "-U{}-{}-{}-{}-{}",
            &u[..8],
            &u[8..12],
            &u[12..16],
            &u[16..20],
            &u[20..32]
        ));
    }
    cmd.arg(out).arg(root);
    crate::tools::run(&mut cmd, "writing the EROFS image")?;
    Ok(())
}

/// The `-z` argument of `mkfs.erofs` for `opts` (`None`: uncompressed), refused with
/// the list when this mkfs.erofs lacks the compressor.
fn erofs_compressor(opts: &PackOptions) -> Result<Option<String>, PackError> {
    let name = match opts.compression {
        Compression::None => return Ok(None),
        Compression::Lz4hc => "lz4hc",
        Compression::Lz4 => "lz4",
        Compression::Xz => "lzma",
        Compression::Gzip => "deflate",
        Compression::Zstd => "zstd",
    };
    let available = erofs_compressors();
    if !available.iter().any(|a| a == name) {
        return Err(PackError::Invalid(format!(
            "--compression {}: this mkfs.erofs has no {name} compressor (it has: {}); choose one of those or none",
            opts.compression,
            if available.is_empty() { "none".to_owned() } else { available.join(", ") }
        )));
    }
    Ok(Some(match opts.level {
        Some(l) => format!("{name},{l}"),
        None => name.to_owned(),
    }))
}

/// The compressors `mkfs.erofs --help` lists ("Available compressors are: lz4hc, lz4").
fn erofs_compressors() -> Vec<String> {
    let Ok(o) = Command::new("mkfs.erofs").arg("--help").output() else {
        return Vec::new();
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Available compressors are:"))
        .map(|l| {
            l.split([',', ' '])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Add or replace the line for `file` in the `SHA256SUMS` file in `dir` (sha256sum format).
pub fn update_sums(dir: &Path, file: &str, sha256: &str) -> Result<PathBuf, PackError> {
    let path = dir.join("SHA256SUMS");
    let old = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(PackError::Io { path, source: e }),
    };
    let mut lines: Vec<String> = old
        .lines()
        .filter(|l| {
            let n = l
                .split_whitespace()
                .nth(1)
                .map(|n| n.trim_start_matches('*'));
            !l.trim().is_empty() && n != Some(file)
        })
        .map(str::to_owned)
        .collect();
    lines.push(format!("{sha256}  {file}"));
    lines.sort_by(|a, b| {
        a.split_whitespace()
            .nth(1)
            .cmp(&b.split_whitespace().nth(1))
    });
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&path, text).map_err(io(&path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> PackOptions {
        PackOptions {
            name: "myext".into(),
            version: "1.2.3".into(),
            arch: Arch::X86_64,
            os: "_any".into(),
            format: Format::Squashfs,
            compression: DEFAULT_COMPRESSION,
            level: None,
            block_size: DEFAULT_BLOCK_SIZE,
            reload_manager: false,
            epoch: Some(0),
        }
    }

    #[test]
    fn release_text_follows_the_bakery() {
        let mut o = opts();
        assert_eq!(o.release_text(), "ID=_any\nARCHITECTURE=x86-64\n");
        o.os = "flatcar".into();
        o.reload_manager = true;
        assert_eq!(
            o.release_text(),
            "ID=flatcar\nSYSEXT_LEVEL=1.0\nARCHITECTURE=x86-64\nEXTENSION_RELOAD_MANAGER=1\n"
        );
        assert_eq!(o.file_name(), "myext-1.2.3-x86-64.raw");
    }

    #[test]
    fn rejects_bad_options() {
        let mut o = opts();
        o.version = "1.2-3".into();
        assert!(validate(&o).unwrap_err().to_string().contains("'-'"));
        let mut o = opts();
        o.name = "a/b".into();
        assert!(validate(&o).is_err());
        let mut o = opts();
        o.block_size = 3000;
        assert!(validate(&o).is_err());
        let mut o = opts();
        o.compression = Compression::Gzip;
        o.level = Some(12);
        assert!(validate(&o).is_err());
        assert!(validate(&opts()).is_ok());
    }

    #[test]
    fn packs_only_usr_and_opt_and_reads_back() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("root");
        std::fs::create_dir_all(src.join("usr/bin")).unwrap();
        std::fs::create_dir_all(src.join("opt/x")).unwrap();
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("usr/bin/hello"), "#!/bin/sh\necho hi\n").unwrap();
        std::fs::set_permissions(
            src.join("usr/bin/hello"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(src.join("opt/x/data"), vec![7u8; 300_000]).unwrap();
        std::fs::write(src.join("etc/ignored"), "x").unwrap();
        std::os::unix::fs::symlink("hello", src.join("usr/bin/hi")).unwrap();
        let out = d.path().join("out.raw");
        let r = pack(&src, &out, &opts()).unwrap();
        assert_eq!(r.skipped, vec!["etc".to_owned()]);
        assert_eq!(r.files, 3);
        let img = super::super::image::open(&out, "myext").unwrap();
        assert_eq!(img.release.unwrap().get("ARCHITECTURE"), Some("x86-64"));
        let f = backhand::FilesystemReader::from_reader(std::io::BufReader::new(
            std::fs::File::open(&out).unwrap(),
        ))
        .unwrap();
        let paths: Vec<String> = f
            .files()
            .map(|n| n.fullpath.to_string_lossy().into_owned())
            .collect();
        assert!(paths.contains(&"/usr/bin/hi".to_owned()), "{paths:?}");
        assert!(!paths.iter().any(|p| p.starts_with("/etc")), "{paths:?}");
        assert!(f
            .files()
            .all(|n| n.header.uid == 0 && n.header.gid == 0 && n.header.mtime == 0));
    }

    #[test]
    fn same_bytes_on_any_number_of_threads_and_small_duplicates_share_data() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("root");
        std::fs::create_dir_all(src.join("usr/share/doc")).unwrap();
        let mut x = 7u64;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (x >> 33) as u8
                })
                .collect()
        };
        let small = noise(20_000);
        for i in 0..40 {
            std::fs::write(src.join(format!("usr/share/doc/copy{i}")), &small).unwrap();
        }
        std::fs::write(src.join("usr/share/doc/big"), noise(3 << 20)).unwrap();
        let (tree, _) = collect(&src, &opts()).unwrap();
        let image = |threads: usize| {
            let out = d.path().join(format!("t{threads}.raw"));
            std::fs::File::create(&out).unwrap();
            write_squashfs_threads(&tree, &out, &opts(), threads).unwrap();
            std::fs::read(&out).unwrap()
        };
        let one = image(1);
        assert!(one == image(3), "3 threads wrote other bytes than 1");
        // 40 copies of 20 kB of noise: stored once
        assert!(one.len() < (3 << 20) + 60_000, "{} bytes", one.len());
        let f = backhand::FilesystemReader::from_reader(Cursor::new(one)).unwrap();
        let mut copies = 0;
        for n in f.files() {
            if let backhand::InnerNode::File(file) = &n.inner {
                if n.fullpath.to_string_lossy().contains("copy") {
                    let mut got = Vec::new();
                    std::io::Read::read_to_end(&mut f.file(file).reader(), &mut got).unwrap();
                    assert!(got == small, "{}", n.fullpath.display());
                    copies += 1;
                }
            }
        }
        assert_eq!(copies, 40);
    }

    /// Many fragment blocks between multi-block files, duplicates of both kinds, holes
    /// and empty files: where each block lands must not depend on how many threads
    /// compress (fragment blocks and data blocks are written in the order they fill).
    #[test]
    fn same_bytes_on_any_number_of_threads_with_many_fragment_blocks() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("root");
        let mut x = 11u64;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (x >> 33) as u8
                })
                .collect()
        };
        let text = |n: usize, seed: usize| -> Vec<u8> {
            (0..n)
                .flat_map(|i| format!("{seed} line {i} of the documentation\n").into_bytes())
                .collect()
        };
        let blob = noise(300_000);
        for dir in 0..12 {
            let p = src.join(format!("usr/share/d{dir:02}"));
            std::fs::create_dir_all(&p).unwrap();
            // ~ 150 kB of distinct small files: more than one fragment block per dir
            for i in 0..30 {
                let mut small = noise(2_000 + 97 * i);
                small.extend(text(40, dir * 100 + i));
                std::fs::write(p.join(format!("s{i}")), &small).unwrap();
            }
            std::fs::write(p.join("big"), [&blob[..], &text(dir * 500, dir)].concat()).unwrap();
            std::fs::write(
                p.join("big-copy"),
                [&blob[..], &text(dir * 500, dir)].concat(),
            )
            .unwrap();
            std::fs::write(p.join("empty"), b"").unwrap();
            std::fs::write(p.join("zeros"), vec![0u8; 128 * 1024 * 2 + 7]).unwrap();
        }
        let (tree, _) = collect(&src, &opts()).unwrap();
        let image = |threads: usize| {
            let out = d.path().join(format!("t{threads}.raw"));
            std::fs::File::create(&out).unwrap();
            write_squashfs_threads(&tree, &out, &opts(), threads).unwrap();
            std::fs::read(&out).unwrap()
        };
        let one = image(1);
        for threads in [2, 3, 8] {
            assert!(
                one == image(threads),
                "{threads} threads wrote other bytes than 1"
            );
        }
        let f = backhand::FilesystemReader::from_reader(Cursor::new(one)).unwrap();
        let mut checked = 0;
        for n in f.files() {
            if let backhand::InnerNode::File(file) = &n.inner {
                let mut got = Vec::new();
                std::io::Read::read_to_end(&mut f.file(file).reader(), &mut got).unwrap();
                let rel = n.fullpath.strip_prefix("/").unwrap();
                if rel.starts_with("usr/share") {
                    assert!(
                        got == std::fs::read(src.join(rel)).unwrap(),
                        "{}",
                        rel.display()
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 12 * 34, "files read back");
    }

    #[test]
    fn sums_file_is_updated_in_place() {
        let d = tempfile::tempdir().unwrap();
        update_sums(d.path(), "b.raw", "bb").unwrap();
        update_sums(d.path(), "a.raw", "aa").unwrap();
        update_sums(d.path(), "b.raw", "cc").unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("SHA256SUMS")).unwrap(),
            "aa  a.raw\ncc  b.raw\n"
        );
    }
}
