//! Splitting bzip2 input into pieces that decode on their own: a streaming, bit-granular
//! scanner for block-start (`0x314159265359`) and end-of-stream (`0x177245385090`) magics
//! across one or more concatenated streams, and re-wrapping a block as a single-block
//! stream (`BZh<level>`, the block, end-of-stream magic, stream CRC = block CRC).
//!
//! A block magic may also occur by chance inside compressed data. The scanner cannot
//! tell; it cuts there anyway, and the consumer merges a piece that fails to decode with
//! the next one ([`BitBuf::append`]). A chance end-of-stream magic is recognised here: it
//! is a real stream end only when followed (after the CRC and padding) by the end of the
//! input or by another stream's header and magic.

use std::io::{self, Read};

/// Block-start magic (pi).
pub const BLOCK_MAGIC: u64 = 0x3141_5926_5359;
/// End-of-stream magic (sqrt(pi)).
pub const EOS_MAGIC: u64 = 0x1772_4538_5090;
const MASK48: u64 = (1 << 48) - 1;
/// No real bzip2 block comes near this compressed size (900k symbols of at most 20 bits).
pub const MAX_PIECE_BYTES: usize = 16 << 20;
const READ_CHUNK: usize = 1 << 20;

/// A sequence of bits, MSB first, starting at bit 0 of `bytes[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct BitBuf {
    pub bytes: Vec<u8>,
    pub nbits: u64,
}

impl BitBuf {
    /// Appends the `n` low bits of `value` (n <= 57).
    pub fn put(&mut self, value: u64, n: u32) {
        for i in (0..n).rev() {
            let bit = ((value >> i) & 1) as u8;
            let idx = (self.nbits / 8) as usize;
            if idx == self.bytes.len() {
                self.bytes.push(0);
            }
            self.bytes[idx] |= bit << (7 - (self.nbits % 8));
            self.nbits += 1;
        }
    }

    /// Appends all bits of `other`.
    pub fn append(&mut self, other: &BitBuf) {
        if self.nbits % 8 == 0 {
            self.bytes.truncate((self.nbits / 8) as usize);
            self.bytes.extend_from_slice(&other.bytes);
            self.nbits += other.nbits;
            return;
        }
        let full = (other.nbits / 8) as usize;
        let shift = (self.nbits % 8) as u32;
        // Fast path: OR the top of each byte into the current partial byte.
        for &b in &other.bytes[..full] {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= b >> shift;
            self.bytes.push(b << (8 - shift));
        }
        self.nbits += full as u64 * 8;
        let rest = (other.nbits % 8) as u32;
        if rest > 0 {
            let b = other.bytes[full] >> (8 - rest);
            self.put(u64::from(b), rest);
        }
    }

    /// Copies bits `[start, end)` of `src`.
    pub fn extract(src: &[u8], start: u64, end: u64) -> BitBuf {
        let n = end - start;
        let nbytes = n.div_ceil(8) as usize;
        let j = (start / 8) as usize;
        let s = (start % 8) as u32;
        let mut bytes = Vec::with_capacity(nbytes);
        for k in 0..nbytes {
            let hi = src.get(j + k).copied().unwrap_or(0);
            let b = if s == 0 {
                hi
            } else {
                let lo = src.get(j + k + 1).copied().unwrap_or(0);
                (hi << s) | (lo >> (8 - s))
            };
            bytes.push(b);
        }
        let tail = (n % 8) as u32;
        if tail > 0 {
            if let Some(last) = bytes.last_mut() {
                *last &= 0xFFu8 << (8 - tail);
            }
        }
        BitBuf { bytes, nbits: n }
    }

    /// Reads `n` (<= 57) bits at bit offset `at`; `None` past the end.
    pub fn read(&self, at: u64, n: u32) -> Option<u64> {
        if at + u64::from(n) > self.nbits {
            return None;
        }
        Some(read_bits(&self.bytes, at, n))
    }
}

/// Reads `n` (<= 57) bits at bit offset `at` of `buf`; bytes past the end read as zero.
fn read_bits(buf: &[u8], at: u64, n: u32) -> u64 {
    let j = (at / 8) as usize;
    let mut w = [0u8; 8];
    for (k, slot) in w.iter_mut().enumerate() {
        *slot = buf.get(j + k).copied().unwrap_or(0);
    }
    let w = u64::from_be_bytes(w);
    (w << (at % 8)) >> (64 - n)
}

