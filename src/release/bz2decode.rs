//! A fast decoder for one bzip2 block (as cut by [`super::bz2blocks`]): table-driven
//! Huffman decoding, move-to-front, inverse BWT and run-length decoding straight into
//! output segments, where long runs of one byte stay a count (never materialised) and
//! their CRC is computed in O(log n).
//!
//! It decodes exactly as libbzip2 does where it succeeds: the Huffman decode tables are
//! libbzip2's (limit/base/perm, simulated to build the lookup table), and every check of
//! libbzip2's block decoder is made. Anything it does not handle (randomised blocks, a
//! code libbzip2 would read from uninitialised memory) is an error, and the caller falls
//! back to libbzip2 (`bzip2` crate) for the authoritative result. The block CRC is always
//! checked, so output that passes is the block's content.

use super::bz2blocks::{BitBuf, BLOCK_MAGIC};

/// Output of one block: data, and runs of one repeated byte.
#[derive(Debug)]
pub enum Seg {
    Data(Vec<u8>),
    Fill(u8, u64),
}

/// A run of one byte at least this long becomes a [`Seg::Fill`].
const FILL_MIN: usize = 4096;
/// Data segments are cut at this size (no reallocation of huge buffers).
const DATA_CHUNK: usize = 1 << 20;
const MAX_GROUPS: usize = 6;
const MAX_ALPHA: usize = 258;
const MAX_SELECTORS: usize = 18002;
const MAX_CODE_LEN: usize = 23;
/// Lookup-table width for the Huffman decoder.
const FAST_BITS: u32 = 10;
const SLOW: u16 = u16::MAX;

/// bzip2's CRC-32 (polynomial 0x04c11db7, MSB first), slicing by 8.
struct CrcTables([[u32; 256]; 8]);

const fn crc_tables() -> CrcTables {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04c1_1db7
            } else {
                c << 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev << 8) ^ t[0][(prev >> 24) as usize];
            i += 1;
        }
        s += 1;
    }
    CrcTables(t)
}
static CRC: CrcTables = crc_tables();

/// Updates a (non-inverted) bzip2 CRC register with `data`.
pub fn crc_update(mut crc: u32, data: &[u8]) -> u32 {
    let t = &CRC.0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let a = crc ^ u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        crc = t[7][(a >> 24) as usize]
            ^ t[6][((a >> 16) & 0xff) as usize]
            ^ t[5][((a >> 8) & 0xff) as usize]
            ^ t[4][(a & 0xff) as usize]
            ^ t[3][c[4] as usize]
            ^ t[2][c[5] as usize]
            ^ t[1][c[6] as usize]
            ^ t[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc << 8) ^ t[0][((crc >> 24) as u8 ^ b) as usize];
    }
    crc
}

/// An affine map on CRC registers: `x -> lin(x) ^ c` (lin given by the images of bits).
#[derive(Clone, Copy)]
struct Affine {
    m: [u32; 32],
    c: u32,
}

impl Affine {
    fn apply(&self, x: u32) -> u32 {
        let mut r = self.c;
        let mut x = x;
        while x != 0 {
            let i = x.trailing_zeros();
            r ^= self.m[i as usize];
            x &= x - 1;
        }
        r
    }
    /// `self` after `first`.
    fn after(&self, first: &Affine) -> Affine {
        let mut m = [0u32; 32];
        for (o, &v) in m.iter_mut().zip(first.m.iter()) {
            *o = self.apply(v) ^ self.c;
        }
        Affine {
            m,
            c: self.apply(first.c),
        }
    }
}

