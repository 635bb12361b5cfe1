//! Writing a compressed qcow2 that keeps a source qcow2's compressed clusters: a guest
//! cluster whose bytes equal the source image's is stored as the source's compressed
//! bytes, copied verbatim; only changed clusters are compressed anew. The output is then
//! the source image outside what changed, and costs a read of the source plus a
//! compression of the changes (Flatcar's published vendor qcow2, baked in place:
//! `release::published`).
//!
//! "Equal" is judged byte for byte against `pristine`, the source's guest disk already
//! inflated to a sparse raw file (the cache keeps it, checked, beside the qcow2), so no
//! source cluster is decompressed twice.

use crate::disk::qcow2map::{Host, Qcow2Map};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::FormatError;

/// A source qcow2, its map and its inflated guest disk.
pub struct Reuse {
    src: File,
    src_path: PathBuf,
    pristine: File,
    pristine_path: PathBuf,
    /// guest cluster -> (offset, length) of its compressed bytes in `src`
    compressed: HashMap<u64, (u64, u64)>,
    virtual_size: u64,
    reused: AtomicU64,
    reused_bytes: AtomicU64,
}

/// How much of the source an output kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReuseStats {
    /// Compressed clusters the source holds.
    pub source_clusters: u64,
    /// Of them, copied verbatim.
    pub reused: u64,
    /// Their compressed bytes.
    pub reused_bytes: u64,
}

impl Reuse {
    /// `src` is the qcow2 file, `pristine` its guest disk as a raw file. Only a source
    /// with the writer's 64 KiB clusters can lend its clusters; another is refused.
    pub fn open(src: &Path, pristine: &Path) -> Result<Reuse, FormatError> {
        let file = crate::input::open_regular(src).map_err(FormatError::read(src))?;
        let map = Qcow2Map::read(&file, src).map_err(|e| FormatError::Size {
            path: src.to_path_buf(),
            problem: e.problem,
        })?;
        if map.cluster_bits != super::qcow2::CLUSTER_BITS {
            return Err(FormatError::Size {
                path: src.to_path_buf(),
                problem: format!(
                    "has {}-byte clusters; only 64 KiB clusters can be kept verbatim",
                    map.cluster_size()
                ),
            });
        }
        let p = crate::input::open_regular(pristine).map_err(FormatError::read(pristine))?;
        let plen = p.metadata().map_err(FormatError::read(pristine))?.len();
        if plen != map.virtual_size {
            return Err(FormatError::Size {
                path: pristine.to_path_buf(),
                problem: format!(
                    "is {plen} bytes, but {} has a {}-byte disk",
                    src.display(),
                    map.virtual_size
                ),
            });
        }
        let compressed = map
            .clusters
            .iter()
            .filter_map(|&(g, h)| match h {
                Host::Compressed { offset, len } if len < super::qcow2::CLUSTER => {
                    Some((g, (offset, len)))
                }
                _ => None,
            })
            .collect();
        Ok(Reuse {
            src: file,
            src_path: src.to_path_buf(),
            pristine: p,
            pristine_path: pristine.to_path_buf(),
            compressed,
            virtual_size: map.virtual_size,
            reused: AtomicU64::new(0),
            reused_bytes: AtomicU64::new(0),
        })
    }

    /// The virtual size of the source disk.
    pub fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    /// When guest cluster `idx` holds `data` in the source too: appends the source's
    /// compressed bytes for it to `out` and returns their length.
    pub(crate) fn verbatim(
        &self,
        idx: u64,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<usize>, FormatError> {
        let Some(&(offset, len)) = self.compressed.get(&idx) else {
            return Ok(None);
        };
        let cl = data.len() as u64;
        let start = idx * cl;
        if start + cl > self.virtual_size {
            return Ok(None);
        }
        let mut was = vec![0u8; data.len()];
        self.pristine
            .read_exact_at(&mut was, start)
            .map_err(FormatError::read(&self.pristine_path))?;
        if was != data {
            return Ok(None);
        }
        let at = out.len();
        out.resize(at + len as usize, 0);
        self.src
            .read_exact_at(&mut out[at..], offset)
            .map_err(FormatError::read(&self.src_path))?;
        self.reused.fetch_add(1, Ordering::Relaxed);
        self.reused_bytes.fetch_add(len, Ordering::Relaxed);
        Ok(Some(len as usize))
    }

    pub fn stats(&self) -> ReuseStats {
        ReuseStats {
            source_clusters: self.compressed.len() as u64,
            reused: self.reused.load(Ordering::Relaxed),
            reused_bytes: self.reused_bytes.load(Ordering::Relaxed),
        }
    }
}
