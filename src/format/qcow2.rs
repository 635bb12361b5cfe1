//! qcow2 version 2 (`compat=0.10`) with 64 KiB clusters, plain or compressed.
//!
//! Facts from qemu's `docs/interop/qcow2.txt` and `block/qcow2*.c`:
//! - Header (big-endian, 72 bytes in version 2): magic `QFI\xfb`, version 2, backing
//!   file offset/size, `cluster_bits`, virtual size, crypt method, L1 size and offset,
//!   refcount table offset and clusters, snapshot count and offset. Version 2 has no
//!   header length field, no feature bits, and refcounts are always 16-bit.
//! - Two-level mapping: the L1 table points to L2 tables (one cluster, 8192 entries,
//!   512 MiB of guest data each). An entry of 0 is unallocated (reads as zeros in a
//!   file without backing file).
//! - Bit 63 (`QCOW_OFLAG_COPIED`) must be set in L1 and standard L2 entries whose
//!   cluster has refcount 1; never in compressed descriptors (qemu-img check flags both).
//! - Compressed cluster descriptor: bit 62 set; with `x = 62 - (cluster_bits - 8)` = 54,
//!   bits 0..x-1 hold the host byte offset, bits x..61 the number of 512-byte sectors
//!   *beyond the one holding the offset* that the data touches. The data is raw deflate
//!   (no zlib header) with a 4 KiB window (`-12` window bits, as qemu's
//!   `qcow2_co_compress` and its inflate expect) and must be shorter than a cluster, else
//!   the cluster is stored uncompressed. Compressed data is packed at byte granularity
//!   and may span host clusters.
//! - Refcounts: a refcount table (cluster offsets of refcount blocks) and refcount blocks
//!   of 32768 big-endian u16 each. Every host cluster touched by a compressed descriptor's
//!   sector range counts once per descriptor; every other used cluster (header, L1, L2,
//!   data, refcount structures themselves) counts 1.
//!
//! Layout written here: header (cluster 0), L1 table, then data clusters and each L2
//! table right after the data it maps (everything appended in order, so the output is
//! written sequentially), refcount blocks and table last; header and L1 are written at
//! the end. Memory: one L2 table, the L1 table and 2 bytes per host cluster of refcounts.

use super::pipeline;
use super::source::{Clusters, Source};
use super::{FormatError, Output};
use flate2::{Compress, Compression};
use std::io::Write;

pub const CLUSTER_BITS: u32 = 16;
pub const CLUSTER: u64 = 1 << CLUSTER_BITS;
const L2_ENTRIES: u64 = CLUSTER / 8;
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER / 2;
const OFLAG_COPIED: u64 = 1 << 63;
const OFLAG_COMPRESSED: u64 = 1 << 62;
/// Bit where the compressed descriptor's sector count starts (`62 - (cluster_bits - 8)`).
const CSIZE_SHIFT: u32 = 62 - (CLUSTER_BITS - 8);
const CSIZE_MASK: u64 = (1 << (62 - CSIZE_SHIFT)) - 1;
/// Clusters per pipeline job.
const JOB_CLUSTERS: usize = 16;

/// The version 2 header, 72 bytes, big-endian.
pub fn header(
    virtual_size: u64,
    l1_size: u32,
    l1_offset: u64,
    refcount_table_offset: u64,
    refcount_table_clusters: u32,
) -> [u8; 72] {
    let mut h = [0u8; 72];
    h[0..4].copy_from_slice(b"QFI\xfb");
    h[4..8].copy_from_slice(&2u32.to_be_bytes());
    // 8..16 backing file offset, 16..20 backing file size: none
    h[20..24].copy_from_slice(&CLUSTER_BITS.to_be_bytes());
    h[24..32].copy_from_slice(&virtual_size.to_be_bytes());
    // 32..36 crypt method: none
    h[36..40].copy_from_slice(&l1_size.to_be_bytes());
    h[40..48].copy_from_slice(&l1_offset.to_be_bytes());
    h[48..56].copy_from_slice(&refcount_table_offset.to_be_bytes());
    h[56..60].copy_from_slice(&refcount_table_clusters.to_be_bytes());
    // 60..64 nb_snapshots, 64..72 snapshots_offset: none
    h
}

/// The L2 entry of a compressed cluster stored at byte `offset`, `len` bytes long.
pub fn compressed_descriptor(offset: u64, len: u64) -> u64 {
    let extra_sectors = ((offset + len - 1) >> 9) - (offset >> 9);
    OFLAG_COMPRESSED | ((extra_sectors & CSIZE_MASK) << CSIZE_SHIFT) | offset
}

