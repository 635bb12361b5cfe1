//! bzip2 → sparse raw image, streamed and parallel.
//!
//! The input is cut into blocks by [`super::bz2blocks::Scanner`] (one thread), each block
//! is decoded as its own single-block stream by a pool of worker threads (libbz2-rs-sys,
//! pure Rust), and one writer puts the results in order into the output: aligned runs of
//! at least 4 KiB of zeros become holes (skipped, then `set_len` at the end), the rest is
//! written with positioned writes. At most a fixed number of blocks are in flight, so
//! memory stays bounded (a few MiB per block) whatever the image size. A piece that fails
//! to decode (a chance magic match split a block) is merged with the next one and decoded
//! again. Stream CRCs are checked, so the output is what `bunzip2` would produce or an
//! error. Output goes to `<dest>.part`, renamed onto `dest` only when complete.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;

use bzip2::{Decompress, Status};

use super::bz2blocks::{BitBuf, Piece, ScanError, Scanner, MAX_PIECE_BYTES};
use super::bz2decode::{self, Seg};
use super::progress::{Progress, ProgressMode};

/// Holes are made only for zero runs covering whole aligned blocks of this size.
pub const HOLE_ALIGN: u64 = 4096;
const WRITE_BUF: usize = 4 << 20;
const OUT_CHUNK: usize = 1 << 20;

/// Errors of decompression; each names the input file.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("{}: {err}", path.display())]
    Input { path: PathBuf, err: ScanError },
    #[error("{}: corrupt bzip2 block at byte {byte}: {err}", path.display())]
    Block {
        path: PathBuf,
        byte: u64,
        err: String,
    },
    #[error("{}: stream CRC mismatch at byte {byte} (stored {stored:08x}, computed {computed:08x})", path.display())]
    StreamCrc {
        path: PathBuf,
        byte: u64,
        stored: u32,
        computed: u32,
    },
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: io::Error },
    #[error("decompression worker thread panicked")]
    Worker,
}

/// Decompression settings.
#[derive(Debug, Clone, Default)]
pub struct DecompressOptions {
    /// Decoder threads; 0 means one per available core.
    pub threads: usize,
    /// Progress display.
    pub progress: ProgressMode,
}

/// What a decompression did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecompressStats {
    /// Size of the bzip2 input.
    pub compressed_bytes: u64,
    /// Size of the output file.
    pub decompressed_bytes: u64,
    /// Bytes actually written (the rest are holes).
    pub data_bytes_written: u64,
    /// bzip2 blocks decoded.
    pub blocks: u64,
    /// bzip2 streams in the input.
    pub streams: u64,
    /// Blocks not decoded because an identical block (same compressed bits) was.
    pub blocks_reused: u64,
}

/// Decoded output of one block: data and runs of one repeated byte.
#[derive(Default)]
struct Segs(Vec<Seg>);

impl Segs {
    fn push_chunk(&mut self, c: &[u8]) {
        if c.is_empty() {
            return;
        }
        let b = c[0];
        let uniform = c
            .chunks(64)
            .all(|w| w.iter().fold(0u8, |a, &x| a | (x ^ b)) == 0);
        if uniform {
            if let Some(Seg::Fill(fb, n)) = self.0.last_mut() {
                if *fb == b {
                    *n += c.len() as u64;
                    return;
                }
            }
            self.0.push(Seg::Fill(b, c.len() as u64));
        } else {
            if let Some(Seg::Data(d)) = self.0.last_mut() {
                d.extend_from_slice(c);
                return;
            }
            self.0.push(Seg::Data(c.to_vec()));
        }
    }

    /// Bytes of data (not fills) held.
    fn data_len(&self) -> usize {
        self.0
            .iter()
            .map(|s| match s {
                Seg::Data(d) => d.len(),
                Seg::Fill(..) => 0,
            })
            .sum()
    }
}

