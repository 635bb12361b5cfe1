//! A small, bounded reader (and one narrow writer) of btrfs metadata in an image file,
//! for OEM's rootless rebuild: it lists the filesystem tree exactly as btrfs stores it
//! (names, types, modes, owners, link counts, device numbers, xattrs, subvolumes) without
//! mounting, so the rebuild can see what `btrfs restore` would lose and check the rebuilt
//! filesystem against the plan. Its one write puts the root directory's mode, owner and
//! xattrs (OEM's `compression` property) into a freshly made filesystem, which
//! `mkfs.btrfs --rootdir` 6.2 cannot do; the leaf is rewritten with a correct checksum.
//!
//! It also reads one small regular file by path ([`read_file`]), following symlinks as the
//! host that mounts the filesystem would: bake and `sysext check` read the target's
//! `/usr/lib/os-release` this way instead of copying USR-A out for `btrfs restore`.
//!
//! Every traversal is bounded: tree depth, node count, item count, path depth, entries,
//! symlinks followed, bytes read and decompressed.

use crate::disk::image::Dev;
use std::collections::{BTreeMap, HashSet};

const SB_OFFSET: u64 = 64 * 1024;
const HEADER: usize = 101;
const ITEM: usize = 25;
const KEY_PTR: usize = 33;
const MAX_LEVEL: u8 = 8;
const MAX_NODES: usize = 1 << 16;
const MAX_DEPTH: usize = 64;
const MAX_ENTRIES: usize = 1 << 20;

pub const ROOT_DIR: u64 = 256;
const FS_TREE: u64 = 5;
const INODE_ITEM: u8 = 1;
const XATTR_ITEM: u8 = 24;
const DIR_ITEM: u8 = 84;
const DIR_INDEX: u8 = 96;
const EXTENT_DATA: u8 = 108;
const ROOT_ITEM: u8 = 132;
const CHUNK_ITEM: u8 = 228;

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("btrfs metadata: {0}")]
    Bad(String),
    /// Well-formed, but a case this reader does not decode (LZO, encryption, subvolumes).
    #[error("not readable without btrfs-progs: {0}")]
    Unsupported(String),
    /// The filesystem is sound but the path does not name a readable file.
    #[error("{0}")]
    Path(String),
}

fn bad<T>(what: impl Into<String>) -> Result<T, TreeError> {
    Err(TreeError::Bad(what.into()))
}

fn le64(b: &[u8], o: usize) -> Result<u64, TreeError> {
    b.get(o..o + 8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap_or([0; 8])))
        .ok_or_else(|| TreeError::Bad("short read".into()))
}
fn le32(b: &[u8], o: usize) -> Result<u32, TreeError> {
    b.get(o..o + 4)
        .map(|s| u32::from_le_bytes(s.try_into().unwrap_or([0; 4])))
        .ok_or_else(|| TreeError::Bad("short read".into()))
}
fn le16(b: &[u8], o: usize) -> Result<u16, TreeError> {
    b.get(o..o + 2)
        .map(|s| u16::from_le_bytes(s.try_into().unwrap_or([0; 2])))
        .ok_or_else(|| TreeError::Bad("short read".into()))
}

/// CRC-32C (Castagnoli), raw: no initial or final inversion (callers do it).
fn crc32c_raw(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// btrfs' name hash (key offset of dir and xattr items).
pub fn name_hash(name: &[u8]) -> u64 {
    u64::from(crc32c_raw(!1u32, name))
}

/// The crc32c a tree node (or the superblock) carries in its first 4 bytes, over
/// everything after its 32-byte checksum field (also used by the fuzz target to give
/// fuzzed nodes a valid checksum).
pub fn node_csum(node: &[u8]) -> u32 {
    !crc32c_raw(!0u32, node.get(32..).unwrap_or_default())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    objectid: u64,
    ty: u8,
    offset: u64,
}

fn key_at(b: &[u8], o: usize) -> Result<Key, TreeError> {
    Ok(Key {
        objectid: le64(b, o)?,
        ty: *b
            .get(o + 8)
            .ok_or_else(|| TreeError::Bad("short key".into()))?,
        offset: le64(b, o + 9)?,
    })
}

/// Logical-to-physical mapping of one chunk: every stripe's physical offset.
struct Chunk {
    logical: u64,
    len: u64,
    stripes: Vec<u64>,
}

/// An open btrfs image: superblock facts and the chunk map.
pub struct Image<'a> {
    file: &'a dyn Dev,
    base: u64,
    nodesize: usize,
    root_tree: u64,
    chunks: Vec<Chunk>,
    /// Bytes of `file` from `base` the filesystem may occupy (its partition).
    limit: u64,
}

fn parse_chunk(b: &[u8], o: usize, logical: u64) -> Result<(Chunk, usize), TreeError> {
    let len = le64(b, o)?;
    let n = usize::from(le16(b, o + 44)?);
    if n == 0 || n > 16 {
        return bad(format!("chunk at {logical} has {n} stripes"));
    }
    let stripes = (0..n)
        .map(|i| le64(b, o + 48 + i * 32 + 8))
        .collect::<Result<Vec<_>, _>>()?;
    let ty = le64(b, o + 24)?;
    // RAID0/10/5/6 stripe data across devices; OEM is single (or DUP copies)
    if ty & (1 << 3 | 1 << 6 | 1 << 7 | 1 << 8) != 0 {
        return bad("striped chunk profiles are not supported");
    }
    Ok((
        Chunk {
            logical,
            len,
            stripes,
        },
        48 + n * 32,
    ))
}

