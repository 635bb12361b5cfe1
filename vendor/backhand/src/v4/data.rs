//! File Data

use no_std_io2::io::{Read, Seek, SeekFrom, Write};
use std::collections::{HashMap, VecDeque};
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

/// The compressor the data writer and its threads use (a `'static` one, as every
/// [`crate::kinds::Kind`] has)
type Compression = &'static (
            dyn crate::traits::CompressionAction<
    Compressor = super::compressor::Compressor,
    FilesystemCompressor = FilesystemCompressor,
    SuperBlock = super::squashfs::SuperBlock,
    Error = crate::BackhandError,
> + Send
                + Sync
        );

/// A file given to the data writer, named by the order it was given in; its place in
/// the image is known once its blocks are written ([`DataWriter::added`]).
pub(crate) type FileId = usize;

/// A block as it goes into the image.
enum Stored {
    /// All zeros: no bytes in the image; the block's length
    Hole(usize),
    Compressed(Vec<u8>),
    /// The raw block: compression did not make it smaller
    Uncompressed(Vec<u8>),
}

/// How `raw` goes into the image (a block of zeros as a hole if `holes`, as
/// mksquashfs does; stored uncompressed if compression does not make it smaller)
fn store(
    compressor: Compression,
    fs_compressor: FilesystemCompressor,
    block_size: u32,
    raw: Vec<u8>,
    holes: bool,
) -> Result<Stored, BackhandError> {
    if holes && raw.iter().all(|byte| *byte == 0) {
        return Ok(Stored::Hole(raw.len()));
    }
    let cb = compressor.compress(&raw, fs_compressor, block_size)?;
    Ok(if cb.len() > raw.len() { Stored::Uncompressed(raw) } else { Stored::Compressed(cb) })
}

/// One step of the data section, in image order; blocks wait here until their
/// compression is done and every step before them is written.
enum Step {
    /// A file's data starts here
    FileStart,
    /// A block of the current file
    Block(Option<Result<Stored, BackhandError>>),
    /// The current file ends; a duplicate's blocks are written over by what follows
    FileEnd { file: FileId, len: usize, duplicate: bool },
    /// A full fragment block
    Fragment(Option<Result<Stored, BackhandError>>),
}

impl Step {
    fn ready(&self) -> bool {
        !matches!(self, Step::Block(None) | Step::Fragment(None))
    }
}

/// What is known of a file given to the data writer
#[derive(Clone)]
enum FileState {
    Added(usize, Added),
    /// Same content as this earlier file
    SameAs(FileId),
    /// Blocks not all written yet
    Writing,
}

struct Job {
    seq: u64,
    raw: Vec<u8>,
    holes: bool,
}

/// Threads living for the whole write, compressing the blocks sent to them
struct Pool {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    done: std::sync::mpsc::Receiver<(u64, Result<Stored, BackhandError>)>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    fn start(
        threads: usize,
        compressor: Compression,
        fs_compressor: FilesystemCompressor,
        block_size: u32,
    ) -> Result<Self, BackhandError> {
        let (jobs, job_rx) = std::sync::mpsc::channel::<Job>();
        let (done_tx, done) = std::sync::mpsc::channel();
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let mut pool = Pool { jobs: Some(jobs), done, threads: vec![] };
        for n in 0..threads {
            let job_rx = std::sync::Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("squashfs-compress-{n}"))
                .spawn(move || loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    // no more jobs: the write is over
                    let Ok(Job { seq, raw, holes }) = job else { return };
                    let stored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        store(compressor, fs_compressor, block_size, raw, holes)
                    }))
                    .unwrap_or_else(|_| {
                        Err(BackhandError::StdIo(std::io::Error::other("compressor panicked")))
                    });
                    if done_tx.send((seq, stored)).is_err() {
                        return;
                    }
                })?;
            pool.threads.push(handle);
        }
        Ok(pool)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // the threads end once the jobs already sent are done
        drop(self.jobs.take());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Writes file data and fragments. Reading and hashing files happens on the caller's