/// Decodes one piece: the fast decoder, or libbzip2 for whatever it declines (so errors
/// and odd blocks are judged by libbzip2, as `bunzip2` would).
fn decode(piece: &Piece) -> Result<Segs, String> {
    match bz2decode::decode_block(&piece.bits, piece.level) {
        Ok(segs) => Ok(Segs(segs)),
        Err(_) => decode_libbz2(piece),
    }
}

/// Pieces whose compressed bits are at most this long are remembered with their decoded
/// output (when that holds at most [`CACHE_MAX_DATA`] bytes of data): a later block with the
/// same bits (same content, same CRC; Flatcar's zero runs) is not decoded again.
const CACHE_MAX_BITS_BYTES: usize = 64 << 10;
const CACHE_MAX_DATA: usize = 256 << 10;
const CACHE_MAX_ENTRIES: usize = 256;

/// Decoded blocks by their exact compressed bits (level, bit length, bytes).
#[derive(Default)]
struct BlockCache {
    map: HashMap<u64, Vec<(u8, BitBuf, Arc<Segs>)>>,
    entries: usize,
}

impl BlockCache {
    fn key(piece: &Piece) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        piece.level.hash(&mut h);
        piece.bits.hash(&mut h);
        h.finish()
    }

    fn get(&self, key: u64, piece: &Piece) -> Option<Arc<Segs>> {
        self.map.get(&key)?.iter().find_map(|(level, bits, segs)| {
            (*level == piece.level && *bits == piece.bits).then(|| Arc::clone(segs))
        })
    }

    fn insert(&mut self, key: u64, piece: &Piece, segs: &Arc<Segs>) {
        if self.entries >= CACHE_MAX_ENTRIES || self.get(key, piece).is_some() {
            return;
        }
        self.entries += 1;
        self.map
            .entry(key)
            .or_default()
            .push((piece.level, piece.bits.clone(), Arc::clone(segs)));
    }
}

/// Decodes `piece` through the cache of repeated blocks; `reused` tells whether the
/// result came from the cache.
fn decode_cached(cache: &Mutex<BlockCache>, piece: &Piece) -> (Result<Arc<Segs>, String>, bool) {
    if piece.bits.bytes.len() > CACHE_MAX_BITS_BYTES {
        return (decode(piece).map(Arc::new), false);
    }
    let key = BlockCache::key(piece);
    if let Some(segs) = cache.lock().ok().and_then(|c| c.get(key, piece)) {
        return (Ok(segs), true);
    }
    let r = decode(piece).map(Arc::new);
    if let Ok(segs) = &r {
        if segs.data_len() <= CACHE_MAX_DATA {
            if let Ok(mut c) = cache.lock() {
                c.insert(key, piece, segs);
            }
        }
    }
    (r, false)
}

/// Decodes one piece as a single-block stream with libbzip2.
fn decode_libbz2(piece: &Piece) -> Result<Segs, String> {
    let stream = piece.to_stream();
    let mut d = Decompress::new(false);
    let mut out = vec![0u8; OUT_CHUNK];
    let mut segs = Segs::default();
    loop {
        let in_before = d.total_in();
        let out_before = d.total_out();
        let consumed = in_before as usize;
        let status = d
            .decompress(&stream[consumed.min(stream.len())..], &mut out)
            .map_err(|e| e.to_string())?;
        let produced = (d.total_out() - out_before) as usize;
        for c in out[..produced].chunks(HOLE_ALIGN as usize) {
            segs.push_chunk(c);
        }
        match status {
            Status::StreamEnd => return Ok(segs),
            _ => {
                if produced == 0 && d.total_in() == in_before {
                    return Err("block ends early".into());
                }
            }
        }
    }
}

/// Writes in order, turning aligned zero runs into holes.
struct SparseWriter {
    file: File,
    path: PathBuf,
    /// Output offset of `buf[0]`.
    buf_start: u64,
    buf: Vec<u8>,
    written: u64,
}

impl SparseWriter {
    fn pos(&self) -> u64 {
        self.buf_start + self.buf.len() as u64
    }

    fn io(&self, err: io::Error) -> DecompressError {
        DecompressError::Io {
            path: self.path.clone(),
            err,
        }
    }