/// One bzip2 block (or, after a chance magic match, part of one).
#[derive(Debug, Clone)]
pub struct Piece {
    /// Stream block-size level (1-9).
    pub level: u8,
    /// From the block magic up to the next magic.
    pub bits: BitBuf,
    /// Bit offset of the block magic in the input (for errors and progress).
    pub start_bit: u64,
    /// Bit offset where this piece ends in the input.
    pub end_bit: u64,
    /// `Some(stream CRC)` when an end-of-stream marker follows this piece.
    pub stream_end: Option<u32>,
}

impl Piece {
    /// The block CRC stored after the block magic.
    pub fn block_crc(&self) -> u32 {
        self.bits.read(48, 32).unwrap_or(0) as u32
    }

    /// Appends the next piece (after a chance magic match split a block).
    pub fn merge(&mut self, next: &Piece) {
        self.bits.append(&next.bits);
        self.end_bit = next.end_bit;
        self.stream_end = next.stream_end;
    }

    /// This block wrapped as a complete single-block bzip2 stream.
    pub fn to_stream(&self) -> Vec<u8> {
        let mut out = BitBuf {
            bytes: vec![b'B', b'Z', b'h', b'0' + self.level],
            nbits: 32,
        };
        out.append(&self.bits);
        out.put(EOS_MAGIC, 48);
        // Combined CRC of one block: rotl(0, 1) ^ crc == crc.
        out.put(u64::from(self.block_crc()), 32);
        out.bytes
    }
}

/// Why the input cannot be split.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    #[error("empty input")]
    Empty,
    #[error("not bzip2 data (no BZh header at byte {0})")]
    NotBzip2(u64),
    #[error("trailing garbage after the last bzip2 stream, at byte {0}")]
    TrailingGarbage(u64),
    #[error("truncated bzip2 data (input ends at byte {0} inside a stream)")]
    Truncated(u64),
    #[error("corrupt bzip2 data at byte {0}: {1}")]
    Corrupt(u64, String),
}

enum State {
    Header {
        byte: u64,
    },
    InStream {
        level: u8,
        piece_start: u64,
        search_from: u64,
    },
    Done,
}

/// Cuts a bzip2 input into [`Piece`]s, reading it in bounded chunks.
pub struct Scanner<R> {
    reader: R,
    buf: Vec<u8>,
    /// Input byte offset of `buf[0]`.
    buf_off: u64,
    eof: bool,
    state: State,
    streams: u64,
    /// First chance end-of-stream candidate rejected in the current stream (byte after it).
    rejected_eos: Option<u64>,
}

const fn prefilter() -> [bool; 256] {
    let mut t = [false; 256];
    let mut s = 0;
    while s < 8 {
        t[((BLOCK_MAGIC >> (32 + s)) & 0xFF) as usize] = true;
        t[((EOS_MAGIC >> (32 + s)) & 0xFF) as usize] = true;
        s += 1;
    }
    t
}
static PREFILTER: [bool; 256] = prefilter();

impl<R: Read> Scanner<R> {
    pub fn new(reader: R) -> Self {
        Scanner {
            reader,
            buf: Vec::new(),
            buf_off: 0,
            eof: false,
            state: State::Header { byte: 0 },
            streams: 0,
            rejected_eos: None,
        }
    }

    /// Number of complete streams seen so far.
    pub fn streams(&self) -> u64 {
        self.streams
    }