/// thread while earlier blocks (of this file or of earlier ones) are compressed on a
/// pool of threads; the results are written strictly in the order they were read, so
/// the image is the same bytes whatever the number of threads. A file's place in the
/// image is therefore known only after its blocks are written: [`Self::added`] after
/// [`Self::finalize`].
pub(crate) struct DataWriter {
    compressor: Compression,
    block_size: u32,
    fs_compressor: FilesystemCompressor,
    /// If some, every file added so far (whole blocks or a fragment) by length and digest
    dup_cache: Option<HashMap<DupKey, FileId>>,
    /// Un-written fragment_bytes
    pub(crate) fragment_bytes: Vec<u8>,
    pub(crate) fragment_table: Vec<Fragment>,
    /// Fragment blocks given an index so far (written or waiting in `steps`)
    fragment_blocks: u32,
    /// Every file given, by [`FileId`]
    files: Vec<FileState>,
    /// Steps not written yet, in image order; the first has sequence number `first_seq`
    steps: VecDeque<Step>,
    first_seq: u64,
    /// Blocks in `steps` (compressing or waiting to be written)
    blocks_waiting: usize,
    /// The file being written: where its data starts, its block sizes and hole bytes
    current: (u64, Vec<DataSize>, u64),
    /// Threads compressing blocks
    threads: usize,
    pool: Option<Pool>,
}