/// The host byte range a compressed descriptor claims, as qemu computes it for
/// refcounts: from the offset to the end of its last sector.
fn compressed_span(offset: u64, len: u64) -> (u64, u64) {
    let extra = ((offset + len - 1) >> 9) - (offset >> 9);
    (offset, ((offset >> 9) + extra + 1) << 9)
}

/// How many refcount blocks and refcount table clusters are needed when `used`
/// clusters come before them and they must count themselves too.
pub fn refcount_layout(used: u64) -> (u64, u64) {
    let mut blocks = 1;
    let mut table = 1;
    loop {
        let total = used + blocks + table;
        let b = total.div_ceil(REFCOUNTS_PER_BLOCK);
        let t = (b * 8).div_ceil(CLUSTER);
        if b == blocks && t == table {
            return (blocks, table);
        }
        blocks = b;
        table = t;
    }
}

type Job = super::source::ClusterJob;

struct Done {
    indices: Vec<u64>,
    data: Vec<u8>,
    /// Per cluster: the compressed bytes' range in `packed`, or `None` to store raw.
    compressed: Vec<Option<(usize, usize)>>,
    packed: Vec<u8>,
}

fn compress_job(
    job: Job,
    compress: bool,
    path: &std::path::Path,
    reuse: Option<&super::reuse::Reuse>,
) -> Result<Done, FormatError> {
    let n = job.indices.len();
    let mut compressed = vec![None; n];
    let mut packed = Vec::new();
    if let (true, Some(r)) = (compress, reuse) {
        // clusters equal to the source image's: its compressed bytes, verbatim
        for (i, slot) in compressed.iter_mut().enumerate() {
            let input = &job.data[i * CLUSTER as usize..(i + 1) * CLUSTER as usize];
            if let Some(len) = r.verbatim(job.indices[i], input, &mut packed)? {
                *slot = Some((packed.len() - len, len));
            }
        }
    }
    if compress {
        // qemu: deflateInit2(Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, ...) on C zlib.
        // Same stream format here, but at level 9: zlib-rs's levels 3-6 use zlib-ng's
        // `deflate_medium` and a 4-byte hash, 3.6 % larger than C zlib's level 6 on
        // programs and libraries; its level 9 (`deflate_slow`, rolling 3-byte hash) is
        // 0.4 % smaller than qemu-img's output and costs about what C zlib's level 6 does
        // (measured on 200 MiB of /usr/lib and /usr/bin in 64 KiB clusters).
        let mut c = Compress::new_with_window_bits(Compression::best(), false, 12);
        packed.reserve(n * CLUSTER as usize);
        let mut out = Vec::with_capacity(CLUSTER as usize);
        for (i, slot) in compressed.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let input = &job.data[i * CLUSTER as usize..(i + 1) * CLUSTER as usize];
            if pipeline::deflate_whole(&mut c, input, &mut out, path)?
                && (out.len() as u64) < CLUSTER
            {
                *slot = Some((packed.len(), out.len()));
                packed.extend_from_slice(&out);
            }
        }
    }
    Ok(Done {
        indices: job.indices,
        data: job.data,
        compressed,
        packed,
    })
}

/// Appends to the output through a buffer, tracking the write position and the
/// refcount of every host cluster.
struct Appender<'a> {
    out: &'a Output<'a>,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_start: u64,
    refcounts: Vec<u16>,
}

const BUF: usize = 4 << 20;

