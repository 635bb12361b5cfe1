//! File Data

use no_std_io2::io::{Read, Seek, SeekFrom, Write};
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use deku::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::BackhandError;
use crate::v4::filesystem::writer::FilesystemCompressor;
use crate::v4::fragment::Fragment;
use crate::v4::reader::WriteSeek;

use crate::v4::filesystem::reader::SquashfsRawData;

// bitflag for data size field in inode for signifying that the data is uncompressed
const DATA_STORED_UNCOMPRESSED: u32 = 1 << 24;

#[derive(Copy, Clone, Debug, PartialEq, Eq, DekuRead, DekuWrite, DekuSize)]
#[deku(endian = "endian", ctx = "endian: deku::ctx::Endian")]
pub struct DataSize(u32);
impl DataSize {
    #[inline]
    pub fn new(size: u32, uncompressed: bool) -> Self {
        let mut value: u32 = size;
        if value > DATA_STORED_UNCOMPRESSED {
            panic!("value is too big");
        }
        if uncompressed {
            value |= DATA_STORED_UNCOMPRESSED;
        }
        Self(value)
    }

    #[inline]
    pub fn new_compressed(size: u32) -> Self {
        Self::new(size, false)
    }

    #[inline]
    pub fn new_uncompressed(size: u32) -> Self {
        Self::new(size, true)
    }

    /// A block of all zeros, with no bytes stored in the image
    #[inline]
    pub const fn hole() -> Self {
        Self(0)
    }

    #[inline]
    pub fn uncompressed(&self) -> bool {
        self.0 & DATA_STORED_UNCOMPRESSED != 0
    }

    #[inline]
    pub fn set_uncompressed(&mut self) {
        self.0 |= DATA_STORED_UNCOMPRESSED
    }

    #[inline]
    pub fn set_compressed(&mut self) {
        self.0 &= !DATA_STORED_UNCOMPRESSED
    }

