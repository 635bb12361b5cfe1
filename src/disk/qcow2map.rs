//! flatbake's one qcow2 parser: the cluster map of a qcow2 file (v2/v3, no backing
//! file, no encryption): for every allocated guest cluster, where its bytes are in the
//! file (a standard cluster, or a compressed descriptor's byte range), read once with
//! every bound checked; [`Qcow2Map::read_cluster`], one cluster's guest bytes; and
//! [`inflate`], which turns the file into a sparse raw image on all cores (zero
//! clusters and all-zero data stay holes). Used by the image reader
//! (`disk::image::Disk`, every command that reads a qcow2), by the published-image fast
//! path (`release::published`) to decompress a vendor's qcow2, and by the qcow2 writer
//! (`format::reuse`) to copy untouched compressed clusters verbatim.
//!
//! Reading ignores refcounts, so a v3 image left dirty (incompatible feature bit 0) is
//! read like a clean one; every other incompatible feature is refused. An L1 table
//! larger than the virtual size needs (`qemu-img resize` grows it) is accepted up to
//! qemu's own limit, but an entry beyond the virtual size must map nothing.
//!
//! Bounds: the header's sizes are checked against the file (L1 table, each L2 table,
//! each cluster inside the file), the virtual size is at most 16 TiB, the L1 table at
//! most 32 MiB, each L2 table is read once, and a guest cluster mapped twice is
//! refused; so a hostile or truncated file is refused in one line, reading at most its
//! own size, and the map holds at most one entry per 8 bytes of L2 tables in the file.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Largest virtual size accepted (16 TiB: Flatcar's disks are 8-30 GiB).
const MAX_VIRTUAL: u64 = 16 << 40;
/// Most L1 entries accepted (qemu's `QCOW_MAX_L1_SIZE`, 32 MiB of table).
const MAX_L1_ENTRIES: u64 = (32 << 20) / 8;
/// Incompatible feature bit 0: the image was not closed cleanly (refcounts may be
/// stale; the tables reading uses are not).
const INCOMPAT_DIRTY: u64 = 1;
const L2_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const OFLAG_COMPRESSED: u64 = 1 << 62;
const OFLAG_ZERO: u64 = 1;

/// Where one allocated guest cluster's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// A standard (uncompressed) cluster at this file offset.
    Plain(u64),
    /// Raw deflate data at `offset`, at most `len` bytes: the descriptor's sector range,
    /// cut where the next structure of the file starts (qemu packs compressed data, so
    /// this is the stream itself plus at most a sector's padding).
    Compressed { offset: u64, len: u64 },
}

/// The cluster map of a qcow2 file.
#[derive(Debug)]
pub struct Qcow2Map {
    pub path: PathBuf,
    pub virtual_size: u64,
    pub cluster_bits: u32,
    pub file_len: u64,
    /// (guest cluster index, host), sorted by guest index; zero and unallocated
    /// clusters are absent.
    pub clusters: Vec<(u64, Host)>,
}

#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct MapError {
    pub path: PathBuf,
    pub problem: String,
}

/// The one wording for a structure of the file that lies (partly) past its end.
fn past_end(what: &str, at: u64, file_len: u64) -> String {
    format!(
        "qcow2 {what} at byte {at:#x} lies past the end of the file ({file_len} bytes; truncated?)"
    )
}

fn be64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_be_bytes(a)
}
fn be32(b: &[u8], o: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[o..o + 4]);
    u32::from_be_bytes(a)
}