impl<'a> Image<'a> {
    /// Open the btrfs whose superblock is `base` bytes into `file`.
    pub fn open(file: &'a dyn Dev, base: u64) -> Result<Image<'a>, TreeError> {
        let mut sb = vec![0u8; 4096];
        file.pread(&mut sb, base + SB_OFFSET)?;
        if &sb[0x40..0x48] != b"_BHRfS_M" {
            return bad("no btrfs superblock");
        }
        if le16(&sb, 0xC4)? != 0 {
            return bad("checksum type other than crc32c");
        }
        if le32(&sb, 0)? != node_csum(&sb) {
            return bad("superblock checksum mismatch");
        }
        let nodesize = le32(&sb, 0x94)? as usize;
        if !(4096..=65536).contains(&nodesize) || !nodesize.is_power_of_two() {
            return bad(format!("node size {nodesize}"));
        }
        let mut img = Image {
            file,
            base,
            nodesize,
            root_tree: le64(&sb, 0x50)?,
            chunks: Vec::new(),
            limit: u64::MAX,
        };
        let sys_len = (le32(&sb, 0xA0)? as usize).min(2048);
        let arr = &sb[0x32B..0x32B + sys_len];
        let mut o = 0;
        while o + 17 <= arr.len() {
            let k = key_at(arr, o)?;
            let (c, used) = parse_chunk(arr, o + 17, k.offset)?;
            img.chunks.push(c);
            o += 17 + used;
        }
        let chunk_root = le64(&sb, 0x58)?;
        let mut found = Vec::new();
        img.walk(chunk_root, &mut |k, data| {
            if k.ty == CHUNK_ITEM {
                found.push(parse_chunk(data, 0, k.offset)?.0);
            }
            Ok(())
        })?;
        img.chunks.extend(found);
        Ok(img)
    }

    fn physical(&self, logical: u64) -> Result<Vec<u64>, TreeError> {
        let c = self
            .chunks
            .iter()
            .find(|c| logical >= c.logical && logical - c.logical < c.len)
            .ok_or_else(|| TreeError::Bad(format!("no chunk maps logical {logical}")))?;
        Ok(c.stripes
            .iter()
            .map(|s| s + (logical - c.logical))
            .collect())
    }

    fn read_node(&self, logical: u64) -> Result<Vec<u8>, TreeError> {
        let phys = self.physical(logical)?[0];
        self.inside(phys, self.nodesize as u64)?;
        let mut b = vec![0u8; self.nodesize];
        self.file.pread(&mut b, self.base + phys)?;
        if le32(&b, 0)? != node_csum(&b) {
            return bad(format!("checksum mismatch in node {logical}"));
        }
        if le64(&b, 48)? != logical {
            return bad(format!("node {logical} claims another address"));
        }
        Ok(b)
    }

    fn write_node(&self, logical: u64, node: &mut [u8]) -> Result<(), TreeError> {
        let c = node_csum(node);
        node[..32].fill(0);
        node[..4].copy_from_slice(&c.to_le_bytes());
        for phys in self.physical(logical)? {
            self.file.pwrite(node, self.base + phys)?;
        }
        Ok(())
    }

    /// Leaf items (key, data) of node `b`.
    fn items<'b>(&self, b: &'b [u8]) -> Result<Vec<(Key, &'b [u8])>, TreeError> {
        let n = le32(b, 96)? as usize;
        if HEADER + n * ITEM > b.len() {
            return bad("leaf item count overflows the node");
        }
        (0..n)
            .map(|i| {
                let o = HEADER + i * ITEM;
                let (off, size) = (le32(b, o + 17)? as usize, le32(b, o + 21)? as usize);
                let data = b
                    .get(HEADER + off..HEADER + off + size)
                    .ok_or_else(|| TreeError::Bad("item data outside the leaf".into()))?;
                Ok((key_at(b, o)?, data))
            })
            .collect()
    }

    /// Child pointers of internal node `b`.
    fn ptrs(&self, b: &[u8]) -> Result<Vec<(Key, u64)>, TreeError> {
        let n = le32(b, 96)? as usize;
        if HEADER + n * KEY_PTR > b.len() {
            return bad("node pointer count overflows the node");
        }
        (0..n)
            .map(|i| {
                Ok((
                    key_at(b, HEADER + i * KEY_PTR)?,
                    le64(b, HEADER + i * KEY_PTR + 17)?,
                ))
            })
            .collect()
    }

    /// Call `f` on every leaf (address, bytes) of the tree rooted at `root`, in key order.
    fn leaves(
        &self,
        root: u64,
        f: &mut dyn FnMut(u64, Vec<u8>) -> Result<(), TreeError>,
    ) -> Result<(), TreeError> {
        self.descend(root, &|_, _| true, f)
    }

