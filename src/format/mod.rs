//! Vendor disk formats: turn a (sparse) raw disk image into qcow2, VHD, VHDX or VMDK.
//!
//! This module owns the choice of format ([`DiskFormat`], with the names the CLI uses),
//! the options every writer shares ([`WriteOptions`]), and the one entry point
//! [`write`]. Each format's facts live in its own module: [`raw`], [`qcow2`], [`vhd`],
//! [`vhdx`], [`vmdk`]. Shared machinery: [`source`] walks the input's data extents and
//! drops all-zero clusters, [`pipeline`] runs compression on all cores in order.
//!
//! Every writer streams: it reads only the input's data extents (`SEEK_DATA`/`SEEK_HOLE`),
//! treats all-zero clusters inside them as holes, never writes zeros for holes, and
//! keeps memory bounded (a few MiB per thread plus per-format tables of a few bytes per
//! cluster). On error the half-written output is removed.
//!
//! Format names ([`DiskFormat`]'s `FromStr`/`Display`):
//!
//! | name | format | qemu-img equivalent |
//! | --- | --- | --- |
//! | `raw` | sparse raw copy | `-O raw` |
//! | `qcow2` | qcow2 v2 (compat=0.10), 64 KiB clusters | `-O qcow2 -o compat=0.10` |
//! | `qcow2-compressed` | same, deflate-compressed clusters | `-c -O qcow2 -o compat=0.10` |
//! | `vhd-fixed` | VHD fixed, force_size | `-O vpc -o subformat=fixed,force_size` |
//! | `vhd-dynamic` | VHD dynamic, 2 MiB blocks, force_size | `-O vpc -o subformat=dynamic,force_size` |
//! | `vhdx` | VHDX dynamic | `-O vhdx` |
//! | `vmdk-monolithic-sparse[-ide\|-lsilogic]` | hosted sparse extent | `-O vmdk -o subformat=monolithicSparse` |
//! | `vmdk-stream-optimized[-ide\|-lsilogic]` | streamOptimized | `-O vmdk -o subformat=streamOptimized` |
//!
//! A VMDK name without adapter means `ide` (qemu-img's default); `Display` always
//! prints the adapter.

pub mod pipeline;
pub mod qcow2;
pub mod raw;
pub mod reuse;
pub mod source;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The two VMDK layouts flatbake writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmdkSubformat {
    /// One file: header, embedded descriptor, redundant and primary grain directories
    /// and tables, then uncompressed 64 KiB grains.
    MonolithicSparse,
    /// One file meant for streaming (OVA): compressed grains with markers, tables and
    /// footer at the end.
    StreamOptimized,
}

/// The virtual disk controller recorded in the VMDK descriptor (`ddb.adapterType`); it
/// also decides the descriptor's CHS geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmdkAdapter {
    Ide,
    LsiLogic,
}

/// A disk image format flatbake can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskFormat {
    Raw,
    Qcow2 {
        compressed: bool,
    },
    VhdFixed,
    VhdDynamic,
    Vhdx,
    Vmdk {
        subformat: VmdkSubformat,
        adapter: VmdkAdapter,
    },
}

impl DiskFormat {
    /// Every format, once (VMDK with both adapters), for help texts and tests.
    pub const ALL: [DiskFormat; 10] = [
        DiskFormat::Raw,
        DiskFormat::Qcow2 { compressed: false },
        DiskFormat::Qcow2 { compressed: true },
        DiskFormat::VhdFixed,
        DiskFormat::VhdDynamic,
        DiskFormat::Vhdx,
        DiskFormat::Vmdk {
            subformat: VmdkSubformat::MonolithicSparse,
            adapter: VmdkAdapter::Ide,
        },
        DiskFormat::Vmdk {
            subformat: VmdkSubformat::MonolithicSparse,
            adapter: VmdkAdapter::LsiLogic,
        },
        DiskFormat::Vmdk {
            subformat: VmdkSubformat::StreamOptimized,
            adapter: VmdkAdapter::Ide,
        },
        DiskFormat::Vmdk {
            subformat: VmdkSubformat::StreamOptimized,
            adapter: VmdkAdapter::LsiLogic,
        },
    ];

    /// The usual file name extension (without the dot).
    pub fn extension(&self) -> &str {
        match self {
            DiskFormat::Raw => "img",
            DiskFormat::Qcow2 { .. } => "qcow2",
            DiskFormat::VhdFixed | DiskFormat::VhdDynamic => "vhd",
            DiskFormat::Vhdx => "vhdx",
            DiskFormat::Vmdk { .. } => "vmdk",
        }
    }

    /// The name qemu-img uses for this format (`-f`/`-O`).
    pub fn qemu_name(&self) -> &str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 { .. } => "qcow2",
            DiskFormat::VhdFixed | DiskFormat::VhdDynamic => "vpc",
            DiskFormat::Vhdx => "vhdx",
            DiskFormat::Vmdk { .. } => "vmdk",
        }
    }
}