impl Qcow2Map {
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Reads the header, L1 and every L2 table of the qcow2 file `file` (named `path`).
    pub fn read(file: &File, path: &Path) -> Result<Qcow2Map, MapError> {
        let err = |problem: String| MapError {
            path: path.to_path_buf(),
            problem,
        };
        let ioe = |e: io::Error| err(format!("cannot read it ({e})"));
        let file_len = file.metadata().map_err(ioe)?.len();
        let mut h = [0u8; 104];
        let n = file.read_at(&mut h, 0).map_err(ioe)?;
        if n < 72 || &h[..4] != b"QFI\xfb" {
            return Err(err("is not a qcow2 image".into()));
        }
        let version = be32(&h, 4);
        if !(2..=3).contains(&version) {
            return Err(err(format!("qcow2 version {version} is not supported")));
        }
        if be64(&h, 8) != 0 {
            return Err(err("has a backing file (not a standalone image)".into()));
        }
        let cluster_bits = be32(&h, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(err(format!(
                "qcow2 cluster_bits {cluster_bits} out of range"
            )));
        }
        let virtual_size = be64(&h, 24);
        if virtual_size == 0 || virtual_size > MAX_VIRTUAL || virtual_size % 512 != 0 {
            return Err(err(format!(
                "qcow2 virtual size {virtual_size} out of range"
            )));
        }
        if be32(&h, 32) != 0 {
            return Err(err("is an encrypted qcow2 image".into()));
        }
        if version == 3 {
            if n < 104 {
                return Err(err("qcow2 v3 header is truncated".into()));
            }
            let incompat = be64(&h, 72) & !INCOMPAT_DIRTY;
            if incompat != 0 {
                return Err(err(format!(
                    "qcow2 incompatible features {incompat:#x} (corrupt, external data, zstd or extended L2) are not supported"
                )));
            }
        }
        let cluster = 1u64 << cluster_bits;
        let l2_entries = cluster / 8;
        let l1_size = u64::from(be32(&h, 36));
        let l1_off = be64(&h, 40);
        let needed = virtual_size.div_ceil(cluster).div_ceil(l2_entries);
        if l1_size < needed || l1_size > MAX_L1_ENTRIES {
            return Err(err(format!(
                "qcow2 L1 table out of range ({l1_size} entries, {needed} needed)"
            )));
        }
        if l1_off.checked_add(l1_size * 8).is_none_or(|e| e > file_len) {
            return Err(err(past_end("L1 table", l1_off, file_len)));
        }
        if l1_off % cluster != 0 {
            return Err(err(format!(
                "qcow2 L1 table at byte {l1_off:#x} is not cluster-aligned"
            )));
        }
        let mut l1 = vec![0u8; (l1_size * 8) as usize];
        file.read_exact_at(&mut l1, l1_off).map_err(ioe)?;
        let csize_shift = 62 - (cluster_bits - 8);
        let csize_mask = (1u64 << (cluster_bits - 8)) - 1;
        let offset_mask = (1u64 << csize_shift) - 1;
        let guest_clusters = virtual_size.div_ceil(cluster);
        let mut clusters = Vec::new();
        let mut table = vec![0u8; cluster as usize];
        let mut seen_l2 = std::collections::HashSet::new();
        for (i, e) in l1.chunks_exact(8).enumerate() {
            let l2_off = be64(e, 0) & L2_OFFSET_MASK;
            if l2_off == 0 {
                continue;
            }
            if l2_off.checked_add(cluster).is_none_or(|e| e > file_len) {
                return Err(err(past_end("L2 table", l2_off, file_len)));
            }
            if l2_off % cluster != 0 {
                return Err(err(format!(
                    "qcow2 L2 table at byte {l2_off:#x} is not cluster-aligned"
                )));
            }
            if !seen_l2.insert(l2_off) {
                return Err(err(format!(
                    "qcow2 L2 table at byte {l2_off:#x} is used twice"
                )));
            }
            file.read_exact_at(&mut table, l2_off).map_err(ioe)?;
            for (j, c) in table.chunks_exact(8).enumerate() {
                let guest = i as u64 * l2_entries + j as u64;
                let entry = be64(c, 0);
                if entry == 0 {
                    continue;
                }
                if guest >= guest_clusters {
                    return Err(err(format!(
                        "qcow2 maps guest cluster {guest} beyond the virtual size"
                    )));
                }
                let host = if entry & OFLAG_COMPRESSED != 0 {
                    let offset = entry & offset_mask;
                    let sectors = ((entry >> csize_shift) & csize_mask) + 1;
                    let len = sectors * 512 - (offset & 511);
                    if offset >= file_len {
                        return Err(err(past_end("compressed cluster", offset, file_len)));
                    }
                    if offset < cluster {
                        return Err(err(format!(
                            "qcow2 compressed cluster at byte {offset:#x} lies in the header"
                        )));
                    }
                    // the last descriptor's sector range may run past a file's end
                    Host::Compressed {
                        offset,
                        len: len.min(file_len - offset),
                    }
                } else {
                    let off = entry & L2_OFFSET_MASK;
                    if off == 0 || entry & OFLAG_ZERO != 0 {
                        // a zero cluster (v3), or "all zeros" with a preallocation
                        continue;
                    }
                    if off.checked_add(cluster).is_none_or(|e| e > file_len) {
                        return Err(err(past_end("data cluster", off, file_len)));
                    }
                    if off % cluster != 0 {
                        return Err(err(format!(
                            "qcow2 data cluster at byte {off:#x} is not cluster-aligned"
                        )));
                    }
                    Host::Plain(off)
                };
                clusters.push((guest, host));
            }
        }
        clusters.sort_by_key(|c| c.0);
        if clusters.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(err("qcow2 maps a guest cluster twice".into()));
        }
        // cut each compressed range where the next thing in the file starts
        let mut starts: Vec<u64> = clusters
            .iter()
            .map(|(_, h)| match h {
                Host::Plain(o) => *o,
                Host::Compressed { offset, .. } => *offset,
            })
            .chain(seen_l2.iter().copied())
            .chain([l1_off])
            .collect();
        starts.sort_unstable();
        starts.dedup();
        for (_, h) in clusters.iter_mut() {
            if let Host::Compressed { offset, len } = h {
                let k = starts.partition_point(|s| *s <= *offset);
                if let Some(next) = starts.get(k) {
                    *len = (*len).min(next - *offset);
                }
            }
        }
        Ok(Qcow2Map {
            path: path.to_path_buf(),
            virtual_size,
            cluster_bits,
            file_len,
            clusters,
        })
    }

    /// Where guest cluster `guest` is (`None`: unallocated or zero), by binary search.
    pub fn host_of(&self, guest: u64) -> Option<Host> {
        self.clusters
            .binary_search_by_key(&guest, |c| c.0)
            .ok()
            .and_then(|k| self.clusters.get(k))
            .map(|c| c.1)
    }

    /// Whether any guest cluster in `first..end` is mapped.
    pub fn any_mapped(&self, first: u64, end: u64) -> bool {
        let k = self.clusters.partition_point(|c| c.0 < first);
        self.clusters.get(k).is_some_and(|c| c.0 < end)
    }

    /// The guest bytes of one mapped cluster (`cluster_size` bytes, or fewer for the
    /// last cluster of the disk), decompressed when compressed.
    pub fn read_cluster(
        &self,
        file: &File,
        guest: u64,
        host: Host,
        scratch: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), MapError> {
        let cl = self.cluster_size();
        let want = cl.min(self.virtual_size - guest * cl) as usize;
        let err = |problem: String| MapError {
            path: self.path.clone(),
            problem,
        };
        out.clear();
        match host {
            Host::Plain(off) => {
                out.resize(want, 0);
                file.read_exact_at(out, off)
                    .map_err(|e| err(format!("cannot read cluster at {off:#x} ({e})")))?;
            }
            Host::Compressed { offset, len } => {
                scratch.clear();
                scratch.resize(len as usize, 0);
                file.read_exact_at(scratch, offset)
                    .map_err(|e| err(format!("cannot read cluster at {offset:#x} ({e})")))?;
                out.reserve(cl as usize);
                let mut d = flate2::Decompress::new_with_window_bits(false, 15);
                let st = d
                    .decompress_vec(scratch, out, flate2::FlushDecompress::Finish)
                    .map_err(|e| {
                        err(format!(
                            "compressed cluster of guest offset {:#x} does not inflate ({e})",
                            guest * cl
                        ))
                    })?;
                // qemu accepts a stream that fills the cluster exactly
                let full = out.len() == cl as usize;
                if !(st == flate2::Status::StreamEnd || full)
                    || out.len() < want
                    || out.len() > cl as usize
                {
                    return Err(err(format!(
                        "compressed cluster of guest offset {:#x} inflates to {} bytes, not {cl}",
                        guest * cl,
                        out.len()
                    )));
                }
                out.truncate(want);
            }
        }
        Ok(())
    }
}