    fn flush(&mut self) -> Result<(), DecompressError> {
        if !self.buf.is_empty() {
            self.file
                .write_all_at(&self.buf, self.buf_start)
                .map_err(|e| self.io(e))?;
            self.written += self.buf.len() as u64;
            self.buf_start += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    fn data(&mut self, mut d: &[u8]) -> Result<(), DecompressError> {
        while !d.is_empty() {
            let room = WRITE_BUF - self.buf.len();
            let n = room.min(d.len());
            self.buf.extend_from_slice(&d[..n]);
            d = &d[n..];
            if self.buf.len() >= WRITE_BUF {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn fill(&mut self, b: u8, n: u64) -> Result<(), DecompressError> {
        let pos = self.pos();
        let hole_start = pos.next_multiple_of(HOLE_ALIGN);
        let hole_end = (pos + n) / HOLE_ALIGN * HOLE_ALIGN;
        if b == 0 && hole_end > hole_start {
            self.repeat(0, hole_start - pos)?;
            self.flush()?;
            self.buf_start = hole_end;
            self.repeat(0, pos + n - hole_end)
        } else {
            self.repeat(b, n)
        }
    }

    fn repeat(&mut self, b: u8, mut n: u64) -> Result<(), DecompressError> {
        let chunk = [b; 4096];
        while n > 0 {
            let k = n.min(chunk.len() as u64) as usize;
            self.data(&chunk[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    fn segs(&mut self, segs: &Segs) -> Result<(), DecompressError> {
        for s in &segs.0 {
            match s {
                Seg::Data(d) => self.data(d)?,
                Seg::Fill(b, n) => self.fill(*b, *n)?,
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(u64, u64), DecompressError> {
        self.flush()?;
        let size = self.pos();
        self.file.set_len(size).map_err(|e| self.io(e))?;
        self.file.sync_all().map_err(|e| self.io(e))?;
        Ok((size, self.written))
    }
}

enum Work {
    Piece(u64, Piece),
    Fail(u64, ScanError),
    /// Input finished: (seq, streams, compressed bytes).
    End(u64, u64, u64),
}

enum Done {
    /// A piece, its decoded output, and whether that came from the cache.
    Decoded(Piece, Result<Arc<Segs>, String>, bool),
    ScanFailed(ScanError),
    /// Input finished: (streams, compressed bytes).
    End(u64, u64),
}

/// Decompresses the bzip2 file `src` to a sparse file `dest` (via `<dest>.part`).
/// On error nothing is left at `dest` or `<dest>.part`.
pub fn decompress_file(
    src: &Path,
    dest: &Path,
    opts: &DecompressOptions,
) -> Result<DecompressStats, DecompressError> {
    let part = part_path(dest);
    // a signal removes the half-decompressed copy too (it cannot be resumed)
    let _part_guard = crate::cleanup::register(&part);
    let res = decompress_inner(src, dest, &part, opts);
    if res.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    res
}

/// `<dest>.part`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

fn decompress_inner(
    src: &Path,
    dest: &Path,
    part: &Path,
    opts: &DecompressOptions,
) -> Result<DecompressStats, DecompressError> {
    let input = File::open(src).map_err(|err| DecompressError::Io {
        path: src.to_path_buf(),
        err,
    })?;
    let total_in = input.metadata().map(|m| m.len()).ok();
    let out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(part)
        .map_err(|err| DecompressError::Io {
            path: part.to_path_buf(),
            err,
        })?;
    let threads = match opts.threads {
        0 => thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    };
    let in_flight = (threads * 2 + 2).min(64);
    let label = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let progress = Progress::new(opts.progress, &format!("decompress {label}"), total_in);

    let (work_tx, work_rx) = mpsc::sync_channel::<Work>(in_flight);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = mpsc::channel::<(u64, Done)>();
    let (token_tx, token_rx) = mpsc::sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        let _ = token_tx.send(());
    }

    let mut writer = SparseWriter {
        file: out,
        path: part.to_path_buf(),
        buf_start: 0,
        buf: Vec::with_capacity(WRITE_BUF),
        written: 0,
    };

    let cache = Mutex::new(BlockCache::default());
    let cache = &cache;
    let result = thread::scope(|scope| {
        scope.spawn(move || scan(input, work_tx, token_rx));
        for _ in 0..threads {
            let rx = Arc::clone(&work_rx);
            let tx = done_tx.clone();
            scope.spawn(move || worker(rx, tx, cache));
        }
        drop(done_tx);
        let r = write_in_order(src, &done_rx, &token_tx, &mut writer, &progress);
        // Unblock the scanner and workers if we stopped early.
        drop(token_tx);
        drop(done_rx);
        r
    });
    let (blocks, blocks_reused, streams, compressed) = result?;
    let (size, written) = writer.finish()?;
    progress.finish(compressed);
    std::fs::rename(part, dest).map_err(|err| DecompressError::Io {
        path: dest.to_path_buf(),
        err,
    })?;
    Ok(DecompressStats {
        compressed_bytes: compressed,
        decompressed_bytes: size,
        data_bytes_written: written,
        blocks,
        streams,
        blocks_reused,
    })
}

fn scan(input: File, work: SyncSender<Work>, tokens: Receiver<()>) {
    let mut scanner = Scanner::new(input);
    let mut seq = 0u64;
    loop {
        if tokens.recv().is_err() {
            return;
        }
        let item = match scanner.next() {
            Some(Ok(p)) => Work::Piece(seq, p),
            Some(Err(e)) => Work::Fail(seq, e),
            None => Work::End(seq, scanner.streams(), scanner.bytes_read()),
        };
        let stop = !matches!(item, Work::Piece(..));
        if work.send(item).is_err() || stop {
            return;
        }
        seq += 1;
    }
}

fn worker(
    rx: Arc<Mutex<Receiver<Work>>>,
    tx: mpsc::Sender<(u64, Done)>,
    cache: &Mutex<BlockCache>,
) {
    loop {
        let item = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(item) = item else { return };
        let msg = match item {
            Work::Piece(seq, p) => {
                let (r, reused) = decode_cached(cache, &p);
                (seq, Done::Decoded(p, r, reused))
            }
            Work::Fail(seq, e) => (seq, Done::ScanFailed(e)),
            Work::End(seq, streams, bytes) => (seq, Done::End(streams, bytes)),
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}

/// Receives results, writes them in sequence order; returns (blocks, blocks reused,
/// streams, input bytes).
fn write_in_order(
    src: &Path,
    rx: &Receiver<(u64, Done)>,
    tokens: &SyncSender<()>,
    w: &mut SparseWriter,
    progress: &Progress,
) -> Result<(u64, u64, u64, u64), DecompressError> {
    let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
    let mut next = 0u64;
    let mut get = |seq: u64| -> Result<Done, DecompressError> {
        loop {
            if let Some(d) = pending.remove(&seq) {
                let _ = tokens.send(());
                return Ok(d);
            }
            match rx.recv() {
                Ok((s, d)) => {
                    pending.insert(s, d);
                }
                Err(_) => return Err(DecompressError::Worker),
            }
        }
    };
    let input_err = |err| DecompressError::Input {
        path: src.to_path_buf(),
        err,
    };
    let mut blocks = 0u64;
    let mut reused = 0u64;
    let mut crc = 0u32;
    loop {
        let d = get(next)?;
        next += 1;
        let (piece, segs) = match d {
            Done::End(streams, bytes) => return Ok((blocks, reused, streams, bytes)),
            Done::ScanFailed(e) => return Err(input_err(e)),
            Done::Decoded(p, Ok(segs), hit) => {
                reused += u64::from(hit);
                (p, segs)
            }
            Done::Decoded(mut p, Err(mut err), _) => {
                // A chance magic match may have split a block: merge with what follows.
                let segs = loop {
                    if p.stream_end.is_some() || p.bits.bytes.len() > MAX_PIECE_BYTES {
                        return Err(DecompressError::Block {
                            path: src.to_path_buf(),
                            byte: p.start_bit / 8,
                            err,
                        });
                    }
                    let following = get(next)?;
                    next += 1;
                    match following {
                        // Only a piece that fails too can be the rest of a split block.
                        Done::Decoded(q, Err(_), _) => p.merge(&q),
                        Done::Decoded(_, Ok(_), _) => {
                            return Err(DecompressError::Block {
                                path: src.to_path_buf(),
                                byte: p.start_bit / 8,
                                err,
                            });
                        }
                        Done::ScanFailed(e) => return Err(input_err(e)),
                        Done::End(..) => {
                            return Err(input_err(ScanError::Truncated(p.end_bit / 8)));
                        }
                    }
                    match decode(&p) {
                        Ok(s) => break Arc::new(s),
                        Err(e) => err = e,
                    }
                };
                (p, segs)
            }
        };
        w.segs(&segs)?;
        blocks += 1;
        crc = crc.rotate_left(1) ^ piece.block_crc();
        if let Some(stored) = piece.stream_end {
            if stored != crc {
                return Err(DecompressError::StreamCrc {
                    path: src.to_path_buf(),
                    byte: piece.end_bit / 8,
                    stored,
                    computed: crc,
                });
            }
            crc = 0;
        }
        progress.set(piece.end_bit / 8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bzip2::write::BzEncoder;
    use bzip2::Compression;
    use std::io::Write;

    fn bz2(data: &[u8], level: u32) -> Vec<u8> {
        let mut e = BzEncoder::new(Vec::new(), Compression::new(level));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn sample() -> Vec<u8> {
        // Several blocks at level 1 (100k): pseudo-random data, zero runs, 0xFF runs.
        let mut v = Vec::new();
        let mut x: u32 = 12345;
        for i in 0..40 {
            for _ in 0..30_000 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                v.push((x >> 16) as u8);
            }
            let fill = if i % 3 == 0 { 0xFF } else { 0 };
            v.extend(std::iter::repeat_n(fill, 70_000 + i * 1000));
        }
        v
    }

    fn run(input: &[u8], threads: usize) -> Result<(Vec<u8>, DecompressStats), DecompressError> {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("in.bz2");
        let dest = dir.path().join("out.bin");
        std::fs::write(&src, input).unwrap();
        let opts = DecompressOptions {
            threads,
            progress: ProgressMode::Quiet,
        };
        let r = decompress_file(&src, &dest, &opts);
        assert!(!part_path(&dest).exists());
        match r {
            Ok(s) => Ok((std::fs::read(&dest).unwrap(), s)),
            Err(e) => {
                assert!(!dest.exists());
                Err(e)
            }
        }
    }

    #[test]
    fn roundtrip_multi_block_multi_stream() {
        let data = sample();
        let mut c = bz2(&data, 1);
        c.extend(bz2(&data[..500_000], 9));
        for threads in [1, 3] {
            let (out, stats) = run(&c, threads).unwrap();
            assert_eq!(out.len(), data.len() + 500_000);
            assert!(out[..data.len()] == data[..]);
            assert!(out[data.len()..] == data[..500_000]);
            assert_eq!(stats.streams, 2);
            assert!(stats.blocks > 5, "{stats:?}");
            assert!(stats.data_bytes_written < stats.decompressed_bytes);
        }
    }

    fn flat(segs: &Segs) -> Vec<u8> {
        let mut v = Vec::new();
        for s in &segs.0 {
            match s {
                Seg::Data(d) => v.extend_from_slice(d),
                Seg::Fill(b, n) => v.extend(std::iter::repeat_n(*b, *n as usize)),
            }
        }
        v
    }

    #[test]
    fn fast_decoder_agrees_with_libbz2_without_fallback() {
        let mut data = sample();
        // runs of every length around the run-length limits, and a long run of 0xFF
        for n in 1..600 {
            data.extend(std::iter::repeat_n((n % 7) as u8, n));
        }
        data.extend(std::iter::repeat_n(0xFFu8, 3_000_000));
        data.extend_from_slice(b"end");
        for level in [1, 9] {
            let c = bz2(&data, level);
            let mut total = Vec::new();
            for p in Scanner::new(&c[..]) {
                let p = p.unwrap();
                let fast = Segs(bz2decode::decode_block(&p.bits, p.level).unwrap());
                let slow = decode_libbz2(&p).unwrap();
                let f = flat(&fast);
                assert!(f == flat(&slow));
                total.extend(f);
            }
            assert!(total == data);
        }
    }

    #[test]
    fn fast_decoder_declines_bad_crc() {
        let c = bz2(&sample()[..300_000], 9);
        let mut p = Scanner::new(&c[..]).next().unwrap().unwrap();
        p.bits.bytes[7] ^= 1; // inside the stored block CRC
        assert!(bz2decode::decode_block(&p.bits, p.level).is_err());
        assert!(decode(&p).is_err());
    }

    #[test]
    fn chance_magic_in_block_is_merged() {
        // Split a real block at an arbitrary bit: both halves fail, the merge succeeds.
        let data = sample();
        let c = bz2(&data[..200_000], 9);
        let mut pieces: Vec<Piece> = Scanner::new(&c[..]).map(|p| p.unwrap()).collect();
        assert_eq!(pieces.len(), 1);
        let whole = pieces.remove(0);
        let cut = 5000 * 8 + 3;
        let mut a = whole.clone();
        a.bits = super::super::bz2blocks::BitBuf::extract(&whole.bits.bytes, 0, cut);
        a.stream_end = None;
        let mut b = whole.clone();
        b.bits = super::super::bz2blocks::BitBuf::extract(&whole.bits.bytes, cut, whole.bits.nbits);
        assert!(decode(&a).is_err());
        a.merge(&b);
        let segs = decode(&a).unwrap();
        let total: u64 = segs
            .0
            .iter()
            .map(|s| match s {
                Seg::Data(d) => d.len() as u64,
                Seg::Fill(_, n) => *n,
            })
            .sum();
        assert_eq!(total, 200_000);
    }

    #[test]
    fn errors_name_the_file() {
        let data = sample();
        let c = bz2(&data, 1);
        let e = run(&c[..c.len() / 2], 2).unwrap_err();
        assert!(e.to_string().contains("in.bz2: truncated"), "{e}");
        let mut g = c.clone();
        g.extend_from_slice(b"garbage!");
        let e = run(&g, 2).unwrap_err();
        assert!(e.to_string().contains("trailing garbage"), "{e}");
        let mut bad = c.clone();
        let mid = bad.len() / 3;
        bad[mid] ^= 0x10;
        assert!(run(&bad, 2).is_err());
        let e = run(b"not bzip2 at all", 1).unwrap_err();
        assert!(e.to_string().contains("not bzip2"), "{e}");
    }

    #[test]
    fn holes_are_aligned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o");
        let file = File::create(&path).unwrap();
        let mut w = SparseWriter {
            file,
            path: path.clone(),
            buf_start: 0,
            buf: Vec::new(),
            written: 0,
        };
        w.data(b"abc").unwrap();
        w.fill(0, 3 * HOLE_ALIGN).unwrap();
        w.data(b"x").unwrap();
        w.fill(0, 10).unwrap();
        let (size, written) = w.finish().unwrap();
        assert_eq!(size, 3 + 3 * HOLE_ALIGN + 1 + 10);
        // head zeros up to 4096, hole [4096, 12288), tail zeros + x written
        assert_eq!(written, size - 2 * HOLE_ALIGN);
        let out = std::fs::read(&path).unwrap();
        assert_eq!(&out[..3], b"abc");
        assert!(out[3..3 + 3 * HOLE_ALIGN as usize].iter().all(|&b| b == 0));
        assert_eq!(out[3 + 3 * HOLE_ALIGN as usize], b'x');
    }
}