impl Appender<'_> {
    fn pos(&self) -> u64 {
        self.buf_start + self.buf.len() as u64
    }
    fn append(&mut self, data: &[u8]) -> Result<(), FormatError> {
        if self.buf.len() + data.len() > BUF {
            self.flush()?;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }
    fn align(&mut self) -> Result<(), FormatError> {
        let pad = (CLUSTER - self.pos() % CLUSTER) % CLUSTER;
        if pad > 0 {
            if self.buf.is_empty() {
                self.buf_start += pad;
            } else {
                self.buf.resize(self.buf.len() + pad as usize, 0);
            }
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), FormatError> {
        if !self.buf.is_empty() {
            self.out.write_at(&self.buf, self.buf_start)?;
            self.buf_start += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }
    fn count(&mut self, start: u64, end: u64) -> Result<(), FormatError> {
        let first = start / CLUSTER;
        let last = (end - 1) / CLUSTER;
        if self.refcounts.len() <= last as usize {
            self.refcounts.resize(last as usize + 1, 0);
        }
        for c in first..=last {
            let r = &mut self.refcounts[c as usize];
            *r = r.checked_add(1).ok_or_else(|| FormatError::Size {
                path: self.out.path.to_path_buf(),
                problem: format!("refcount overflow in host cluster {c}"),
            })?;
        }
        Ok(())
    }
    /// Append a whole cluster-aligned table or data cluster with refcount 1; returns
    /// its offset.
    fn append_cluster(&mut self, data: &[u8]) -> Result<u64, FormatError> {
        self.align()?;
        let off = self.pos();
        self.append(data)?;
        self.align()?;
        self.count(off, off + data.len() as u64)?;
        Ok(off)
    }
}

pub(crate) fn write(
    src: &Source,
    out: &Output,
    virtual_size: u64,
    compress: bool,
    threads: usize,
    reuse: Option<&super::reuse::Reuse>,
) -> Result<u64, FormatError> {
    let l1_size = virtual_size.div_ceil(CLUSTER * L2_ENTRIES).max(1);
    let l1_size_u32 = u32::try_from(l1_size).map_err(|_| FormatError::Size {
        path: out.path.to_path_buf(),
        problem: format!("virtual size {virtual_size} too large for qcow2"),
    })?;
    let l1_clusters = (l1_size * 8).div_ceil(CLUSTER);
    let l1_offset = CLUSTER;
    let mut l1 = vec![0u64; l1_size as usize];
    let mut app = Appender {
        out,
        buf: Vec::with_capacity(BUF),
        buf_start: (1 + l1_clusters) * CLUSTER,
        refcounts: Vec::new(),
    };
    app.count(0, (1 + l1_clusters) * CLUSTER)?;

    let mut l2: Vec<u64> = vec![0; L2_ENTRIES as usize];
    let mut l2_index: Option<u64> = None;
    let mut data_bytes = 0u64;

    let flush_l2 = |app: &mut Appender,
                    l1: &mut Vec<u64>,
                    l2: &mut Vec<u64>,
                    idx: u64|
     -> Result<(), FormatError> {
        let mut bytes = Vec::with_capacity(CLUSTER as usize);
        for e in l2.iter() {
            bytes.extend_from_slice(&e.to_be_bytes());
        }
        let off = app.append_cluster(&bytes)?;
        l1[idx as usize] = off | OFLAG_COPIED;
        l2.iter_mut().for_each(|e| *e = 0);
        Ok(())
    };

    let mut clusters = Clusters::new(src, CLUSTER as usize);
    let path = src.path();
    let threads = if compress { threads } else { 1 };
    pipeline::run(
        threads,
        threads * 4,
        || clusters.next_job(JOB_CLUSTERS),
        |job| compress_job(job, compress, path, reuse),
        |done| {
            for (k, &idx) in done.indices.iter().enumerate() {
                let table = idx / L2_ENTRIES;
                if l2_index != Some(table) {
                    if let Some(prev) = l2_index {
                        flush_l2(&mut app, &mut l1, &mut l2, prev)?;
                    }
                    l2_index = Some(table);
                }
                let entry = match done.compressed[k] {
                    Some((start, len)) => {
                        let off = app.pos();
                        app.append(&done.packed[start..start + len])?;
                        let (s, e) = compressed_span(off, len as u64);
                        app.count(s, e)?;
                        compressed_descriptor(off, len as u64)
                    }
                    None => {
                        let c = &done.data[k * CLUSTER as usize..(k + 1) * CLUSTER as usize];
                        app.append_cluster(c)? | OFLAG_COPIED
                    }
                };
                l2[(idx % L2_ENTRIES) as usize] = entry;
                data_bytes += CLUSTER;
            }
            Ok(())
        },
    )?;
    if let Some(prev) = l2_index {
        flush_l2(&mut app, &mut l1, &mut l2, prev)?;
    }
    app.align()?;

    // Refcount blocks, then the refcount table, counting themselves.
    let used = app.pos() / CLUSTER;
    let (blocks, table_clusters) = refcount_layout(used);
    let blocks_offset = used * CLUSTER;
    let table_offset = (used + blocks) * CLUSTER;
    app.count(blocks_offset, table_offset + table_clusters * CLUSTER)?;
    let mut block = Vec::with_capacity(CLUSTER as usize);
    for b in 0..blocks {
        block.clear();
        let start = (b * REFCOUNTS_PER_BLOCK) as usize;
        for c in start..start + REFCOUNTS_PER_BLOCK as usize {
            let r = app.refcounts.get(c).copied().unwrap_or(0);
            block.extend_from_slice(&r.to_be_bytes());
        }
        let bytes = std::mem::take(&mut block);
        app.append(&bytes)?;
        block = bytes;
    }
    let mut table = Vec::with_capacity((table_clusters * CLUSTER) as usize);
    for b in 0..blocks {
        table.extend_from_slice(&(blocks_offset + b * CLUSTER).to_be_bytes());
    }
    table.resize((table_clusters * CLUSTER) as usize, 0);
    app.append(&table)?;
    app.flush()?;
    let end = app.pos();
    out.set_len(end)?;

    let mut l1_bytes = Vec::with_capacity(l1.len() * 8);
    for e in &l1 {
        l1_bytes
            .write_all(&e.to_be_bytes())
            .map_err(FormatError::write(out.path))?;
    }
    out.write_at(&l1_bytes, l1_offset)?;
    let table_clusters_u32 = u32::try_from(table_clusters).map_err(|_| FormatError::Size {
        path: out.path.to_path_buf(),
        problem: "refcount table too large".into(),
    })?;
    out.write_at(
        &header(
            virtual_size,
            l1_size_u32,
            l1_offset,
            table_offset,
            table_clusters_u32,
        ),
        0,
    )?;
    Ok(data_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let h = header(10 << 30, 20, 65536, 5 * 65536, 1);
        assert_eq!(&h[0..4], b"QFI\xfb");
        assert_eq!(u32::from_be_bytes(h[4..8].try_into().unwrap()), 2);
        assert_eq!(u32::from_be_bytes(h[20..24].try_into().unwrap()), 16);
        assert_eq!(u64::from_be_bytes(h[24..32].try_into().unwrap()), 10 << 30);
        assert_eq!(u32::from_be_bytes(h[36..40].try_into().unwrap()), 20);
        assert_eq!(u64::from_be_bytes(h[40..48].try_into().unwrap()), 65536);
        assert_eq!(u64::from_be_bytes(h[48..56].try_into().unwrap()), 5 * 65536);
        assert_eq!(u32::from_be_bytes(h[56..60].try_into().unwrap()), 1);
    }

    #[test]
    fn compressed_descriptor_encoding() {
        // 100 bytes at offset 0x10200 stay inside one sector: no extra sectors
        let d = compressed_descriptor(0x10200, 100);
        assert_eq!(d, OFLAG_COMPRESSED | 0x10200);
        // 1000 bytes from 0x101f0: touches sectors 0x80..=0x82 -> 2 extra
        let d = compressed_descriptor(0x101f0, 1000);
        assert_eq!((d >> 54) & 0xff, 2);
        assert_eq!(d & ((1 << 54) - 1), 0x101f0);
        assert_eq!(d & OFLAG_COPIED, 0);
        assert_eq!(compressed_span(0x101f0, 1000), (0x101f0, 0x10600));
    }

    #[test]
    fn refcount_layout_counts_itself() {
        assert_eq!(refcount_layout(10), (1, 1));
        assert_eq!(refcount_layout(32766), (1, 1));
        assert_eq!(refcount_layout(32767), (2, 1));
        let (b, t) = refcount_layout(10_000_000);
        assert!(b * REFCOUNTS_PER_BLOCK >= 10_000_000 + b + t);
        assert!(t * 8192 >= b);
    }

    #[test]
    fn compression_is_raw_deflate_with_small_window() {
        let job = Job {
            indices: vec![0, 1],
            data: [
                vec![7u8; 65536],
                (0..65536u32)
                    .map(|i| (i.wrapping_mul(2654435761u32) >> 24) as u8)
                    .collect(),
            ]
            .concat(),
        };
        let done = compress_job(job, true, std::path::Path::new("t"), None).unwrap();
        let (s, l) = done.compressed[0].unwrap();
        let mut d = flate2::Decompress::new_with_window_bits(false, 12);
        let mut outb = Vec::with_capacity(65536);
        d.decompress_vec(
            &done.packed[s..s + l],
            &mut outb,
            flate2::FlushDecompress::Finish,
        )
        .unwrap();
        assert_eq!(outb, vec![7u8; 65536]);
    }
}