impl fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 { compressed: false } => "qcow2",
            DiskFormat::Qcow2 { compressed: true } => "qcow2-compressed",
            DiskFormat::VhdFixed => "vhd-fixed",
            DiskFormat::VhdDynamic => "vhd-dynamic",
            DiskFormat::Vhdx => "vhdx",
            DiskFormat::Vmdk { subformat, adapter } => {
                let sub = match subformat {
                    VmdkSubformat::MonolithicSparse => "vmdk-monolithic-sparse",
                    VmdkSubformat::StreamOptimized => "vmdk-stream-optimized",
                };
                let ad = match adapter {
                    VmdkAdapter::Ide => "ide",
                    VmdkAdapter::LsiLogic => "lsilogic",
                };
                return write!(f, "{sub}-{ad}");
            }
        };
        f.write_str(s)
    }
}

impl FromStr for DiskFormat {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let f = match s {
            "raw" => DiskFormat::Raw,
            "qcow2" => DiskFormat::Qcow2 { compressed: false },
            "qcow2-compressed" => DiskFormat::Qcow2 { compressed: true },
            "vhd-fixed" => DiskFormat::VhdFixed,
            "vhd-dynamic" => DiskFormat::VhdDynamic,
            "vhdx" => DiskFormat::Vhdx,
            _ => {
                let (subformat, rest) = if let Some(r) = s.strip_prefix("vmdk-monolithic-sparse") {
                    (VmdkSubformat::MonolithicSparse, r)
                } else if let Some(r) = s.strip_prefix("vmdk-stream-optimized") {
                    (VmdkSubformat::StreamOptimized, r)
                } else {
                    return Err(FormatError::UnknownFormat {
                        name: s.to_string(),
                    });
                };
                let adapter = match rest {
                    "" | "-ide" => VmdkAdapter::Ide,
                    "-lsilogic" => VmdkAdapter::LsiLogic,
                    _ => {
                        return Err(FormatError::UnknownFormat {
                            name: s.to_string(),
                        })
                    }
                };
                DiskFormat::Vmdk { subformat, adapter }
            }
        };
        Ok(f)
    }
}

/// Options every writer takes. `Default`: the input's size, all cores, the output's
/// own file name.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// The virtual disk size; `None` means the input's size. Must not be smaller than
    /// the input (the rest reads as zeros). Exoscale, for one, wants 10 GiB.
    pub virtual_size: Option<u64>,
    /// Worker threads for compression (qcow2-compressed, vmdk-stream-optimized); 0 means
    /// all cores.
    pub threads: usize,
    /// The file name the output will have once the caller renames it into place, for
    /// formats that record their own file name (the VMDK extent line). `None`: the
    /// output path's file name.
    pub final_name: Option<String>,
}

impl WriteOptions {
    pub(crate) fn worker_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// The virtual disk size recorded in the output.
    pub virtual_size: u64,
    /// Bytes of non-zero input data (whole clusters) carried into the output.
    pub data_bytes: u64,
    /// Length of the output file.
    pub output_bytes: u64,
}

/// Why a disk image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("unknown disk format {name:?} (known: raw, qcow2, qcow2-compressed, vhd-fixed, vhd-dynamic, vhdx, vmdk-monolithic-sparse[-ide|-lsilogic], vmdk-stream-optimized[-ide|-lsilogic])")]
    UnknownFormat { name: String },
    #[error("{doing} {}: {source}", path.display())]
    Io {
        doing: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{}: {problem}", path.display())]
    Size { path: PathBuf, problem: String },
    #[error("{}: compression failed: {problem}", path.display())]
    Compress { path: PathBuf, problem: String },
}