/// What [`inflate`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct InflateStats {
    pub virtual_size: u64,
    /// Guest clusters the qcow2 maps.
    pub clusters: u64,
    /// Bytes written (all-zero clusters are left as holes).
    pub data_bytes: u64,
}

/// Writes the guest disk of the qcow2 file `src` (named `path`) to `dst` as a sparse
/// raw file of its virtual size, on `threads` cores; writes no zeros.
pub fn inflate(
    src: &File,
    path: &Path,
    dst: &File,
    dst_path: &Path,
    threads: usize,
) -> Result<InflateStats, MapError> {
    let map = Qcow2Map::read(src, path)?;
    let werr = |e: io::Error| MapError {
        path: dst_path.to_path_buf(),
        problem: format!("cannot write ({e})"),
    };
    dst.set_len(0).map_err(werr)?;
    dst.set_len(map.virtual_size).map_err(werr)?;
    let cl = map.cluster_size();
    let jobs: Vec<&[(u64, Host)]> = map.clusters.chunks(32).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let written = std::sync::atomic::AtomicU64::new(0);
    let first_err: std::sync::Mutex<Option<MapError>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut scratch = Vec::new();
                let mut buf = Vec::new();
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(job) = jobs.get(k) else { break };
                    if first_err.lock().map(|e| e.is_some()).unwrap_or(true) {
                        break;
                    }
                    for &(guest, host) in job.iter() {
                        let res = map
                            .read_cluster(src, guest, host, &mut scratch, &mut buf)
                            .and_then(|()| {
                                if crate::format::source::is_zero(&buf) {
                                    return Ok(());
                                }
                                dst.write_all_at(&buf, guest * cl).map_err(werr)?;
                                written.fetch_add(
                                    buf.len() as u64,
                                    std::sync::atomic::Ordering::Relaxed,
                                );
                                Ok(())
                            });
                        if let Err(e) = res {
                            if let Ok(mut slot) = first_err.lock() {
                                slot.get_or_insert(e);
                            }
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_err.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(InflateStats {
        virtual_size: map.virtual_size,
        clusters: map.clusters.len() as u64,
        data_bytes: written.into_inner(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_garbage_and_truncation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.qcow2");
        std::fs::write(&p, b"not a qcow2 at all").unwrap();
        let f = File::open(&p).unwrap();
        assert!(Qcow2Map::read(&f, &p)
            .unwrap_err()
            .to_string()
            .contains("not a qcow2"));
        // a v2 header whose L1 table lies past the end
        let mut h = vec![0u8; 72];
        h[0..4].copy_from_slice(b"QFI\xfb");
        h[4..8].copy_from_slice(&2u32.to_be_bytes());
        h[20..24].copy_from_slice(&16u32.to_be_bytes());
        h[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
        h[36..40].copy_from_slice(&2u32.to_be_bytes());
        h[40..48].copy_from_slice(&65536u64.to_be_bytes());
        std::fs::write(&p, &h).unwrap();
        let f = File::open(&p).unwrap();
        let e = Qcow2Map::read(&f, &p).unwrap_err().to_string();
        assert!(
            e.contains("qcow2 L1 table at byte 0x10000 lies past the end of the file (72 bytes; truncated?)"),
            "{e}"
        );
    }
}