/// CRC register after `n` more bytes all equal to `b`, in O(log n).
pub fn crc_repeat(crc: u32, b: u8, n: u64) -> u32 {
    if n < 64 {
        let mut c = crc;
        for _ in 0..n {
            c = (c << 8) ^ CRC.0[0][((c >> 24) as u8 ^ b) as usize];
        }
        return c;
    }
    let step = |x: u32| (x << 8) ^ CRC.0[0][((x >> 24) as u8 ^ b) as usize];
    let c0 = step(0);
    let mut one = Affine { m: [0; 32], c: c0 };
    for i in 0..32 {
        one.m[i] = step(1 << i) ^ c0;
    }
    let mut acc: Option<Affine> = None;
    let mut pow = one;
    let mut k = n;
    loop {
        if k & 1 == 1 {
            acc = Some(match acc {
                None => pow,
                Some(a) => pow.after(&a),
            });
        }
        k >>= 1;
        if k == 0 {
            break;
        }
        pow = pow.after(&pow);
    }
    acc.map_or(crc, |a| a.apply(crc))
}

/// MSB-first bit reader over a [`BitBuf`]; reads past the end give zeros and are
/// detected by [`Bits::consumed`].
struct Bits<'a> {
    data: &'a [u8],
    byte: usize,
    buf: u64,
    cnt: u32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits {
            data,
            byte: 0,
            buf: 0,
            cnt: 0,
        }
    }
    #[inline(always)]
    fn refill(&mut self) {
        if self.byte + 8 <= self.data.len() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&self.data[self.byte..self.byte + 8]);
            let w = u64::from_be_bytes(w);
            self.buf |= w >> self.cnt;
            self.byte += ((63 - self.cnt) >> 3) as usize;
            self.cnt |= 56;
        } else {
            while self.cnt <= 56 {
                let b = self.data.get(self.byte).copied().unwrap_or(0);
                self.byte += 1;
                self.buf |= u64::from(b) << (56 - self.cnt);
                self.cnt += 8;
            }
        }
    }
    /// Next `n` (1..=32) bits without consuming; call after `refill`.
    #[inline(always)]
    fn peek(&self, n: u32) -> u32 {
        (self.buf >> (64 - n)) as u32
    }
    #[inline(always)]
    fn skip(&mut self, n: u32) {
        self.buf <<= n;
        self.cnt -= n;
    }
    fn get(&mut self, n: u32) -> u32 {
        if self.cnt < n {
            self.refill();
        }
        let v = self.peek(n);
        self.skip(n);
        v
    }
    fn consumed(&self) -> u64 {
        self.byte as u64 * 8 - u64::from(self.cnt)
    }
}

/// One Huffman table as libbzip2 decodes it, plus a lookup table for short codes.
struct Table {
    limit: [i32; MAX_CODE_LEN],
    base: [i32; MAX_CODE_LEN],
    perm: [u16; MAX_ALPHA],
    /// Symbols with a code length (= alphaSize); perm beyond is never valid here.
    nperm: i32,
    min_len: u32,
    fast: Vec<u16>,
}

impl Table {
    /// libbzip2's hbCreateDecodeTables.
    fn new(len: &[u8]) -> Table {
        let min_len = u32::from(len.iter().copied().min().unwrap_or(1));
        let max_len = u32::from(len.iter().copied().max().unwrap_or(1));
        let mut t = Table {
            limit: [0; MAX_CODE_LEN],
            base: [0; MAX_CODE_LEN],
            perm: [0; MAX_ALPHA],
            nperm: 0,
            min_len,
            fast: vec![SLOW; 1 << FAST_BITS],
        };
        let mut pp = 0usize;
        for i in min_len..=max_len {
            for (j, &l) in len.iter().enumerate() {
                if u32::from(l) == i {
                    t.perm[pp] = j as u16;
                    pp += 1;
                }
            }
        }
        t.nperm = pp as i32;
        for &l in len {
            t.base[l as usize + 1] += 1;
        }
        for i in 1..MAX_CODE_LEN {
            t.base[i] += t.base[i - 1];
        }
        let mut vec = 0i32;
        for i in min_len as usize..=max_len as usize {
            vec += t.base[i + 1] - t.base[i];
            t.limit[i] = vec - 1;
            vec <<= 1;
        }
        for i in min_len as usize + 1..=max_len as usize {
            t.base[i] = ((t.limit[i - 1] + 1) << 1) - t.base[i];
        }
        // Lookup table: simulate the slow decode for every FAST_BITS-bit prefix.
        if min_len <= FAST_BITS {
            for p in 0..(1u32 << FAST_BITS) {
                let mut zn = min_len;
                while zn <= FAST_BITS {
                    let zvec = (p >> (FAST_BITS - zn)) as i32;
                    if zvec <= t.limit[zn as usize] {
                        let idx = zvec - t.base[zn as usize];
                        if (0..t.nperm).contains(&idx) {
                            t.fast[p as usize] = (t.perm[idx as usize] << 5) | zn as u16;
                        }
                        break;
                    }
                    zn += 1;
                }
            }
        }
        t
    }