    #[inline]
    pub fn size(&self) -> u32 {
        self.0 & !DATA_STORED_UNCOMPRESSED
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Added {
    // Only Data was added. `sparse` is the number of bytes stored as holes.
    Data { blocks_start: u64, block_sizes: Vec<DataSize>, sparse: u64 },
    // Only Fragment was added
    Fragment { frag_index: u32, block_offset: u32 },
}

struct DataWriterChunkReader<R: std::io::Read> {
    chunk: Vec<u8>,
    file_len: usize,
    reader: R,
}
impl<R: std::io::Read> DataWriterChunkReader<R> {
    pub fn read_chunk(&mut self) -> std::io::Result<&[u8]> {
        use std::io::ErrorKind;
        let mut buf: &mut [u8] = &mut self.chunk;
        let mut read_len = 0;
        while !buf.is_empty() {
            match self.reader.read(buf) {
                Ok(0) => break,
                Ok(n) => {
                    read_len += n;
                    let tmp = buf;
                    buf = &mut tmp[n..];
                }
                Err(ref e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.file_len += read_len;
        Ok(&self.chunk[..read_len])
    }
}

/// Key of the duplicate cache: the file's length and the SHA-256 of its content (a
/// collision-resistant digest, so a crafted file cannot alias another's data).
type DupKey = (u64, [u8; 32]);

/// A block as it goes into the image.
enum Stored {
    /// All zeros: no bytes in the image.
    Hole,
    Compressed(Vec<u8>),
    Uncompressed,
}

pub(crate) struct DataWriter<'a> {
    compressor: &'a (
            dyn crate::traits::CompressionAction<
        Compressor = super::compressor::Compressor,
        FilesystemCompressor = FilesystemCompressor,
        SuperBlock = super::squashfs::SuperBlock,
        Error = crate::BackhandError,
    > + Send
                + Sync
        ),
    block_size: u32,
    fs_compressor: FilesystemCompressor,
    /// If some, every file added so far (whole blocks or a fragment) by length and digest
    dup_cache: Option<HashMap<DupKey, (usize, Added)>>,
    /// Un-written fragment_bytes
    pub(crate) fragment_bytes: Vec<u8>,
    pub(crate) fragment_table: Vec<Fragment>,
    /// Full fragment blocks not yet compressed and written (their indices follow
    /// `fragment_table`); compressed together, on all threads
    pending_fragments: Vec<Vec<u8>>,
    /// Threads compressing blocks
    threads: usize,
}

impl<'a> DataWriter<'a> {
    pub fn new(
        compressor: &'a (
                dyn crate::traits::CompressionAction<
            Compressor = super::compressor::Compressor,
            FilesystemCompressor = FilesystemCompressor,
            SuperBlock = super::squashfs::SuperBlock,
            Error = crate::BackhandError,
        > + Send
                    + Sync
            ),
        fs_compressor: FilesystemCompressor,
        block_size: u32,
        no_duplicate_files: bool,
    ) -> Self {
        Self {
            compressor,
            block_size,
            fs_compressor,
            dup_cache: no_duplicate_files.then_some(HashMap::default()),
            fragment_bytes: Vec::with_capacity(block_size as usize),
            fragment_table: vec![],
            pending_fragments: vec![],
            threads: 1,
        }
    }

    /// Compress on `threads` threads (at least one)
    pub(crate) fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// Blocks read ahead and compressed together: 4 per thread, at most 32 MiB of them
    /// (but one per thread)
    fn batch_len(&self) -> usize {
        if self.threads == 1 {
            return 1;
        }
        let cap = ((32 << 20) / self.block_size as usize).max(self.threads);
        (self.threads * 4).min(cap)
    }

    /// How each of `blocks` goes into the image, compressed on up to `self.threads`
    /// threads; the result is in the order of `blocks`.
    fn compress_blocks(&self, blocks: &[Vec<u8>], holes: bool) -> Result<Vec<Stored>, BackhandError> {
        let one = |raw: &[u8]| -> Result<Stored, BackhandError> {
            if holes && raw.iter().all(|byte| *byte == 0) {
                // like mksquashfs, store a block of zeros as a hole
                return Ok(Stored::Hole);
            }
            let cb = self.compressor.compress(raw, self.fs_compressor, self.block_size)?;
            // compression didn't reduce size: store uncompressed
            Ok(if cb.len() > raw.len() { Stored::Uncompressed } else { Stored::Compressed(cb) })
        };
        let threads = self.threads.min(blocks.len());
        if threads <= 1 {
            return blocks.iter().map(|b| one(b)).collect();
        }
        let mut out: Vec<Option<Result<Stored, BackhandError>>> = (0..blocks.len()).map(|_| None).collect();
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let one = &one;
                    s.spawn(move || {
                        blocks
                            .iter()
                            .enumerate()
                            .skip(t)
                            .step_by(threads)
                            .map(|(i, b)| (i, one(b)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for w in workers {
                match w.join() {
                    Ok(done) => {
                        for (i, r) in done {
                            out[i] = Some(r);
                        }
                    }
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        });
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(BackhandError::StdIo(std::io::Error::other("block left uncompressed")))
                })
            })
            .collect()
    }

    /// Index the next fragment gets
    fn next_fragment_index(&self) -> u32 {
        (self.fragment_table.len() + self.pending_fragments.len()) as u32
    }

    /// Put `bytes` (shorter than a block) into the current fragment block, starting a
    /// new one when they do not fit; full fragment blocks are written in batches
    fn add_fragment<W: WriteSeek>(
        &mut self,
        bytes: &[u8],
        mut writer: W,
    ) -> Result<Added, BackhandError> {
        if (bytes.len() + self.fragment_bytes.len()) > self.block_size as usize {
            let full = std::mem::replace(
                &mut self.fragment_bytes,
                Vec::with_capacity(self.block_size as usize),
            );
            self.pending_fragments.push(full);
            if self.pending_fragments.len() >= self.batch_len() {
                self.write_pending_fragments(&mut writer)?;
            }
        }
        let frag_index = self.next_fragment_index();
        let block_offset = self.fragment_bytes.len() as u32;
        self.fragment_bytes.extend_from_slice(bytes);
        Ok(Added::Fragment { frag_index, block_offset })
    }

    /// Compress and write every full fragment block waiting, in order
    fn write_pending_fragments<W: Write + Seek>(&mut self, mut writer: W) -> Result<(), BackhandError> {
        let pending = std::mem::take(&mut self.pending_fragments);
        let stored = self.compress_blocks(&pending, false)?;
        for (raw, s) in pending.iter().zip(stored) {
            let start = writer.stream_position()?;
            let size = match s {
                Stored::Compressed(cb) => {
                    writer.write_all(&cb)?;
                    DataSize::new_compressed(cb.len() as u32)
                }
                Stored::Uncompressed | Stored::Hole => {
                    writer.write_all(raw)?;
                    DataSize::new_uncompressed(raw.len() as u32)
                }
            };
            self.fragment_table.push(Fragment::new(start, size, 0));
        }
        Ok(())
    }

    /// Add to data writer, either a pre-compressed Data or Fragment
    // TODO: support tail-end fragments (off by default in squashfs-tools/mksquashfs)
    pub(crate) fn just_copy_it<W: WriteSeek>(
        &mut self,
        mut reader: SquashfsRawData,
        mut writer: W,
    ) -> Result<(usize, Added), BackhandError> {
        //just clone it, because block sizes where never modified, just copy it
        let source = reader.file;
        let mut block_sizes = source.block_sizes().to_vec();
        let sparse = source.sparse();
        let mut read_buf = vec![];
        let mut decompress_buf = vec![];

        // if the first block is not full (fragment), store only a fragment
        // otherwise processed to store blocks
        let blocks_start = writer.stream_position()?;
        // Older backhand versions gave an empty file a fragment, do not copy that
        if source.file_len() == 0 {
            return Ok((0, Added::Data { blocks_start, block_sizes: vec![], sparse: 0 }));
        }
        let first_block = match reader.next_block(&mut read_buf) {
            Some(Ok(first_block)) => first_block,
            Some(Err(x)) => return Err(x),
            None => return Ok((0, Added::Data { blocks_start, block_sizes, sparse })),
        };

        // write and early return if fragment
        if first_block.fragment {
            reader.decompress(first_block, &mut read_buf, &mut decompress_buf)?;
            let added = self.add_fragment(&decompress_buf, &mut writer)?;
            return Ok((decompress_buf.len(), added));
        }

        // The reader gives a hole as a block of zeros, but a hole has no bytes in the image
        let mut is_hole = source.block_sizes().iter().map(|size| size.size() == 0);
        let mut copy_block = |writer: &mut W, raw: &[u8]| -> Result<(), BackhandError> {
            if is_hole.next() != Some(true) {
                writer.write_all(raw)?;
            }
            Ok(())
        };

        copy_block(&mut writer, &read_buf)?;
        while let Some(block) = reader.next_block(&mut read_buf) {
            let block = block?;
            if block.fragment {
                reader.decompress(block, &mut read_buf, &mut decompress_buf)?;
                // TODO: support tail-end fragments, for now just treat it like a block
                let cb = self.compressor.compress(
                    &decompress_buf,
                    self.fs_compressor,
                    self.block_size,
                )?;
                // compression didn't reduce size
                if cb.len() > decompress_buf.len() {
                    // store uncompressed
                    block_sizes.push(DataSize::new_uncompressed(decompress_buf.len() as u32));
                    writer.write_all(&decompress_buf)?;
                } else {
                    // store compressed
                    block_sizes.push(DataSize::new_compressed(cb.len() as u32));
                    writer.write_all(&cb)?;
                }
            } else {
                copy_block(&mut writer, &read_buf)?;
            }
        }
        let file_size = source.file_len();
        Ok((file_size, Added::Data { blocks_start, block_sizes, sparse }))
    }

    /// Add to data writer, either a Data or Fragment
    ///
    /// If `self.dup_cache` is on, return already added `(usize, Added)` if a file of the
    /// same length and SHA-256 was added before: whole-block files and files stored
    /// as a fragment alike (as mksquashfs does).
    // TODO: support tail-end fragments (off by default in squashfs-tools/mksquashfs)
    pub(crate) fn add_bytes<W: WriteSeek>(
        &mut self,
        reader: impl Read,
        mut writer: W,
    ) -> Result<(usize, Added), BackhandError> {
        let block_size = self.block_size as usize;
        let mut chunk_reader =
            DataWriterChunkReader { chunk: vec![0u8; block_size], file_len: 0, reader };

        // read the first block
        let first = chunk_reader.read_chunk()?.to_vec();

        // an empty file must carry no fragment reference: a zero-byte
        // fragment entry makes the kernel squashfs driver reject the inode
        // with EINVAL on stat/open (Added::Data with no blocks encodes
        // frag_index 0xffffffff, matching mksquashfs)
        if first.is_empty() {
            let blocks_start = writer.stream_position()?;
            return Ok((0, Added::Data { blocks_start, block_sizes: vec![], sparse: 0 }));
        }

        // chunk size not exactly the size of the block: the whole file is a fragment
        if first.len() != block_size {
            let key: DupKey = (first.len() as u64, Sha256::digest(&first).into());
            if let Some(original) = self.dup_cache.as_ref().and_then(|c| c.get(&key)) {
                trace!("duplicate fragment data found");
                return Ok(original.clone());
            }
            let added = (first.len(), self.add_fragment(&first, &mut writer)?);
            if let Some(cache) = &mut self.dup_cache {
                cache.insert(key, added.clone());
            }
            return Ok(added);
        }

        // Add to data bytes, a batch of blocks at a time, compressed on all threads
        let blocks_start = writer.stream_position()?;
        let mut block_sizes = vec![];
        let mut hasher = Sha256::new();
        let mut sparse = 0;
        let batch_len = self.batch_len();
        let mut batch = vec![first];
        let mut eof = false;
        loop {
            while !eof && batch.len() < batch_len {
                let chunk = chunk_reader.read_chunk()?;
                eof = chunk.len() < block_size;
                if !chunk.is_empty() {
                    batch.push(chunk.to_vec());
                }
            }
            if batch.is_empty() {
                break;
            }
            let stored = self.compress_blocks(&batch, true)?;
            for (raw, s) in batch.iter().zip(stored) {
                match s {
                    Stored::Hole => {
                        block_sizes.push(DataSize::hole());
                        sparse += raw.len() as u64;
                    }
                    Stored::Uncompressed => {
                        block_sizes.push(DataSize::new_uncompressed(raw.len() as u32));
                        writer.write_all(raw)?;
                    }
                    Stored::Compressed(cb) => {
                        block_sizes.push(DataSize::new_compressed(cb.len() as u32));
                        writer.write_all(&cb)?;
                    }
                }
                hasher.update(raw);
            }
            batch.clear();
            if eof {
                break;
            }
        }

        let added = (chunk_reader.file_len, Added::Data { blocks_start, block_sizes, sparse });
        let Some(dup_cache) = &mut self.dup_cache else {
            return Ok(added);
        };

        // The hash is known only after the whole file is read. Thus, like mksquashfs, write the
        // data first, then seek back so that the next data writes over a duplicate.
        let key: DupKey = (chunk_reader.file_len as u64, hasher.finalize().into());
        match dup_cache.entry(key) {
            Entry::Occupied(original) => {
                trace!("duplicate file data found");
                writer.seek(SeekFrom::Start(blocks_start))?;
                Ok(original.get().clone())
            }
            Entry::Vacant(entry) => Ok(entry.insert(added).clone()),
        }
    }

    /// Write the fragment blocks: the full ones waiting and the current one (even when
    /// empty if there is no other, as before)
    pub fn finalize<W: Write + Seek>(&mut self, mut writer: W) -> Result<(), BackhandError> {
        if !self.fragment_bytes.is_empty() || self.next_fragment_index() == 0 {
            let last = std::mem::take(&mut self.fragment_bytes);
            self.pending_fragments.push(last);
        }
        self.write_pending_fragments(&mut writer)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::{
        DEFAULT_BLOCK_SIZE,
        compression::{Compressor, DefaultCompressor},
    };

    #[test]
    #[cfg(feature = "gzip")]
    fn test_duplicate_check() {
        let mut data_writer = DataWriter::new(
            &DefaultCompressor,
            FilesystemCompressor::new(Compressor::Gzip, None).unwrap(),
            DEFAULT_BLOCK_SIZE,
            true,
        );
        let bytes = [0xff_u8; DEFAULT_BLOCK_SIZE as usize * 2];
        let mut writer = Cursor::new(vec![]);
        let added_1 = data_writer.add_bytes(&bytes[..], &mut writer).unwrap();
        let added_2 = data_writer.add_bytes(&bytes[..], &mut writer).unwrap();
        assert_eq!(added_1, added_2);
    }

    #[test]
    #[cfg(feature = "gzip")]
    fn test_no_duplicate_check() {
        let mut data_writer = DataWriter::new(
            &DefaultCompressor,
            FilesystemCompressor::new(Compressor::Gzip, None).unwrap(),
            DEFAULT_BLOCK_SIZE,
            false,
        );
        let bytes = [0xff_u8; DEFAULT_BLOCK_SIZE as usize * 2];
        let mut writer = Cursor::new(vec![]);
        let added_1 = data_writer.add_bytes(&bytes[..], &mut writer).unwrap();
        let added_2 = data_writer.add_bytes(&bytes[..], &mut writer).unwrap();
        assert_ne!(added_1, added_2);
    }
}
