//! The input side of every writer: a raw disk image read cluster by cluster, visiting
//! only the clusters that touch its data extents (`SEEK_DATA`/`SEEK_HOLE`, through
//! [`crate::disk::sparse::data_extents`]) and telling which of those are all zeros, so
//! that holes are never read and zero clusters are never written.

use super::FormatError;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// An opened raw input image with its data extents.
pub struct Source {
    file: File,
    path: PathBuf,
    size: u64,
    extents: Vec<(u64, u64)>,
}

impl Source {
    pub fn open(path: &Path) -> Result<Source, FormatError> {
        let file = crate::input::open_regular(path).map_err(FormatError::read(path))?;
        Self::from_file(file, path)
    }

    /// Use an already opened file; `path` is only for messages.
    pub fn from_file(file: File, path: &Path) -> Result<Source, FormatError> {
        let size = file.metadata().map_err(FormatError::read(path))?.len();
        let extents =
            crate::disk::sparse::data_extents(&file, 0, size).map_err(FormatError::read(path))?;
        Ok(Source {
            file,
            path: path.to_path_buf(),
            size,
            extents,
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Data extents as `(offset, len)`.
    pub fn extents(&self) -> &[(u64, u64)] {
        &self.extents
    }

    /// Indices of the `chunk`-sized chunks that overlap a data extent, ascending, each
    /// once. Chunks entirely in holes are never visited.
    pub fn chunks(&self, chunk: u64) -> impl Iterator<Item = u64> + '_ {
        let mut last: Option<u64> = None;
        self.extents
            .iter()
            .filter(|(_, len)| *len > 0)
            .flat_map(move |&(off, len)| (off / chunk)..(off + len).div_ceil(chunk))
            .filter(move |&i| {
                let fresh = last.is_none_or(|l| i > l);
                if fresh {
                    last = Some(i);
                }
                fresh
            })
    }

    /// Read chunk `index` of size `buf.len()` into `buf`, zero-padded past the end of
    /// the input. Returns whether the chunk holds any non-zero byte.
    pub fn read_chunk(&self, index: u64, buf: &mut [u8]) -> Result<bool, FormatError> {
        let off = index * buf.len() as u64;
        let avail = self.size.saturating_sub(off).min(buf.len() as u64) as usize;
        self.file
            .read_exact_at(&mut buf[..avail], off)
            .map_err(FormatError::read(&self.path))?;
        buf[avail..].fill(0);
        Ok(!is_zero(&buf[..avail]))
    }
}

/// The non-zero clusters of a [`Source`], in ascending order: reads the data extents
/// a batch (1 MiB) at a time and skips clusters that are all zeros. The last cluster is
/// zero-padded if the input ends inside it.
/// Consecutive non-zero clusters handed to a compression worker.
pub struct ClusterJob {
    pub indices: Vec<u64>,
    pub data: Vec<u8>,
}

pub struct Clusters<'a> {
    src: &'a Source,
    cluster: usize,
    per_batch: u64,
    batches: Box<dyn Iterator<Item = u64> + Send + 'a>,
    buf: Vec<u8>,
    /// First cluster index of the batch in `buf`.
    base: u64,
    /// Next cluster within `buf` to look at; `per_batch` when exhausted.
    pos: u64,
}

impl<'a> Clusters<'a> {
    /// `cluster` must be a power of two of at least 512 bytes.
    pub fn new(src: &'a Source, cluster: usize) -> Clusters<'a> {
        let batch = (cluster as u64).max(1 << 20);
        let per_batch = batch / cluster as u64;
        Clusters {
            src,
            cluster,
            per_batch,
            batches: Box::new(src.chunks(batch)),
            buf: vec![0u8; batch as usize],
            base: 0,
            pos: per_batch,
        }
    }

    /// The next non-zero cluster: its index and contents (`cluster` bytes).
    /// Up to `max` next non-zero clusters, concatenated, with their indices: one unit of
    /// work for the compression pipeline. `None` at the end.
    pub fn next_job(&mut self, max: usize) -> Result<Option<ClusterJob>, FormatError> {
        let mut job = ClusterJob {
            indices: Vec::with_capacity(max),
            data: Vec::with_capacity(max * self.cluster),
        };
        while job.indices.len() < max {
            match self.next_cluster()? {
                Some((i, c)) => {
                    job.indices.push(i);
                    job.data.extend_from_slice(c);
                }
                None => break,
            }
        }
        Ok(if job.indices.is_empty() {
            None
        } else {
            Some(job)
        })
    }

    pub fn next_cluster(&mut self) -> Result<Option<(u64, &[u8])>, FormatError> {
        loop {
            while self.pos < self.per_batch {
                let i = self.pos as usize;
                self.pos += 1;
                let c = &self.buf[i * self.cluster..(i + 1) * self.cluster];
                if !is_zero(c) {
                    let c = &self.buf[i * self.cluster..(i + 1) * self.cluster];
                    return Ok(Some((self.base + i as u64, c)));
                }
            }
            let Some(b) = self.batches.next() else {
                return Ok(None);
            };
            if !self.src.read_chunk(b, &mut self.buf)? {
                continue;
            }
            self.base = b * self.per_batch;
            self.pos = 0;
        }
    }
}

/// Whether `buf` is all zeros; written so the compiler vectorizes it.
pub fn is_zero(buf: &[u8]) -> bool {
    let mut chunks = buf.chunks_exact(64);
    for c in &mut chunks {
        if c.iter().fold(0u8, |a, &b| a | b) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection() {
        let mut b = vec![0u8; 65536 + 7];
        assert!(is_zero(&b));
        b[65536 + 3] = 1;
        assert!(!is_zero(&b));
        b[65536 + 3] = 0;
        b[100] = 4;
        assert!(!is_zero(&b));
    }

    #[test]
    fn visits_only_data_chunks_and_spots_zero_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.raw");
        let f = File::create(&p).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(&[1u8; 10], (3 << 20) + 5).unwrap();
        f.write_all_at(&[0u8; 65536], 10 << 20).unwrap(); // data extent of zeros
        f.write_all_at(&[2u8; 1], (64 << 20) - 1).unwrap();
        drop(f);
        let s = Source::open(&p).unwrap();
        let chunks: Vec<u64> = s.chunks(1 << 20).collect();
        assert!(chunks.contains(&3) && chunks.contains(&10) && chunks.contains(&63));
        assert!(chunks.len() < 8, "{chunks:?}");
        let mut buf = vec![0u8; 1 << 20];
        assert!(s.read_chunk(3, &mut buf).unwrap());
        assert!(!s.read_chunk(10, &mut buf).unwrap());
        assert!(s.read_chunk(63, &mut buf).unwrap());
        // past the end: zero padded
        let mut big = vec![9u8; 48 << 20];
        assert!(s.read_chunk(1, &mut big).unwrap());
        assert!(big[(16 << 20)..].iter().all(|&b| b == 0));

        let mut cl = Clusters::new(&s, 65536);
        let mut got = Vec::new();
        while let Some((i, c)) = cl.next_cluster().unwrap() {
            assert_eq!(c.len(), 65536);
            got.push(i);
        }
        assert_eq!(got, vec![48, 1023]);
    }
}