    /// Decodes one symbol (the reader must hold at least 20 bits).
    #[inline(always)]
    fn decode(&self, bits: &mut Bits) -> Result<u16, &'static str> {
        let e = self.fast[bits.peek(FAST_BITS) as usize];
        if e != SLOW {
            bits.skip(u32::from(e & 31));
            return Ok(e >> 5);
        }
        let mut zn = self.min_len;
        loop {
            if zn > 20 {
                return Err("bad Huffman code");
            }
            let zvec = bits.peek(zn) as i32;
            if zvec <= self.limit[zn as usize] {
                let idx = zvec - self.base[zn as usize];
                if !(0..self.nperm).contains(&idx) {
                    return Err("bad Huffman code");
                }
                bits.skip(zn);
                return Ok(self.perm[idx as usize]);
            }
            zn += 1;
        }
    }
}

thread_local! {
    static TT: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Decodes the block in `bits` (from its block magic to the next magic) of a stream of
/// block-size `level`, checking its CRC. Errors mean "let libbzip2 decide".
pub fn decode_block(bits: &BitBuf, level: u8) -> Result<Vec<Seg>, &'static str> {
    TT.with(|tt| {
        let mut tt = tt.borrow_mut();
        decode_with(bits, level, &mut tt)
    })
}

fn decode_with(bits: &BitBuf, level: u8, tt: &mut Vec<u32>) -> Result<Vec<Seg>, &'static str> {
    let mut r = Bits::new(&bits.bytes);
    let magic = (u64::from(r.get(24)) << 24) | u64::from(r.get(24));
    if magic != BLOCK_MAGIC {
        return Err("no block magic");
    }
    let stored_crc = r.get(32);
    if r.get(1) != 0 {
        return Err("randomised block");
    }
    let nblock_max = 100_000 * usize::from(level);
    let orig_ptr = r.get(24) as usize;
    if orig_ptr >= 10 + nblock_max {
        return Err("bad origPtr");
    }
    let used16 = r.get(16);
    let mut seq_to_unseq = [0u8; 256];
    let mut n_in_use = 0usize;
    for i in 0..16 {
        if used16 & (0x8000 >> i) != 0 {
            let w = r.get(16);
            for j in 0..16 {
                if w & (0x8000 >> j) != 0 {
                    seq_to_unseq[n_in_use] = (i * 16 + j) as u8;
                    n_in_use += 1;
                }
            }
        }
    }
    if n_in_use == 0 {
        return Err("no symbols");
    }
    let alpha_size = n_in_use + 2;
    let n_groups = r.get(3) as usize;
    if !(2..=MAX_GROUPS).contains(&n_groups) {
        return Err("bad group count");
    }
    let n_selectors = r.get(15) as usize;
    if n_selectors < 1 {
        return Err("no selectors");
    }
    let mut selector_mtf = vec![0u8; n_selectors.min(MAX_SELECTORS)];
    for i in 0..n_selectors {
        let mut j = 0;
        while r.get(1) == 1 {
            j += 1;
            if j >= n_groups {
                return Err("bad selector");
            }
        }
        // (selectors past MAX_SELECTORS are read and ignored, as libbzip2 does)
        if let Some(slot) = selector_mtf.get_mut(i) {
            *slot = j as u8;
        }
        if r.consumed() > bits.nbits {
            return Err("truncated block");
        }
    }
    let mut pos: Vec<u8> = (0..n_groups as u8).collect();
    let selectors: Vec<u8> = selector_mtf
        .iter()
        .map(|&v| {
            let v = v as usize;
            let tmp = pos[v];
            pos.copy_within(0..v, 1);
            pos[0] = tmp;
            tmp
        })
        .collect();
    let mut tables = Vec::with_capacity(n_groups);
    let mut len = [0u8; MAX_ALPHA];
    for _ in 0..n_groups {
        let mut curr = r.get(5) as i32;
        for l in len.iter_mut().take(alpha_size) {
            loop {
                if !(1..=20).contains(&curr) {
                    return Err("bad code length");
                }
                if r.get(1) == 0 {
                    break;
                }
                if r.get(1) == 0 {
                    curr += 1;
                } else {
                    curr -= 1;
                }
            }
            *l = curr as u8;
        }
        tables.push(Table::new(&len[..alpha_size]));
    }

    // Huffman + MTF + run decoding into tt (low bytes).
    tt.clear();
    tt.reserve(nblock_max);
    let eob = (n_in_use + 1) as u16;
    let mut mtf: [u8; 256] = std::array::from_fn(|i| i as u8);
    let mut unzftab = [0u32; 256];
    let mut group_no = 0usize;
    let mut group_pos = 0u32;
    let mut table = &tables[0];
    let mut run: u32 = 0;
    let mut run_n: u32 = 1;
    let mut in_run = false;
    loop {
        if group_pos == 0 {
            if group_no >= selectors.len() {
                return Err("selectors exhausted");
            }
            table = &tables[selectors[group_no] as usize];
            group_no += 1;
            group_pos = 50;
            if r.consumed() > bits.nbits {
                return Err("truncated block");
            }
        }
        group_pos -= 1;
        if r.cnt < 20 {
            r.refill();
        }
        let sym = table.decode(&mut r)?;
        if sym <= 1 {
            if !in_run {
                in_run = true;
                run = 0;
                run_n = 1;
            }
            if run_n >= 2 * 1024 * 1024 {
                return Err("run too long");
            }
            run += (u32::from(sym) + 1) * run_n;
            run_n <<= 1;
            continue;
        }
        if in_run {
            in_run = false;
            let uc = seq_to_unseq[mtf[0] as usize];
            unzftab[uc as usize] += run;
            if tt.len() + run as usize > nblock_max {
                return Err("block too long");
            }
            tt.resize(tt.len() + run as usize, u32::from(uc));
        }
        if sym == eob {
            break;
        }
        if tt.len() >= nblock_max {
            return Err("block too long");
        }
        let nn = (sym - 1) as usize;
        let v = mtf[nn];
        mtf.copy_within(0..nn, 1);
        mtf[0] = v;
        let uc = seq_to_unseq[v as usize];
        unzftab[uc as usize] += 1;
        tt.push(u32::from(uc));
    }
    if r.consumed() != bits.nbits {
        return Err("block length mismatch");
    }
    let nblock = tt.len();
    if orig_ptr >= nblock {
        return Err("bad origPtr");
    }

    // Inverse BWT.
    let mut cftab = [0u32; 256];
    let mut sum = 0u32;
    for (c, &n) in cftab.iter_mut().zip(unzftab.iter()) {
        *c = sum;
        sum += n;
    }
    for i in 0..nblock {
        let b = (tt[i] & 0xff) as usize;
        let k = cftab[b] as usize;
        tt[k] |= (i as u32) << 8;
        cftab[b] += 1;
    }

    // Walk + run-length decoding + CRC.
    let mut out = Out::default();
    let mut t_pos = tt[orig_ptr] >> 8;
    let mut prev: i32 = -1;
    let mut same = 0u32;
    let mut left = nblock;
    while left > 0 {
        let e = tt[t_pos as usize];
        t_pos = e >> 8;
        let ch = e as u8;
        left -= 1;
        if same == 4 {
            out.count(ch, prev as u8);
            same = 0;
            prev = -1;
            continue;
        }
        if i32::from(ch) == prev {
            same += 1;
        } else {
            same = 1;
            prev = i32::from(ch);
        }
        out.buf.push(ch);
        if out.buf.len() >= DATA_CHUNK {
            out.flush_data();
        }
    }
    let (segs, crc) = out.finish();
    if crc != stored_crc {
        return Err("block CRC mismatch");
    }
    Ok(segs)
}