impl FormatError {
    pub(crate) fn read(path: &Path) -> impl FnOnce(io::Error) -> FormatError + '_ {
        move |source| FormatError::Io {
            doing: "reading",
            path: path.to_path_buf(),
            source,
        }
    }
    pub(crate) fn write(path: &Path) -> impl FnOnce(io::Error) -> FormatError + '_ {
        move |source| FormatError::Io {
            doing: "writing",
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Write `input` (a raw disk image) to `output` in `format`. `output` is created or
/// truncated; on error it is removed. The caller handles temporary names and renames.
pub fn write(
    format: &DiskFormat,
    input: &Path,
    output: &Path,
    opts: &WriteOptions,
) -> Result<WriteStats, FormatError> {
    let src = source::Source::open(input)?;
    write_source(format, &src, output, opts, None)
}

/// A compressed qcow2 of `input` that keeps `reuse`'s source clusters where the guest
/// bytes did not change ([`reuse`]); same contract as [`write`].
pub fn write_qcow2_reusing(
    input: &Path,
    output: &Path,
    opts: &WriteOptions,
    reuse: &reuse::Reuse,
) -> Result<WriteStats, FormatError> {
    let src = source::Source::open(input)?;
    write_source(
        &DiskFormat::Qcow2 { compressed: true },
        &src,
        output,
        opts,
        Some(reuse),
    )
}

/// Like [`write`], from an already opened input; `input_name` names it in errors.
pub fn write_file(
    format: &DiskFormat,
    input: &std::fs::File,
    input_name: &Path,
    output: &Path,
    opts: &WriteOptions,
) -> Result<WriteStats, FormatError> {
    let file = input.try_clone().map_err(FormatError::read(input_name))?;
    let src = source::Source::from_file(file, input_name)?;
    write_source(format, &src, output, opts, None)
}

fn write_source(
    format: &DiskFormat,
    src: &source::Source,
    output: &Path,
    opts: &WriteOptions,
    reuse: Option<&reuse::Reuse>,
) -> Result<WriteStats, FormatError> {
    let input = src.path();
    let virtual_size = match opts.virtual_size {
        None => src.size(),
        Some(v) if v < src.size() => {
            return Err(FormatError::Size {
                path: input.to_path_buf(),
                problem: format!(
                    "is {} bytes, larger than the requested virtual size {v}",
                    src.size()
                ),
            })
        }
        Some(v) => v,
    };
    if virtual_size % 512 != 0 {
        return Err(FormatError::Size {
            path: input.to_path_buf(),
            problem: format!("virtual size {virtual_size} is not a multiple of 512-byte sectors"),
        });
    }
    // Refuse before creating the output, so nothing is left behind.
    if matches!(format, DiskFormat::VhdFixed | DiskFormat::VhdDynamic) {
        vhd::check_size(input, virtual_size)?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(output)
        .map_err(FormatError::write(output))?;
    let out = Output { file, path: output };
    let result = match format {
        DiskFormat::Raw => raw::write(src, &out, virtual_size),
        DiskFormat::Qcow2 { compressed } => qcow2::write(
            src,
            &out,
            virtual_size,
            *compressed,
            opts.worker_threads(),
            reuse,
        ),
        DiskFormat::VhdFixed => vhd::write_fixed(src, &out, virtual_size),
        DiskFormat::VhdDynamic => vhd::write_dynamic(src, &out, virtual_size),
        DiskFormat::Vhdx => vhdx::write(src, &out, virtual_size),
        DiskFormat::Vmdk { subformat, adapter } => vmdk::write(
            src,
            &out,
            virtual_size,
            *subformat,
            *adapter,
            opts.worker_threads(),
            opts.final_name.as_deref(),
        ),
    }
    .and_then(|data_bytes| {
        out.file.sync_all().map_err(FormatError::write(output))?;
        let output_bytes = out
            .file
            .metadata()
            .map_err(FormatError::write(output))?
            .len();
        Ok(WriteStats {
            virtual_size,
            data_bytes,
            output_bytes,
        })
    });
    if result.is_err() {
        drop(out);
        let _ = std::fs::remove_file(output);
    }
    result
}

/// The output file and its name, for error messages.
pub(crate) struct Output<'a> {
    pub file: std::fs::File,
    pub path: &'a Path,
}

impl Output<'_> {
    pub(crate) fn write_at(&self, buf: &[u8], off: u64) -> Result<(), FormatError> {
        use std::os::unix::fs::FileExt;
        self.file
            .write_all_at(buf, off)
            .map_err(FormatError::write(self.path))
    }
    pub(crate) fn set_len(&self, len: u64) -> Result<(), FormatError> {
        self.file
            .set_len(len)
            .map_err(FormatError::write(self.path))
    }
}

/// 16 bytes that differ from run to run (UUIDs, GUIDs, VMDK CIDs): SHA-256 of the time,
/// the process id, a counter and `salt`. Good enough for identifiers; not for secrets.
pub(crate) fn unique_bytes(salt: &[u8]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.update(now.as_nanos().to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.update(salt);
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    // RFC 4122 version 4 / variant bits, so the bytes also pass as a random UUID.
    out[6] = (out[6] & 0x0f) | 0x40;
    out[8] = (out[8] & 0x3f) | 0x80;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in DiskFormat::ALL {
            let s = f.to_string();
            assert_eq!(s.parse::<DiskFormat>().unwrap(), f, "{s}");
        }
        assert_eq!(
            "vmdk-stream-optimized".parse::<DiskFormat>().unwrap(),
            DiskFormat::Vmdk {
                subformat: VmdkSubformat::StreamOptimized,
                adapter: VmdkAdapter::Ide
            }
        );
        assert!("vmdk-stream-optimized-scsi".parse::<DiskFormat>().is_err());
        assert!("qcow3".parse::<DiskFormat>().is_err());
    }

    #[test]
    fn extensions() {
        assert_eq!(DiskFormat::VhdFixed.extension(), "vhd");
        assert_eq!(DiskFormat::Qcow2 { compressed: true }.extension(), "qcow2");
    }

    #[test]
    fn unique_bytes_differ() {
        assert_ne!(unique_bytes(b"x"), unique_bytes(b"x"));
    }
}