    /// Input bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.buf_off + self.buf.len() as u64
    }

    /// Reads until the buffer covers input byte `end` (exclusive) or the input ends.
    fn fill_to(&mut self, end: u64) -> io::Result<()> {
        while !self.eof && self.bytes_read() < end {
            self.read_more()?;
        }
        Ok(())
    }

    fn read_more(&mut self) -> io::Result<()> {
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let n = loop {
            match self.reader.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(old + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }

    /// Bits `[at, at+n)` of the input, or `None` if the input ends first.
    fn bits_at(&mut self, at: u64, n: u32) -> io::Result<Option<u64>> {
        self.fill_to((at + u64::from(n)).div_ceil(8))?;
        if at + u64::from(n) > self.bytes_read() * 8 {
            return Ok(None);
        }
        Ok(Some(read_bits(&self.buf, at - self.buf_off * 8, n)))
    }

    /// Drops buffered bytes before input byte `byte`.
    fn discard_before(&mut self, byte: u64) {
        let k = byte.saturating_sub(self.buf_off).min(self.buf.len() as u64) as usize;
        self.buf.drain(..k);
        self.buf_off += k as u64;
    }

    /// Next magic (block or end-of-stream) at input bit >= `from`.
    fn find_magic(&mut self, from: u64) -> io::Result<Option<(u64, u64)>> {
        let mut i = (from / 8).saturating_sub(self.buf_off) as usize;
        loop {
            // Fast path over full 8-byte windows.
            while i + 8 <= self.buf.len() {
                if PREFILTER[self.buf[i + 1] as usize] {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(&self.buf[i..i + 8]);
                    let w = u64::from_be_bytes(w);
                    for s in 0..8u64 {
                        let v = (w >> (16 - s)) & MASK48;
                        if v == BLOCK_MAGIC || v == EOS_MAGIC {
                            let bit = (self.buf_off + i as u64) * 8 + s;
                            if bit >= from {
                                return Ok(Some((bit, v)));
                            }
                        }
                    }
                }
                i += 1;
            }
            if self.bytes_read().saturating_sub(from / 8) > (MAX_PIECE_BYTES + READ_CHUNK) as u64 {
                // Far too long for a block: let the caller report corrupt data.
                return Ok(None);
            }
            if self.eof {
                // Tail: fewer than 8 bytes left; check what fits.
                let total_bits = self.bytes_read() * 8;
                let start_bit = ((self.buf_off + i as u64) * 8).max(from);
                let mut bit = start_bit;
                while bit + 48 <= total_bits {
                    let v = read_bits(&self.buf, bit - self.buf_off * 8, 48);
                    if v == BLOCK_MAGIC || v == EOS_MAGIC {
                        return Ok(Some((bit, v)));
                    }
                    bit += 1;
                }
                return Ok(None);
            }
            self.read_more()?;
        }
    }

    /// Whether an end-of-stream magic at bit `q` is a real stream end: followed, after its
    /// CRC and padding, by the end of input or a header and a magic. Returns the byte after.
    fn real_stream_end(&mut self, q: u64) -> io::Result<Option<u64>> {
        let next = (q + 80).div_ceil(8);
        self.fill_to(next + 10)?;
        let avail = self.bytes_read();
        if next > avail {
            return Ok(None);
        }
        if next == avail && self.eof {
            return Ok(Some(next));
        }
        if self.header_at(next).is_some() {
            if let Some(m) = self.bits_at((next + 4) * 8, 48)? {
                if m == BLOCK_MAGIC || m == EOS_MAGIC {
                    return Ok(Some(next));
                }
            }
        }
        Ok(None)
    }

    fn header_at(&self, byte: u64) -> Option<u8> {
        let i = byte.checked_sub(self.buf_off)? as usize;
        let h = self.buf.get(i..i + 4)?;
        if &h[..3] == b"BZh" && (b'1'..=b'9').contains(&h[3]) {
            Some(h[3] - b'0')
        } else {
            None
        }
    }

    fn step(&mut self) -> Result<Option<Piece>, ScanError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Header { byte } => {
                    self.fill_to(byte + 10)?;
                    if self.eof && self.bytes_read() == byte {
                        self.state = State::Done;
                        if self.streams == 0 {
                            return Err(ScanError::Empty);
                        }
                        return Ok(None);
                    }
                    let Some(level) = self.header_at(byte) else {
                        self.state = State::Done;
                        if self.streams == 0 {
                            return Err(ScanError::NotBzip2(byte));
                        }
                        return Err(ScanError::TrailingGarbage(byte));
                    };
                    let first = (byte + 4) * 8;
                    match self.bits_at(first, 48)? {
                        Some(BLOCK_MAGIC) => {
                            self.discard_before(byte + 4);
                            self.rejected_eos = None;
                            self.state = State::InStream {
                                level,
                                piece_start: first,
                                search_from: first + 80,
                            };
                        }
                        Some(EOS_MAGIC) => {
                            // An empty stream.
                            if self.bits_at(first + 48, 32)?.is_none() {
                                self.state = State::Done;
                                return Err(ScanError::Truncated(self.bytes_read()));
                            }
                            self.streams += 1;
                            self.state = State::Header { byte: byte + 14 };
                        }
                        Some(_) => {
                            self.state = State::Done;
                            return Err(ScanError::Corrupt(
                                byte + 4,
                                "no block or end-of-stream magic after the stream header".into(),
                            ));
                        }
                        None => {
                            self.state = State::Done;
                            return Err(ScanError::Truncated(self.bytes_read()));
                        }
                    }
                }
                State::InStream {
                    level,
                    piece_start,
                    search_from,
                } => {
                    let found = self.find_magic(search_from)?;
                    let Some((q, kind)) = found else {
                        self.state = State::Done;
                        let end = self.bytes_read();
                        if (end - piece_start / 8) as usize > MAX_PIECE_BYTES {
                            return Err(ScanError::Corrupt(
                                piece_start / 8,
                                "no block boundary within 16 MiB".into(),
                            ));
                        }
                        return Err(match self.rejected_eos {
                            Some(b) if b < end => ScanError::TrailingGarbage(b),
                            _ => ScanError::Truncated(end),
                        });
                    };
                    if (q - piece_start) / 8 > MAX_PIECE_BYTES as u64 {
                        self.state = State::Done;
                        return Err(ScanError::Corrupt(
                            piece_start / 8,
                            "no block boundary within 16 MiB".into(),
                        ));
                    }
                    let piece = |s: &Self, stream_end| Piece {
                        level,
                        bits: BitBuf::extract(
                            &s.buf,
                            piece_start - s.buf_off * 8,
                            q - s.buf_off * 8,
                        ),
                        start_bit: piece_start,
                        end_bit: q,
                        stream_end,
                    };
                    if kind == BLOCK_MAGIC {
                        let p = piece(self, None);
                        self.discard_before(q / 8);
                        self.state = State::InStream {
                            level,
                            piece_start: q,
                            search_from: q + 80,
                        };
                        return Ok(Some(p));
                    }
                    match self.real_stream_end(q)? {
                        Some(next) => {
                            let Some(crc) = self.bits_at(q + 48, 32)? else {
                                self.state = State::Done;
                                return Err(ScanError::Truncated(self.bytes_read()));
                            };
                            let p = piece(self, Some(crc as u32));
                            self.streams += 1;
                            self.discard_before(next);
                            self.state = State::Header { byte: next };
                            return Ok(Some(p));
                        }
                        None => {
                            if self.rejected_eos.is_none() {
                                self.rejected_eos = Some((q + 80).div_ceil(8));
                            }
                            self.state = State::InStream {
                                level,
                                piece_start,
                                search_from: q + 1,
                            };
                        }
                    }
                }
            }
        }
    }
}