/// Run-length-decoded output being built: finished segments, a pending fill, data.
struct Out {
    segs: Vec<Seg>,
    crc: u32,
    /// A fill that comes before `buf`.
    fill: Option<(u8, u64)>,
    buf: Vec<u8>,
    /// Start in `buf` of the trailing run of `run_b` built by counts, if any.
    run_start: usize,
    run_b: u8,
    run_end: usize,
}

impl Default for Out {
    fn default() -> Self {
        Out {
            segs: Vec::new(),
            crc: u32::MAX,
            fill: None,
            buf: Vec::with_capacity(DATA_CHUNK + 512),
            run_start: 0,
            run_b: 0,
            run_end: usize::MAX,
        }
    }
}

impl Out {
    fn push_fill(&mut self) {
        if let Some((b, n)) = self.fill.take() {
            self.crc = crc_repeat(self.crc, b, n);
            self.segs.push(Seg::Fill(b, n));
        }
    }

    /// Moves `buf[..upto]` into a data segment (after any pending fill).
    fn flush_prefix(&mut self, upto: usize) {
        self.push_fill();
        if upto == 0 {
            return;
        }
        self.crc = crc_update(self.crc, &self.buf[..upto]);
        if upto == self.buf.len() {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(DATA_CHUNK + 512));
            self.segs.push(Seg::Data(full));
        } else {
            self.segs.push(Seg::Data(self.buf[..upto].to_vec()));
            self.buf.drain(..upto);
        }
        self.run_end = usize::MAX;
    }

    fn flush_data(&mut self) {
        let n = self.buf.len();
        self.flush_prefix(n);
    }

    /// A run-length count `k` after four literal bytes `b` (the last four of `buf`).
    #[inline]
    fn count(&mut self, k: u8, b: u8) {
        let len = self.buf.len();
        if let Some((fb, n)) = &mut self.fill {
            if *fb == b && len == 4 {
                *n += 4 + u64::from(k);
                self.buf.clear();
                return;
            }
        }
        let start = if self.run_end == len - 4 && self.run_b == b {
            self.run_start
        } else {
            len - 4
        };
        self.buf.resize(len + usize::from(k), b);
        let end = self.buf.len();
        if end - start >= FILL_MIN {
            self.flush_prefix(start);
            self.fill = Some((b, self.buf.len() as u64));
            self.buf.clear();
            self.run_end = usize::MAX;
        } else {
            self.run_start = start;
            self.run_b = b;
            self.run_end = end;
            if end >= DATA_CHUNK {
                self.flush_data();
            }
        }
    }

    fn finish(mut self) -> (Vec<Seg>, u32) {
        self.flush_data();
        (self.segs, !self.crc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc_bytes(data: &[u8]) -> u32 {
        let mut c = u32::MAX;
        for &b in data {
            c = (c << 8) ^ CRC.0[0][((c >> 24) as u8 ^ b) as usize];
        }
        !c
    }

    #[test]
    fn crc_slicing_and_repeat_match_bytewise() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for n in [0, 1, 7, 8, 9, 100, 1000] {
            assert_eq!(!crc_update(u32::MAX, &data[..n]), crc_bytes(&data[..n]));
        }
        for (b, n) in [
            (0u8, 0u64),
            (0, 1),
            (0, 63),
            (0, 64),
            (0xAB, 65),
            (0, 4096),
            (7, 100_003),
        ] {
            let v = vec![b; n as usize];
            let pre = crc_update(u32::MAX, b"xyz");
            assert_eq!(crc_repeat(pre, b, n), crc_update(pre, &v), "{b} {n}");
        }
    }
}