    /// Depth-first, in key order, over the tree rooted at `root`: of an internal node's
    /// pointers, those `want(pointers, i)` keeps are followed; `leaf` gets every leaf
    /// reached. Loops, oversized trees and levels that do not descend are refused.
    fn descend(
        &self,
        root: u64,
        want: &PtrFilter<'_>,
        leaf: &mut dyn FnMut(u64, Vec<u8>) -> Result<(), TreeError>,
    ) -> Result<(), TreeError> {
        let mut seen = HashSet::new();
        let mut stack = vec![(root, MAX_LEVEL + 1)];
        while let Some((at, max)) = stack.pop() {
            if !seen.insert(at) || seen.len() > MAX_NODES {
                return bad(format!("tree loops or is too large at node {at}"));
            }
            let b = self.read_node(at)?;
            let level = b[100];
            if level >= max {
                return bad(format!("node {at} has level {level} under a lower node"));
            }
            if level == 0 {
                leaf(at, b)?;
                continue;
            }
            let ptrs = self.ptrs(&b)?;
            for i in (0..ptrs.len()).rev() {
                if want(&ptrs, i) {
                    stack.push((ptrs[i].1, level));
                }
            }
        }
        Ok(())
    }

    /// Call `f` on every item of the tree rooted at `root`, in key order.
    fn walk(&self, root: u64, f: &mut ItemFn<'_>) -> Result<(), TreeError> {
        self.leaves(root, &mut |_, b| {
            for (k, d) in self.items(&b)? {
                f(k, d)?;
            }
            Ok(())
        })
    }

    /// The bytenr of subvolume tree `id`, and ids of all subvolumes besides the top one.
    fn roots(&self) -> Result<(u64, Vec<u64>), TreeError> {
        let (mut fs, mut subs) = (None, Vec::new());
        self.walk(self.root_tree, &mut |k, d| {
            if k.ty == ROOT_ITEM && k.objectid == FS_TREE {
                fs = Some(le64(d, 176)?);
            } else if k.ty == ROOT_ITEM && (256..u64::MAX - 255).contains(&k.objectid) {
                subs.push(k.objectid);
            }
            Ok(())
        })?;
        Ok((
            fs.ok_or_else(|| TreeError::Bad("no FS_TREE root item".into()))?,
            subs,
        ))
    }

    /// Call `f` on the items of the tree rooted at `root` whose keys lie in `lo..=hi`,
    /// in key order, reading only the nodes whose key span meets that range.
    fn range(&self, root: u64, lo: Key, hi: Key, f: &mut ItemFn<'_>) -> Result<(), TreeError> {
        let want = |ptrs: &[(Key, u64)], i: usize| {
            let below_next = ptrs.get(i + 1).is_none_or(|(next, _)| *next > lo);
            ptrs[i].0 <= hi && below_next
        };
        self.descend(root, &want, &mut |_, b| {
            for (k, d) in self.items(&b)? {
                if k >= lo && k <= hi {
                    f(k, d)?;
                }
            }
            Ok(())
        })
    }

    /// Refuse a read of `len` bytes at physical `phys` past the filesystem's partition.
    fn inside(&self, phys: u64, len: u64) -> Result<(), TreeError> {
        if phys.checked_add(len).is_none_or(|end| end > self.limit) {
            return bad(format!(
                "a block at {phys} lies past the end of the partition"
            ));
        }
        Ok(())
    }

    /// Read `buf.len()` bytes of file data at logical address `logical` (one chunk).
    fn read_data(&self, logical: u64, buf: &mut [u8]) -> Result<(), TreeError> {
        let len = buf.len() as u64;
        let c = self
            .chunks
            .iter()
            .find(|c| logical >= c.logical && logical - c.logical < c.len)
            .ok_or_else(|| TreeError::Bad(format!("no chunk maps data at {logical}")))?;
        if len > c.len - (logical - c.logical) {
            return bad(format!("data extent at {logical} runs past its chunk"));
        }
        let phys = c.stripes[0] + (logical - c.logical);
        self.inside(phys, len)?;
        self.file.pread(buf, self.base + phys)?;
        Ok(())
    }
}

/// A path's inode kind as far as [`read_file`] cares.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Dir,
    File,
    Link,
    Other,
}

/// Largest decompressed btrfs extent (BTRFS_MAX_UNCOMPRESSED) and compressed one.
const MAX_EXTENT: u64 = 128 * 1024;
/// Symlinks followed in one resolution (as the kernel's MAXSYMLINKS).
const MAX_LINKS: usize = 40;
/// Path components handled in one resolution, symlink targets included.
const MAX_COMPONENTS: usize = 4096;
/// A symlink target longer than this is refused (PATH_MAX).
const LINK_CAP: u64 = 4096;

fn decompress(kind: u8, raw: &[u8], ram: u64) -> Result<Vec<u8>, TreeError> {
    use std::io::Read;
    if ram > MAX_EXTENT {
        return bad(format!("compressed extent claims {ram} bytes"));
    }
    let mut out = Vec::new();
    let r = match kind {
        1 => flate2::read::ZlibDecoder::new(raw)
            .take(ram)
            .read_to_end(&mut out),
        3 => zstd::stream::read::Decoder::with_buffer(raw)
            .map(|d| d.single_frame())
            .and_then(|d| d.take(ram).read_to_end(&mut out)),
        2 => return Err(TreeError::Unsupported("LZO-compressed file data".into())),
        n => return bad(format!("unknown compression type {n}")),
    };
    r.map_err(|e| TreeError::Bad(format!("compressed file data does not decode: {e}")))?;
    Ok(out)
}

/// An open filesystem tree for path lookups.
struct Fs<'i, 'a> {
    img: &'i Image<'a>,
    root: u64,
}

impl Fs<'_, '_> {
    fn key(objectid: u64, ty: u8, offset: u64) -> Key {
        Key {
            objectid,
            ty,
            offset,
        }
    }