impl<R: Read> Iterator for Scanner<R> {
    type Item = Result<Piece, ScanError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.step().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitbuf_roundtrip() {
        let src = [0b1011_0011u8, 0b0101_1100, 0xFF, 0x00, 0xA5];
        for start in 0..16u64 {
            for end in start..40u64 {
                let b = BitBuf::extract(&src, start, end);
                assert_eq!(b.nbits, end - start);
                for k in 0..(end - start) {
                    assert_eq!(b.read(k, 1), Some(read_bits(&src, start + k, 1)));
                }
                // append onto an unaligned prefix keeps every bit
                let mut a = BitBuf::extract(&src, 0, 3);
                a.append(&b);
                assert_eq!(a.nbits, 3 + end - start);
                for k in 0..(end - start) {
                    assert_eq!(a.read(3 + k, 1), b.read(k, 1));
                }
            }
        }
    }

    #[test]
    fn prefilter_covers_all_shifts() {
        for s in 0..8u32 {
            for m in [BLOCK_MAGIC, EOS_MAGIC] {
                let mut b = BitBuf::default();
                b.put(0, s);
                b.put(m, 48);
                b.put(0, 16);
                assert!(PREFILTER[b.bytes[1] as usize]);
            }
        }
    }

    #[test]
    fn errors() {
        let e = Scanner::new(&b""[..]).next().unwrap().unwrap_err();
        assert!(matches!(e, ScanError::Empty));
        let e = Scanner::new(&b"hello world"[..])
            .next()
            .unwrap()
            .unwrap_err();
        assert!(matches!(e, ScanError::NotBzip2(0)));
        // header followed by an empty stream: valid, no pieces
        let mut empty = BitBuf {
            bytes: b"BZh9".to_vec(),
            nbits: 32,
        };
        empty.put(EOS_MAGIC, 48);
        empty.put(0, 32);
        let mut s = Scanner::new(&empty.bytes[..]);
        let n = s.next();
        assert!(n.is_none(), "{n:?}");
        assert_eq!(s.streams(), 1);
    }
}