impl DataWriter {
    pub fn new(
        compressor: Compression,
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
            fragment_blocks: 0,
            files: vec![],
            steps: VecDeque::new(),
            first_seq: 0,
            blocks_waiting: 0,
            current: (0, vec![], 0),
            threads: 1,
            pool: None,
        }
    }

    /// Compress on `threads` threads (at least one)
    pub(crate) fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// Blocks read ahead of the one written next: 16 per thread, at most 32 MiB of them
    /// (but two per thread)
    fn blocks_ahead(&self) -> usize {
        let cap = ((32 << 20) / self.block_size as usize).max(self.threads * 2);
        (self.threads * 16).min(cap)
    }

    /// Add a step at the end of the data section; a block (`raw`) is compressed on
    /// the pool (here on one thread). Writes whatever is done, and waits while too many
    /// blocks are ahead.
    fn push<W: Write + Seek>(
        &mut self,
        step: Step,
        raw: Option<(Vec<u8>, bool)>,
        writer: &mut W,
    ) -> Result<(), BackhandError> {
        let seq = self.first_seq + self.steps.len() as u64;
        let step = match raw {
            None => step,
            Some((raw, holes)) => {
                if self.threads == 1 {
                    let stored =
                        store(self.compressor, self.fs_compressor, self.block_size, raw, holes);
                    match step {
                        Step::Block(_) => Step::Block(Some(stored)),
                        Step::Fragment(_) => Step::Fragment(Some(stored)),
                        _ => return Err(stopped()),
                    }
                } else {
                    if self.pool.is_none() {
                        self.pool = Some(Pool::start(
                            self.threads,
                            self.compressor,
                            self.fs_compressor,
                            self.block_size,
                        )?);
                    }
                    let jobs = self.pool.as_ref().and_then(|p| p.jobs.as_ref());
                    let sent = jobs.is_some_and(|jobs| jobs.send(Job { seq, raw, holes }).is_ok());
                    if !sent {
                        return Err(stopped());
                    }
                    step
                }
            }
        };
        if matches!(step, Step::Block(_) | Step::Fragment(_)) {
            self.blocks_waiting += 1;
        }
        self.steps.push_back(step);
        self.write_ready(writer)?;
        while self.blocks_waiting >= self.blocks_ahead() {
            self.wait_one()?;
            self.write_ready(writer)?;
        }
        Ok(())
    }

    /// Wait for one block from the pool and put it in its step
    fn wait_one(&mut self) -> Result<(), BackhandError> {
        let pool = self.pool.as_ref().ok_or_else(stopped)?;
        let (seq, stored) = pool.done.recv().map_err(|_| stopped())?;
        self.put(seq, stored)
    }

    fn put(&mut self, seq: u64, stored: Result<Stored, BackhandError>) -> Result<(), BackhandError> {
        let at = seq.checked_sub(self.first_seq).ok_or_else(stopped)? as usize;
        match self.steps.get_mut(at) {
            Some(Step::Block(slot @ None)) | Some(Step::Fragment(slot @ None)) => {
                *slot = Some(stored);
                Ok(())
            }
            _ => Err(stopped()),
        }
    }

    /// Take every block the pool has done, without waiting
    fn collect_done(&mut self) -> Result<(), BackhandError> {
        loop {
            let Some(pool) = self.pool.as_ref() else { return Ok(()) };
            match pool.done.try_recv() {
                Ok((seq, stored)) => self.put(seq, stored)?,
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(()),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return Err(stopped()),
            }
        }
    }

    /// Write the steps at the front that are done
    fn write_ready<W: Write + Seek>(&mut self, writer: &mut W) -> Result<(), BackhandError> {
        self.collect_done()?;
        while self.steps.front().is_some_and(Step::ready) {
            let Some(step) = self.steps.pop_front() else { break };
            self.first_seq += 1;
            self.write_step(step, writer)?;
        }
        Ok(())
    }

    /// Write every step (waiting for the pool)
    fn flush<W: Write + Seek>(&mut self, writer: &mut W) -> Result<(), BackhandError> {
        self.write_ready(writer)?;
        while !self.steps.is_empty() {
            self.wait_one()?;
            self.write_ready(writer)?;
        }
        Ok(())
    }

    fn write_step<W: Write + Seek>(&mut self, step: Step, writer: &mut W) -> Result<(), BackhandError> {
        match step {
            Step::FileStart => {
                self.current = (writer.stream_position()?, vec![], 0);
            }
            Step::Block(stored) => {
                self.blocks_waiting -= 1;
                let size = match stored.ok_or_else(stopped)?? {
                    Stored::Hole(len) => {
                        self.current.2 += len as u64;
                        DataSize::hole()
                    }
                    Stored::Uncompressed(raw) => {
                        writer.write_all(&raw)?;
                        DataSize::new_uncompressed(raw.len() as u32)
                    }
                    Stored::Compressed(cb) => {
                        writer.write_all(&cb)?;
                        DataSize::new_compressed(cb.len() as u32)
                    }
                };
                self.current.1.push(size);
            }
            Step::FileEnd { file, len, duplicate } => {
                let (blocks_start, block_sizes, sparse) = std::mem::take(&mut self.current);
                if duplicate {
                    // Like mksquashfs, the data was written before the hash was known:
                    // what comes next is written over the duplicate's blocks.
                    writer.seek(SeekFrom::Start(blocks_start))?;
                } else {
                    let slot = self.files.get_mut(file).ok_or_else(stopped)?;
                    *slot = FileState::Added(len, Added::Data { blocks_start, block_sizes, sparse });
                }
            }
            Step::Fragment(stored) => {
                self.blocks_waiting -= 1;
                let start = writer.stream_position()?;
                let size = match stored.ok_or_else(stopped)?? {
                    Stored::Compressed(cb) => {
                        writer.write_all(&cb)?;
                        DataSize::new_compressed(cb.len() as u32)
                    }
                    Stored::Uncompressed(raw) => {
                        writer.write_all(&raw)?;
                        DataSize::new_uncompressed(raw.len() as u32)
                    }
                    // not asked for (a fragment block is not checked for zeros)
                    Stored::Hole(_) => return Err(stopped()),
                };
                self.fragment_table.push(Fragment::new(start, size, 0));
            }
        }
        Ok(())
    }

    /// Where file `id` is in the image (after [`Self::finalize`])
    pub(crate) fn added(&self, id: FileId) -> Result<(usize, Added), BackhandError> {
        let original = match self.files.get(id) {
            Some(FileState::SameAs(original)) => *original,
            _ => id,
        };
        match self.files.get(original) {
            Some(FileState::Added(len, added)) => Ok((*len, added.clone())),
            _ => Err(BackhandError::InternalState(err_text!("file {} not written", id))),
        }
    }

    fn new_file(&mut self, state: FileState) -> FileId {
        self.files.push(state);
        self.files.len() - 1
    }

    /// Put `bytes` (shorter than a block) into the current fragment block, starting a
    /// new one when they do not fit; a full fragment block is compressed and written
    /// in turn with the data blocks
    fn add_fragment<W: WriteSeek>(
        &mut self,
        bytes: &[u8],
        writer: &mut W,
    ) -> Result<Added, BackhandError> {
        if (bytes.len() + self.fragment_bytes.len()) > self.block_size as usize {
            let full = std::mem::replace(
                &mut self.fragment_bytes,
                Vec::with_capacity(self.block_size as usize),
            );
            self.fragment_blocks += 1;
            self.push(Step::Fragment(None), Some((full, false)), writer)?;
        }
        let frag_index = self.fragment_blocks;
        let block_offset = self.fragment_bytes.len() as u32;
        self.fragment_bytes.extend_from_slice(bytes);
        Ok(Added::Fragment { frag_index, block_offset })
    }

    /// Add to data writer, either a pre-compressed Data or Fragment
    // TODO: support tail-end fragments (off by default in squashfs-tools/mksquashfs)
    pub(crate) fn just_copy_it<W: WriteSeek>(
        &mut self,
        reader: SquashfsRawData,
        mut writer: W,
    ) -> Result<FileId, BackhandError> {
        // the blocks are copied straight to the image: everything before them first
        self.flush(&mut writer)?;
        let (len, added) = self.copy(reader, &mut writer)?;
        Ok(self.new_file(FileState::Added(len, added)))
    }

    fn copy<W: WriteSeek>(
        &mut self,
        mut reader: SquashfsRawData,
        writer: &mut W,
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
            let added = self.add_fragment(&decompress_buf, writer)?;
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

        copy_block(writer, &read_buf)?;
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
                copy_block(writer, &read_buf)?;
            }
        }
        let file_size = source.file_len();
        Ok((file_size, Added::Data { blocks_start, block_sizes, sparse }))
    }

    /// Add to data writer, either a Data or Fragment; where it went is known after
    /// [`Self::finalize`], from [`Self::added`].
    ///
    /// If `self.dup_cache` is on, a file of the same length and SHA-256 as one added
    /// before gets the earlier file's data: whole-block files and files stored as a
    /// fragment alike (as mksquashfs does).
    // TODO: support tail-end fragments (off by default in squashfs-tools/mksquashfs)
    pub(crate) fn add_bytes<W: WriteSeek>(
        &mut self,
        reader: impl Read,
        mut writer: W,
    ) -> Result<FileId, BackhandError> {
        let block_size = self.block_size as usize;
        let mut chunk_reader =
            DataWriterChunkReader { chunk: vec![0u8; block_size], file_len: 0, reader };

        // read the first block
        let first = chunk_reader.read_chunk()?.to_vec();

        // chunk size not exactly the size of the block: the whole file is a fragment
        // (an empty file is neither, but its blocks_start is where the data is then)
        if !first.is_empty() && first.len() != block_size {
            let key: DupKey = (first.len() as u64, Sha256::digest(&first).into());
            if let Some(original) = self.dup_cache.as_ref().and_then(|c| c.get(&key)) {
                trace!("duplicate fragment data found");
                let state = FileState::SameAs(*original);
                return Ok(self.new_file(state));
            }
            let added = self.add_fragment(&first, &mut writer)?;
            let id = self.new_file(FileState::Added(first.len(), added));
            if let Some(cache) = &mut self.dup_cache {
                cache.insert(key, id);
            }
            return Ok(id);
        }

        let id = self.new_file(FileState::Writing);
        self.push(Step::FileStart, None, &mut writer)?;
        // an empty file must carry no fragment reference: a zero-byte
        // fragment entry makes the kernel squashfs driver reject the inode
        // with EINVAL on stat/open (Added::Data with no blocks encodes
        // frag_index 0xffffffff, matching mksquashfs)
        if first.is_empty() {
            return self.end_file(id, 0, None, &mut writer);
        }

        // the blocks go to the pool as they are read; the next are read (and hashed)
        // while those compress
        let mut hasher = Sha256::new();
        hasher.update(&first);
        self.push(Step::Block(None), Some((first, true)), &mut writer)?;
        loop {
            let chunk = chunk_reader.read_chunk()?;
            let eof = chunk.len() < block_size;
            if !chunk.is_empty() {
                hasher.update(chunk);
                let raw = chunk.to_vec();
                self.push(Step::Block(None), Some((raw, true)), &mut writer)?;
            }
            if eof {
                break;
            }
        }

        // The hash is known only after the whole file is read. Thus, like mksquashfs,
        // write the data first, then seek back so that the next data writes over a
        // duplicate.
        let key: DupKey = (chunk_reader.file_len as u64, hasher.finalize().into());
        self.end_file(id, chunk_reader.file_len, Some(key), &mut writer)
    }

    fn end_file<W: Write + Seek>(
        &mut self,
        id: FileId,
        len: usize,
        key: Option<DupKey>,
        writer: &mut W,
    ) -> Result<FileId, BackhandError> {
        let mut duplicate = false;
        if let (Some(key), Some(cache)) = (key, &mut self.dup_cache) {
            match cache.entry(key) {
                Entry::Occupied(original) => {
                    trace!("duplicate file data found");
                    duplicate = true;
                    let state = FileState::SameAs(*original.get());
                    if let Some(slot) = self.files.get_mut(id) {
                        *slot = state;
                    }
                }
                Entry::Vacant(entry) => {
                    entry.insert(id);
                }
            }
        }
        self.push(Step::FileEnd { file: id, len, duplicate }, None, writer)?;
        Ok(id)
    }

    /// Write everything still waiting and the fragment blocks: the current one too
    /// (even when empty if there is no other, as before)
    pub fn finalize<W: Write + Seek>(&mut self, mut writer: W) -> Result<(), BackhandError> {
        if !self.fragment_bytes.is_empty() || self.fragment_blocks == 0 {
            let last = std::mem::take(&mut self.fragment_bytes);
            self.fragment_blocks += 1;
            self.push(Step::Fragment(None), Some((last, false)), &mut writer)?;
        }
        self.flush(&mut writer)?;
        self.pool = None;
        Ok(())
    }
}

/// The pool or the order of the steps broke down (a compressor thread died)
fn stopped() -> BackhandError {
    BackhandError::StdIo(std::io::Error::other("squashfs data writer: compression stopped"))
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
        let id_1 = data_writer.add_bytes(&bytes[..], &mut writer).unwrap();
        let id_2 = data_writer.add_bytes(&bytes[..], &mut writer).unwrap();
        data_writer.finalize(&mut writer).unwrap();
        assert_eq!(data_writer.added(id_1).unwrap(), data_writer.added(id_2).unwrap());
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
        let id_1 = data_writer.add_bytes(&bytes[..], &mut writer).unwrap();
        let id_2 = data_writer.add_bytes(&bytes[..], &mut writer).unwrap();
        data_writer.finalize(&mut writer).unwrap();
        assert_ne!(data_writer.added(id_1).unwrap(), data_writer.added(id_2).unwrap());
    }
}