    /// Kind and size of inode `ino`.
    fn inode(&self, ino: u64) -> Result<(Kind, u64), TreeError> {
        let k = Self::key(ino, INODE_ITEM, 0);
        let mut found = None;
        self.img.range(self.root, k, k, &mut |_, d| {
            found = Some((le32(d, 52)?, le64(d, 16)?));
            Ok(())
        })?;
        let (mode, size) =
            found.ok_or_else(|| TreeError::Bad(format!("no inode item for inode {ino}")))?;
        let kind = match mode & 0o170000 {
            0o040000 => Kind::Dir,
            0o100000 => Kind::File,
            0o120000 => Kind::Link,
            _ => Kind::Other,
        };
        Ok((kind, size))
    }

    /// The inode named `name` in directory `dir`, if any.
    fn lookup(&self, dir: u64, name: &[u8]) -> Result<Option<u64>, TreeError> {
        let k = Self::key(dir, DIR_ITEM, name_hash(name));
        let mut found = None;
        self.img.range(self.root, k, k, &mut |_, d| {
            let mut o = 0;
            while o + 30 <= d.len() {
                let (dlen, nlen) = (usize::from(le16(d, o + 25)?), usize::from(le16(d, o + 27)?));
                let n = d
                    .get(o + 30..o + 30 + nlen)
                    .ok_or_else(|| TreeError::Bad("dir item name".into()))?;
                if n == name {
                    let loc = key_at(d, o)?;
                    if loc.ty == ROOT_ITEM {
                        return Err(TreeError::Unsupported(format!(
                            "{:?} is a subvolume",
                            String::from_utf8_lossy(name)
                        )));
                    }
                    found = Some(loc.objectid);
                }
                o += 30 + nlen + dlen;
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// The first `size` bytes of inode `ino` (refused above `cap`): inline and regular
    /// extents, zlib/zstd-compressed or not; holes and preallocated ranges read as zeros.
    fn data(&self, ino: u64, size: u64, cap: u64) -> Result<Vec<u8>, TreeError> {
        if size > cap {
            return Err(TreeError::Path(format!(
                "is {size} bytes, more than the {cap} read"
            )));
        }
        let mut buf = vec![0u8; size as usize];
        let (lo, hi) = (
            Self::key(ino, EXTENT_DATA, 0),
            Self::key(ino, EXTENT_DATA, size.saturating_sub(1)),
        );
        if size == 0 {
            return Ok(buf);
        }
        self.img.range(self.root, lo, hi, &mut |k, d| {
            let start = k.offset as usize; // < size <= cap
            let (ram, comp, ty) = (le64(d, 8)?, d.get(16).copied(), d.get(20).copied());
            if d.get(17) != Some(&0) || le16(d, 18)? != 0 {
                return Err(TreeError::Unsupported(
                    "encrypted or encoded file data".into(),
                ));
            }
            let comp = comp.ok_or_else(|| TreeError::Bad("short extent item".into()))?;
            let bytes = match ty {
                Some(0) => {
                    let raw = &d[21..];
                    if comp == 0 {
                        raw.to_vec()
                    } else {
                        // an inline extent's ram_bytes is its exact length (a regular
                        // one's is rounded to the sector; its range is checked below)
                        let out = decompress(comp, raw, ram)?;
                        if out.len() as u64 != ram {
                            return bad(format!(
                                "inline data decodes to {} bytes, not the {ram} its item claims",
                                out.len()
                            ));
                        }
                        out
                    }
                }
                Some(1) | Some(2) => {
                    let (bytenr, disk_len) = (le64(d, 21)?, le64(d, 29)?);
                    let (off, num) = (le64(d, 37)?, le64(d, 45)?);
                    let want = num.min(size - k.offset) as usize;
                    if ty == Some(2) || bytenr == 0 || want == 0 {
                        return Ok(()); // preallocated or a hole: zeros
                    }
                    if comp == 0 {
                        let at = bytenr
                            .checked_add(off)
                            .ok_or_else(|| TreeError::Bad("extent offset overflows".into()))?;
                        self.img.read_data(at, &mut buf[start..start + want])?;
                        return Ok(());
                    }
                    if disk_len > MAX_EXTENT {
                        return bad(format!("compressed extent of {disk_len} bytes"));
                    }
                    let mut raw = vec![0u8; disk_len as usize];
                    self.img.read_data(bytenr, &mut raw)?;
                    let all = decompress(comp, &raw, ram)?;
                    let off = usize::try_from(off).unwrap_or(usize::MAX);
                    all.get(off..off.saturating_add(want))
                        .ok_or_else(|| {
                            TreeError::Bad("compressed extent shorter than its file range".into())
                        })?
                        .to_vec()
                }
                _ => return bad(format!("unknown extent type {ty:?}")),
            };
            let n = bytes.len().min(buf.len() - start);
            buf[start..start + n].copy_from_slice(&bytes[..n]);
            Ok(())
        })?;
        Ok(buf)
    }
}

/// The content of regular file `path` (absolute, as the host sees it) of the btrfs in
/// the `len` bytes at `base` in `file` (its partition; nothing outside is read), which the host mounts at `mount` (e.g. `/usr`). Symlinks are
/// followed as the host's kernel would, absolute ones from the host's root; a path
/// that leaves `mount` is refused. Files larger than `cap` bytes are refused.
/// [`TreeError::Unsupported`] marks data this reader cannot decode (LZO, encryption),
/// where `btrfs restore` may still succeed.
pub fn read_file(
    file: &dyn Dev,
    base: u64,
    len: u64,
    mount: &str,
    path: &str,
    cap: u64,
) -> Result<Vec<u8>, TreeError> {
    let mut img = Image::open(file, base)?;
    img.limit = len;
    let (root, _) = img.roots()?;
    let fs = Fs { img: &img, root };
    let split = |p: &[u8]| -> Vec<Vec<u8>> {
        p.split(|&c| c == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .map(<[u8]>::to_vec)
            .collect()
    };
    let mount = split(mount.as_bytes());
    let mut todo: Vec<Vec<u8>> = split(path.as_bytes()).into_iter().rev().collect();
    // the resolved host path so far: each component with its inode once inside `mount`
    let mut at: Vec<(Vec<u8>, Option<u64>)> = Vec::new();
    let (mut links, mut steps) = (0usize, 0usize);
    let shown = |at: &[(Vec<u8>, Option<u64>)], c: &[u8]| {
        let mut s: String = at
            .iter()
            .map(|(n, _)| format!("/{}", String::from_utf8_lossy(n)))
            .collect();
        s.push('/');
        s.push_str(&String::from_utf8_lossy(c));
        s
    };
    let mut last = None;
    while let Some(c) = todo.pop() {
        steps += 1;
        if steps > MAX_COMPONENTS {
            return Err(TreeError::Path(format!("{path}: too many path components")));
        }
        if c == b".." {
            at.pop();
            last = None;
            continue;
        }
        if at.len() < mount.len() {
            if at.iter().map(|(n, _)| n).ne(mount[..at.len()].iter()) || c != mount[at.len()] {
                return Err(TreeError::Path(format!(
                    "{path} leads to {}, outside the filesystem (mounted at /{})",
                    shown(&at, &c),
                    String::from_utf8_lossy(&mount.join(&b'/'))
                )));
            }
            let ino = (at.len() + 1 == mount.len()).then_some(ROOT_DIR);
            at.push((c, ino));
            last = ino.map(|i| (i, Kind::Dir, 0));
            continue;
        }
        let dir = match at.last() {
            Some((_, Some(d))) => *d,
            None if mount.is_empty() => ROOT_DIR,
            _ => return bad("path resolution lost its directory"),
        };
        if fs.inode(dir)?.0 != Kind::Dir {
            return Err(TreeError::Path(format!(
                "{path}: {} is not a directory",
                shown(&at[..at.len() - 1], &at[at.len() - 1].0)
            )));
        }
        let ino = fs
            .lookup(dir, &c)?
            .ok_or_else(|| TreeError::Path(format!("{path}: {} does not exist", shown(&at, &c))))?;
        let (kind, size) = fs.inode(ino)?;
        if kind == Kind::Link {
            links += 1;
            if links > MAX_LINKS {
                return Err(TreeError::Path(format!(
                    "{path}: too many levels of symlinks"
                )));
            }
            let target = fs.data(ino, size, LINK_CAP)?;
            if target.is_empty() || target.contains(&0) {
                return bad(format!("symlink {} has an invalid target", shown(&at, &c)));
            }
            if target[0] == b'/' {
                at.clear();
            }
            todo.extend(split(&target).into_iter().rev());
            last = None;
            continue;
        }
        at.push((c, Some(ino)));
        last = Some((ino, kind, size));
    }
    match last {
        Some((ino, Kind::File, size)) => fs.data(ino, size, cap).map_err(|e| match e {
            TreeError::Path(m) => TreeError::Path(format!("{path} {m}")),
            e => e,
        }),
        Some((_, Kind::Dir, _)) | None if at.len() >= mount.len() => {
            Err(TreeError::Path(format!("{path} is a directory")))
        }
        Some(_) => Err(TreeError::Path(format!("{path} is not a regular file"))),
        None => Err(TreeError::Path(format!(
            "{path} resolves outside the filesystem"
        ))),
    }
}

/// One inode as btrfs stores it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Inode {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub rdev: u64,
    pub size: u64,
    /// Inode flags (BTRFS_INODE_*: compress, nocompress, immutable, ...).
    #[serde(default)]
    pub flags: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// The whole tree: each path (relative, "" for the root) with its inode number and
/// inode, plus what cannot be carried by a rebuild (subvolumes).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Listing {
    pub paths: BTreeMap<String, u64>,
    pub inodes: BTreeMap<u64, Inode>,
    pub subvolumes: Vec<String>,
}

fn xattrs_of(data: &[u8], into: &mut BTreeMap<String, Vec<u8>>) -> Result<(), TreeError> {
    let mut o = 0;
    while o + 30 <= data.len() {
        let (dlen, nlen) = (
            usize::from(le16(data, o + 25)?),
            usize::from(le16(data, o + 27)?),
        );
        let name = data
            .get(o + 30..o + 30 + nlen)
            .ok_or_else(|| TreeError::Bad("xattr name".into()))?;
        let val = data
            .get(o + 30 + nlen..o + 30 + nlen + dlen)
            .ok_or_else(|| TreeError::Bad("xattr value".into()))?;
        into.insert(String::from_utf8_lossy(name).into_owned(), val.to_vec());
        o += 30 + nlen + dlen;
    }
    Ok(())
}

/// Read the listing of the btrfs at `base` in `file`.
pub fn list(file: &dyn Dev, base: u64) -> Result<Listing, TreeError> {
    let img = Image::open(file, base)?;
    let (fs_root, subs) = img.roots()?;
    let mut inodes: BTreeMap<u64, Inode> = BTreeMap::new();
    let mut children: BTreeMap<u64, Vec<(String, u64, u8)>> = BTreeMap::new();
    let mut count = 0usize;
    img.walk(fs_root, &mut |k, d| {
        count += 1;
        if count > MAX_ENTRIES {
            return bad("too many items in the filesystem tree");
        }
        match k.ty {
            INODE_ITEM => {
                let i = inodes.entry(k.objectid).or_default();
                i.size = le64(d, 16)?;
                i.nlink = le32(d, 40)?;
                i.uid = le32(d, 44)?;
                i.gid = le32(d, 48)?;
                i.mode = le32(d, 52)?;
                i.rdev = le64(d, 56)?;
                i.flags = le64(d, 64)?;
            }
            XATTR_ITEM => xattrs_of(d, &mut inodes.entry(k.objectid).or_default().xattrs)?,
            DIR_INDEX => {
                let nlen = usize::from(le16(d, 27)?);
                let name = d
                    .get(30..30 + nlen)
                    .ok_or_else(|| TreeError::Bad("dir entry name".into()))?;
                let loc = key_at(d, 0)?;
                let name = match std::str::from_utf8(name) {
                    Ok(n) if !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\0']) => {
                        n
                    }
                    _ => {
                        return bad(format!(
                            "invalid file name {:?}",
                            String::from_utf8_lossy(name)
                        ))
                    }
                };
                children.entry(k.objectid).or_default().push((
                    name.to_owned(),
                    loc.objectid,
                    loc.ty,
                ));
            }
            _ => {}
        }
        Ok(())
    })?;
    let mut l = Listing {
        inodes,
        ..Default::default()
    };
    l.paths.insert(String::new(), ROOT_DIR);
    let mut stack = vec![(ROOT_DIR, String::new(), 0usize)];
    let mut visited = HashSet::new();
    while let Some((dir, path, depth)) = stack.pop() {
        if depth > MAX_DEPTH || !visited.insert(dir) {
            return bad(format!("directory {path:?} nests too deep or loops"));
        }
        for (name, ino, ty) in children.remove(&dir).unwrap_or_default() {
            let p = if path.is_empty() {
                name
            } else {
                format!("{path}/{name}")
            };
            if ty == ROOT_ITEM {
                l.subvolumes.push(p);
                continue;
            }
            if l.inodes
                .get(&ino)
                .is_some_and(|i| i.mode & 0o170000 == 0o040000)
            {
                stack.push((ino, p.clone(), depth + 1));
            }
            l.paths.insert(p, ino);
        }
    }
    if l.subvolumes.is_empty() && !subs.is_empty() {
        l.subvolumes.push(format!("subvolume id {}", subs[0]));
    }
    Ok(l)
}

/// Set the root directory's mode, owner and xattrs in the btrfs at `base` (a fresh
/// `mkfs.btrfs` result whose root has no xattrs), rewriting the leaf that holds them
/// (and, when that leaf is full, moving its last items into its right sibling).
pub fn set_root(file: &dyn Dev, base: u64, want: &Inode) -> Result<(), TreeError> {
    let img = Image::open(file, base)?;
    let (fs_root, _) = img.roots()?;
    // descend to the leaf holding (256, INODE_ITEM), remembering the last parent
    let target = Key {
        objectid: ROOT_DIR,
        ty: INODE_ITEM,
        offset: 0,
    };
    let mut at = fs_root;
    let mut parent: Option<(u64, Vec<u8>, usize)> = None;
    // the first key right of the leaf: every key written must stay below it
    let mut upper: Option<Key> = None;
    for _ in 0..=MAX_LEVEL {
        let b = img.read_node(at)?;
        if b[100] == 0 {
            return rewrite_leaf(&img, at, b, want, upper, parent);
        }
        let ptrs = img.ptrs(&b)?;
        let i = ptrs.iter().take_while(|(k, _)| *k <= target).count().max(1) - 1;
        if let Some((k, _)) = ptrs.get(i + 1) {
            upper = Some(upper.map_or(*k, |u| u.min(*k)));
        }
        let next = ptrs
            .get(i)
            .map(|p| p.1)
            .ok_or_else(|| TreeError::Bad("empty node".into()))?;
        parent = Some((at, b, i));
        at = next;
    }
    bad("filesystem tree too deep")
}

/// Set the inode flags of the btrfs at `base`: `flags` maps inode numbers to flags;
/// every leaf holding an inode whose flags change is rewritten with a new checksum.
pub fn set_flags(file: &dyn Dev, base: u64, flags: &BTreeMap<u64, u64>) -> Result<(), TreeError> {
    let img = Image::open(file, base)?;
    let (fs_root, _) = img.roots()?;
    let mut changed = Vec::new();
    img.leaves(fs_root, &mut |at, mut b| {
        let mut dirty = false;
        let n = le32(&b, 96)? as usize;
        for i in 0..n.min((b.len() - HEADER) / ITEM) {
            let o = HEADER + i * ITEM;
            let k = key_at(&b, o)?;
            let Some(want) = flags.get(&k.objectid).filter(|_| k.ty == INODE_ITEM) else {
                continue;
            };
            let at_flags = HEADER + le32(&b, o + 17)? as usize + 64;
            if at_flags + 8 > b.len() || le32(&b, o + 21)? < 72 {
                return bad("short inode item");
            }
            if le64(&b, at_flags)? != *want {
                b[at_flags..at_flags + 8].copy_from_slice(&want.to_le_bytes());
                dirty = true;
            }
        }
        if dirty {
            changed.push((at, b));
        }
        Ok(())
    })?;
    for (at, mut b) in changed {
        img.write_node(at, &mut b)?;
    }
    Ok(())
}

type Items = Vec<(Key, Vec<u8>)>;

/// A visitor of one tree item (key, item data).
type ItemFn<'f> = dyn FnMut(Key, &[u8]) -> Result<(), TreeError> + 'f;
/// Which pointer (by index) of an internal node's pointers to follow.
type PtrFilter<'f> = dyn Fn(&[(Key, u64)], usize) -> bool + 'f;

fn fits(node: &[u8], items: &[(Key, Vec<u8>)]) -> bool {
    HEADER + items.iter().map(|(_, d)| ITEM + d.len()).sum::<usize>() <= node.len()
}

/// Lay `items` out in leaf `b`, packed from the end as btrfs does.
fn pack(b: &mut [u8], items: &[(Key, Vec<u8>)]) {
    b[HEADER..].fill(0);
    let mut end = b.len() - HEADER;
    for (i, (k, d)) in items.iter().enumerate() {
        end -= d.len();
        let o = HEADER + i * ITEM;
        b[o..o + 8].copy_from_slice(&k.objectid.to_le_bytes());
        b[o + 8] = k.ty;
        b[o + 9..o + 17].copy_from_slice(&k.offset.to_le_bytes());
        b[o + 17..o + 21].copy_from_slice(&(end as u32).to_le_bytes());
        b[o + 21..o + 25].copy_from_slice(&(d.len() as u32).to_le_bytes());
        b[HEADER + end..HEADER + end + d.len()].copy_from_slice(d);
    }
    b[96..100].copy_from_slice(&(items.len() as u32).to_le_bytes());
}

fn root_items(items: &mut Items, want: &Inode) -> Result<(), TreeError> {
    let pos = items
        .iter()
        .position(|(k, _)| k.objectid == ROOT_DIR && k.ty == INODE_ITEM)
        .ok_or_else(|| TreeError::Bad("root inode not in its leaf".into()))?;
    if items
        .iter()
        .any(|(k, _)| k.objectid == ROOT_DIR && k.ty == XATTR_ITEM)
    {
        return bad("the new root directory already has xattrs");
    }
    let inode = &mut items[pos].1;
    inode[44..48].copy_from_slice(&want.uid.to_le_bytes());
    inode[48..52].copy_from_slice(&want.gid.to_le_bytes());
    inode[52..56].copy_from_slice(&want.mode.to_le_bytes());
    let transid = le64(inode, 8)?;
    let mut by_hash: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for (name, val) in &want.xattrs {
        let e = by_hash.entry(name_hash(name.as_bytes())).or_default();
        e.extend_from_slice(&[0u8; 17]); // location key: zero for xattrs
        e.extend_from_slice(&transid.to_le_bytes());
        e.extend_from_slice(
            &u16::try_from(val.len())
                .map_err(|_| TreeError::Bad("xattr too large".into()))?
                .to_le_bytes(),
        );
        e.extend_from_slice(
            &u16::try_from(name.len())
                .map_err(|_| TreeError::Bad("xattr name too long".into()))?
                .to_le_bytes(),
        );
        e.push(8); // BTRFS_FT_XATTR
        e.extend_from_slice(name.as_bytes());
        e.extend_from_slice(val);
    }
    for (hash, data) in by_hash {
        items.push((
            Key {
                objectid: ROOT_DIR,
                ty: XATTR_ITEM,
                offset: hash,
            },
            data,
        ));
    }
    items.sort_by_key(|(k, _)| *k);
    Ok(())
}

fn rewrite_leaf(
    img: &Image,
    at: u64,
    mut b: Vec<u8>,
    want: &Inode,
    upper: Option<Key>,
    parent: Option<(u64, Vec<u8>, usize)>,
) -> Result<(), TreeError> {
    let mut items: Items = img
        .items(&b)?
        .into_iter()
        .map(|(k, d)| (k, d.to_vec()))
        .collect();
    root_items(&mut items, want)?;
    if upper.is_some_and(|u| items.last().is_some_and(|(k, _)| *k >= u)) {
        return bad("the root directory's xattrs belong in another leaf");
    }
    if fits(&b, &items) {
        pack(&mut b, &items);
        return img.write_node(at, &mut b);
    }
    // full: move the leaf's last items to the front of its right sibling, whose key in
    // the (same) parent becomes the first moved key
    let full = || TreeError::Bad("no room beside the root directory in its leaf".into());
    let (pat, mut pb, i) = parent.ok_or_else(full)?;
    let ptrs = img.ptrs(&pb)?;
    let sib_at = ptrs.get(i + 1).map(|p| p.1).ok_or_else(full)?;
    let mut sb = img.read_node(sib_at)?;
    let mut sib: Items = img
        .items(&sb)?
        .into_iter()
        .map(|(k, d)| (k, d.to_vec()))
        .collect();
    let root_last = items
        .iter()
        .rposition(|(k, _)| k.objectid == ROOT_DIR && k.ty <= XATTR_ITEM)
        .unwrap_or(0);
    while !fits(&b, &items) {
        if items.len() <= root_last + 1 {
            return Err(full());
        }
        let moved = items.pop().ok_or_else(full)?;
        sib.insert(0, moved);
    }
    if !fits(&sb, &sib) {
        return Err(full());
    }
    pack(&mut b, &items);
    pack(&mut sb, &sib);
    let first = sib[0].0;
    let o = HEADER + (i + 1) * KEY_PTR;
    pb[o..o + 8].copy_from_slice(&first.objectid.to_le_bytes());
    pb[o + 8] = first.ty;
    pb[o + 9..o + 17].copy_from_slice(&first.offset.to_le_bytes());
    img.write_node(at, &mut b)?;
    img.write_node(sib_at, &mut sb)?;
    img.write_node(pat, &mut pb)
}

/// What a path must look like: type and mode, owner, link count (not for directories,
/// whose count differs between filesystems), device number, size (files and symlinks),
/// xattrs, and the first path of its hard-link group.
type Shape = (
    u32,
    u32,
    u32,
    u32,
    u64,
    u64,
    BTreeMap<String, Vec<u8>>,
    String,
    u64,
);

fn shapes(l: &Listing) -> BTreeMap<&str, Shape> {
    let mut first: BTreeMap<u64, &str> = BTreeMap::new();
    for (p, ino) in &l.paths {
        first.entry(*ino).or_insert(p);
    }
    let none = Inode::default();
    l.paths
        .iter()
        .map(|(p, ino)| {
            let i = l.inodes.get(ino).unwrap_or(&none);
            let dir = i.mode & 0o170000 == 0o040000;
            let sized = matches!(i.mode & 0o170000, 0o100000 | 0o120000);
            let shape = (
                i.mode,
                i.uid,
                i.gid,
                if dir { 0 } else { i.nlink },
                i.rdev,
                if sized { i.size } else { 0 },
                i.xattrs.clone(),
                first.get(ino).map(|s| s.to_string()).unwrap_or_default(),
                i.flags,
            );
            (p.as_str(), shape)
        })
        .collect()
}

/// The first difference between two listings, described for a user; None when equal.
pub fn diff(want: &Listing, got: &Listing) -> Option<String> {
    let (w, g) = (shapes(want), shapes(got));
    let show = |p: &str| {
        if p.is_empty() {
            "/".to_owned()
        } else {
            format!("/{p}")
        }
    };
    for (p, ws) in &w {
        match g.get(p) {
            None => return Some(format!("{} is missing", show(p))),
            Some(gs) if gs != ws => {
                let what = if gs.0 != ws.0 {
                    format!("mode {:o} instead of {:o}", gs.0, ws.0)
                } else if (gs.1, gs.2) != (ws.1, ws.2) {
                    format!("owner {}:{} instead of {}:{}", gs.1, gs.2, ws.1, ws.2)
                } else if gs.3 != ws.3 || gs.7 != ws.7 {
                    format!(
                        "hard links differ ({} links, first name {})",
                        gs.3,
                        show(&gs.7)
                    )
                } else if gs.4 != ws.4 {
                    "device number differs".to_owned()
                } else if gs.8 != ws.8 {
                    format!("inode flags {:#x} instead of {:#x}", gs.8, ws.8)
                } else if gs.5 != ws.5 {
                    format!("size {} instead of {}", gs.5, ws.5)
                } else {
                    let names = |s: &Shape| s.6.keys().cloned().collect::<Vec<_>>().join(",");
                    format!("xattrs [{}] instead of [{}]", names(gs), names(ws))
                };
                return Some(format!("{}: {what}", show(p)));
            }
            _ => {}
        }
    }
    g.keys()
        .find(|p| !w.contains_key(*p))
        .map(|p| format!("{} is unexpected", show(p)))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn name_hash_matches_btrfs() {
        // from `btrfs inspect-internal dump-tree`: (256 XATTR_ITEM 550297449) btrfs.compression
        assert_eq!(name_hash(b"btrfs.compression"), 550297449);
        assert_eq!(name_hash(b"user.foo"), 3980819260);
    }

    #[test]
    fn decompress_zlib_zstd_and_refuse_the_rest() {
        use std::io::Write;
        let data: Vec<u8> = b"ID=flatcar\n".iter().copied().cycle().take(9000).collect();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&data).unwrap();
        let z = z.finish().unwrap();
        assert_eq!(decompress(1, &z, data.len() as u64).unwrap(), data);
        let mut zs = zstd::stream::encode_all(&data[..], 3).unwrap();
        zs.extend_from_slice(&[0; 100]); // sector padding after the frame
        assert_eq!(decompress(3, &zs, data.len() as u64).unwrap(), data);
        // never more than the extent claims, and never a claim past 128 KiB
        assert_eq!(decompress(3, &zs, 10).unwrap(), &data[..10]);
        assert!(decompress(1, &z, MAX_EXTENT + 1).is_err());
        assert!(matches!(
            decompress(2, &z, 10),
            Err(TreeError::Unsupported(_))
        ));
        assert!(matches!(decompress(4, &z, 10), Err(TreeError::Bad(_))));
        assert!(matches!(
            decompress(1, &[1, 2, 3], 10),
            Err(TreeError::Bad(_))
        ));
        assert!(matches!(decompress(3, &z, 10), Err(TreeError::Bad(_))));
    }
}
