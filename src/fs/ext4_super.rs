//! ROOT's ext4 superblock and group descriptors, judged before flatbake writes a byte:
//! geometry that fits inside the GPT partition (so no edit can land past it), a state
//! the kernel would mount as is (no recorded errors, no orphan inodes, not left
//! mounted), only features that debugfs and the kernel edit correctly, and the free
//! blocks and inodes a plan needs, metadata included.
//!
//! A journal that still needs recovery (the image of a VM that crashed) is not edited
//! around: the kernel would replay it at first mount and undo the edits. [`replay`]
//! replays it into the output copy (never the input) with debugfs `journal_run`
//! before anything is edited, checks the result again and requires `e2fsck -fn` to
//! find it clean. The pre-flight reads the input through ext4-view, which applies the
//! journal in memory, so the plan is made against the state the replay produces.

use super::{Backend, FsError, Op};
use crate::disk::gpt::Partition;
use crate::disk::sparse;
use crate::tools;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

const PART: &str = "ROOT";

const COMPAT_HAS_JOURNAL: u32 = 0x4;
const COMPAT_FAST_COMMIT: u32 = 0x400;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_EXTENTS: u32 = 0x40;
const INCOMPAT_64BIT: u32 = 0x80;
const RO_BIGALLOC: u32 = 0x200;
const RO_QUOTA: u32 = 0x100;
const RO_PROJECT: u32 = 0x2000;
const RO_ORPHAN_PRESENT: u32 = 0x1_0000;
const STATE_VALID: u16 = 0x1;
const STATE_ERROR: u16 = 0x2;
const STATE_ORPHAN: u16 = 0x4;

/// Incompatible features by bit, as e2fsprogs names them.
const INCOMPAT_NAMES: [(u32, &str); 16] = [
    (0x1, "compression"),
    (0x2, "filetype"),
    (0x4, "needs_recovery"),
    (0x8, "journal_dev"),
    (0x10, "meta_bg"),
    (0x40, "extent"),
    (0x80, "64bit"),
    (0x100, "mmp"),
    (0x200, "flex_bg"),
    (0x400, "ea_inode"),
    (0x1000, "dirdata"),
    (0x2000, "metadata_csum_seed"),
    (0x4000, "large_dir"),
    (0x8000, "inline_data"),
    (0x1_0000, "encrypt"),
    (0x2_0000, "casefold"),
];
/// Those debugfs, ext4-view and the kernel all handle (needs_recovery is judged apart).
const INCOMPAT_OK: u32 =
    0x2 | INCOMPAT_RECOVER | INCOMPAT_EXTENTS | INCOMPAT_64BIT | 0x200 | 0x2000;

/// Read-only-compatible features by bit.
const RO_NAMES: [(u32, &str); 17] = [
    (0x1, "sparse_super"),
    (0x2, "large_file"),
    (0x4, "btree_dir"),
    (0x8, "huge_file"),
    (0x10, "uninit_bg"),
    (0x20, "dir_nlink"),
    (0x40, "extra_isize"),
    (0x80, "snapshot"),
    (0x100, "quota"),
    (0x200, "bigalloc"),
    (0x400, "metadata_csum"),
    (0x800, "replica"),
    (0x1000, "read-only"),
    (0x2000, "project"),
    (0x4000, "shared_blocks"),
    (0x8000, "verity"),
    (0x1_0000, "orphan_present"),
];
/// Those both backends keep correct (quota and project only the kernel; orphans apart).
const RO_OK: u32 = 0x1
    | 0x2
    | 0x8
    | 0x10
    | 0x20
    | 0x40
    | RO_BIGALLOC
    | 0x400
    | 0x8000
    | RO_QUOTA
    | RO_PROJECT
    | RO_ORPHAN_PRESENT;

/// What flatbake needs to know of ROOT's ext4, read from its superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Super {
    pub block_size: u64,
    pub cluster_size: u64,
    pub blocks: u64,
    pub blocks_per_group: u64,
    pub free_blocks: u64,
    pub reserved_blocks: u64,
    pub free_inodes: u64,
    pub needs_recovery: bool,
    pub extents: bool,
    groups: u64,
    desc_size: u64,
    first_data_block: u64,
    inodes_per_group: u64,
    inode_size: u64,
    compat: u32,
    incompat: u32,
    ro_compat: u32,
    state: u16,
    last_orphan: u32,
    journal_inum: u32,
    journal_dev: u32,
    journal_uuid: bool,
}

fn u16at(b: &[u8], o: usize) -> u64 {
    u16::from_le_bytes([b[o], b[o + 1]]) as u64
}
fn u32at(b: &[u8], o: usize) -> u64 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as u64
}

impl Super {
    /// Parse and check the geometry of a superblock for a partition of `part_size`
    /// bytes. Err is what is wrong, for one line.
    pub fn parse(sb: &[u8; 1024], part_size: u64) -> Result<Super, String> {
        if u16at(sb, 0x38) != 0xEF53 {
            return Err("no ext4 superblock".into());
        }
        let rev = u32at(sb, 0x4C);
        if rev > 1 {
            return Err(format!("unknown superblock revision {rev}"));
        }
        let (log_bs, log_cs) = (u32at(sb, 0x18), u32at(sb, 0x1C));
        if log_bs > 6 {
            return Err(format!(
                "block size 2^{} is not one of 1 KiB to 64 KiB",
                10 + log_bs
            ));
        }
        let incompat = u32at(sb, 0x60) as u32;
        let ro_compat = u32at(sb, 0x64) as u32;
        let is64 = incompat & INCOMPAT_64BIT != 0;
        let hi = |o: usize| if is64 { u32at(sb, o) << 32 } else { 0 };
        let block_size = 1024u64 << log_bs;
        let bigalloc = ro_compat & RO_BIGALLOC != 0;
        if (!bigalloc && log_cs != log_bs)
            || (bigalloc && (log_cs < log_bs || log_cs > log_bs + 16))
        {
            return Err(format!(
                "cluster size 2^{} does not fit block size {block_size}",
                10 + log_cs
            ));
        }
        let cluster_size = 1024u64 << log_cs;
        let blocks = u32at(sb, 0x04) | hi(0x150);
        let first_data_block = u32at(sb, 0x14);
        if first_data_block > u64::from(block_size == 1024 && !bigalloc)
            || first_data_block >= blocks
        {
            return Err(format!(
                "first data block {first_data_block} is impossible for block size {block_size}"
            ));
        }
        let fs_bytes = blocks
            .checked_mul(block_size)
            .ok_or("block count overflows")?;
        if fs_bytes > part_size {
            return Err(format!(
                "the filesystem claims {fs_bytes} bytes ({blocks} blocks of {block_size}) but its GPT partition holds only {part_size}; editing it could write past the partition"
            ));
        }
        let per_cluster = cluster_size / block_size;
        let (bpg, cpg, ipg) = (u32at(sb, 0x20), u32at(sb, 0x24), u32at(sb, 0x28));
        if cpg == 0 || cpg % 8 != 0 || cpg > 8 * block_size || bpg != cpg * per_cluster {
            return Err(format!(
                "{bpg} blocks per group is impossible for block size {block_size}"
            ));
        }
        let groups = (blocks - first_data_block).div_ceil(bpg);
        let inodes = u32at(sb, 0x00);
        if ipg == 0 || ipg > 8 * block_size || groups.checked_mul(ipg) != Some(inodes) {
            return Err(format!(
                "{inodes} inodes in {groups} groups of {ipg} do not add up"
            ));
        }
        let inode_size = if rev == 0 { 128 } else { u16at(sb, 0x58) };
        if !inode_size.is_power_of_two() || inode_size < 128 || inode_size > block_size {
            return Err(format!("inode size {inode_size} is impossible"));
        }
        let desc_size = if is64 { u16at(sb, 0xFE) } else { 32 };
        if !desc_size.is_power_of_two()
            || desc_size < if is64 { 64 } else { 32 }
            || desc_size > 1024
        {
            return Err(format!("group descriptor size {desc_size} is impossible"));
        }
        let gdt_end = first_data_block + 1 + (groups * desc_size).div_ceil(block_size);
        if gdt_end > blocks {
            return Err(format!("its {groups} group descriptors end at block {gdt_end}, past the filesystem's {blocks} blocks"));
        }
        let free_blocks = u32at(sb, 0x0C) | hi(0x158);
        let reserved_blocks = u32at(sb, 0x08) | hi(0x154);
        let free_inodes = u32at(sb, 0x10);
        if free_blocks > blocks || reserved_blocks > blocks || free_inodes > inodes {
            return Err(format!(
                "free or reserved counts exceed the filesystem ({blocks} blocks, {inodes} inodes)"
            ));
        }
        Ok(Super {
            block_size,
            cluster_size,
            blocks,
            blocks_per_group: bpg,
            free_blocks,
            reserved_blocks,
            free_inodes,
            needs_recovery: incompat & INCOMPAT_RECOVER != 0,
            extents: incompat & INCOMPAT_EXTENTS != 0,
            groups,
            desc_size,
            first_data_block,
            inodes_per_group: ipg,
            inode_size,
            compat: u32at(sb, 0x5C) as u32,
            incompat,
            ro_compat,
            state: u16at(sb, 0x3A) as u16,
            last_orphan: u32at(sb, 0xE8) as u32,
            journal_inum: u32at(sb, 0xE0) as u32,
            journal_dev: u32at(sb, 0xE4) as u32,
            journal_uuid: sb[0xD0..0xE0].iter().any(|&b| b != 0),
        })
    }

    /// Bytes a writer could still use (free minus root's reserve).
    pub fn available(&self) -> u64 {
        self.free_blocks.saturating_sub(self.reserved_blocks) * self.block_size
    }

    /// Features, state and journal that stop `backend` from editing this filesystem
    /// safely, as `what; fix` texts (empty when it may be edited).
    pub fn refusal(&self, backend: Backend) -> Option<String> {
        let unknown = |bits: u32, names: &[(u32, &str)]| -> Vec<String> {
            (0..32)
                .map(|i| 1u32 << i)
                .filter(|b| bits & b != 0)
                .map(|b| {
                    names
                        .iter()
                        .find(|(n, _)| *n == b)
                        .map_or_else(|| format!("unknown 0x{b:x}"), |(_, s)| (*s).to_owned())
                })
                .collect()
        };
        let mut bad = unknown(self.incompat & !INCOMPAT_OK, &INCOMPAT_NAMES);
        bad.extend(unknown(self.ro_compat & !RO_OK, &RO_NAMES));
        if !bad.is_empty() {
            return Some(format!("uses ext4 features flatbake cannot edit safely ({}); bake onto a standard Flatcar image", bad.join(", ")));
        }
        if backend != Backend::Mount && self.ro_compat & (RO_QUOTA | RO_PROJECT) != 0 {
            return Some(
                "has quota tracking, which debugfs does not update; use --backend mount".into(),
            );
        }
        let has_journal = self.compat & COMPAT_HAS_JOURNAL != 0;
        if has_journal && (self.journal_inum == 0 || self.journal_dev != 0 || self.journal_uuid) {
            return Some(
                "keeps its journal on another device, which flatbake cannot see or replay".into(),
            );
        }
        if self.state & STATE_ERROR != 0 {
            return Some("records filesystem errors (error state set by the kernel); repair it first with e2fsck -f".into());
        }
        if self.needs_recovery {
            if !has_journal {
                return Some("is marked as needing journal recovery but has no journal; repair it first with e2fsck -f".into());
            }
            if self.compat & COMPAT_FAST_COMMIT != 0 {
                return Some("needs recovery of a fast-commit journal, which flatbake cannot check beforehand; replay it first with e2fsck -E journal_only".into());
            }
            // replayed into the output copy; the state below is judged again afterwards
            return None;
        }
        if self.state & STATE_VALID == 0 {
            return Some("was not cleanly unmounted (or is mounted now) and has no journal to replay; repair it first with e2fsck -f".into());
        }
        if self.state & STATE_ORPHAN != 0
            || self.last_orphan != 0
            || self.ro_compat & RO_ORPHAN_PRESENT != 0
        {
            return Some(
                "has orphan inodes (files deleted or truncated while in use) that the kernel would clean up at mount; clean them first with e2fsck -f".into(),
            );
        }
        None
    }

    /// Check the group descriptors' bitmaps and inode tables lie inside the
    /// filesystem; lower the free counts to what the descriptors record when less.
    fn check_groups(&mut self, file: &File, offset: u64) -> Result<(), String> {
        let itable_blocks = (self.inodes_per_group * self.inode_size).div_ceil(self.block_size);
        let start = offset + (self.first_data_block + 1) * self.block_size;
        let per_chunk = (1 << 16) / self.desc_size;
        let mut buf = vec![0u8; (per_chunk * self.desc_size) as usize];
        let (mut free_blocks, mut free_inodes) = (0u64, 0u64);
        let mut g = 0;
        while g < self.groups {
            let n = per_chunk.min(self.groups - g);
            let chunk = &mut buf[..(n * self.desc_size) as usize];
            file.read_exact_at(chunk, start + g * self.desc_size)
                .map_err(|e| format!("reading group descriptors: {e}"))?;
            for (i, d) in chunk.chunks_exact(self.desc_size as usize).enumerate() {
                let wide = self.desc_size >= 64;
                let at =
                    |lo: usize, h: usize| u32at(d, lo) | if wide { u32at(d, h) << 32 } else { 0 };
                let count =
                    |lo: usize, h: usize| u16at(d, lo) | if wide { u16at(d, h) << 16 } else { 0 };
                let (bb, ib, it) = (at(0x0, 0x20), at(0x4, 0x24), at(0x8, 0x28));
                if bb >= self.blocks
                    || ib >= self.blocks
                    || it.saturating_add(itable_blocks) > self.blocks
                {
                    return Err(format!(
                        "group {} has its bitmaps or inode table outside the filesystem",
                        g + i as u64
                    ));
                }
                free_blocks += count(0xC, 0x2C);
                free_inodes += count(0xE, 0x2E);
            }
            g += n;
        }
        self.free_blocks = self
            .free_blocks
            .min(free_blocks * (self.cluster_size / self.block_size));
        self.free_inodes = self.free_inodes.min(free_inodes);
        Ok(())
    }

    /// `(blocks, inodes)` that `ops` may take at most: data rounded to clusters,
    /// extent-tree (or indirect) blocks of large files, slow symlinks, and for each
    /// new name an inode and room for its parent directory to grow by a block. `fresh`
    /// tells whether a directory has to be created.
    pub fn need(&self, ops: &[Op], fresh: &mut dyn FnMut(&str) -> bool) -> (u64, u64) {
        let mut seen = std::collections::HashSet::new();
        let (mut blocks, mut inodes) = (0u64, 0u64);
        let mut new_dirs = |path: &str, blocks: &mut u64, inodes: &mut u64| {
            let mut all = super::parents(path);
            all.push(path.to_owned());
            for d in all {
                if seen.insert(d.clone()) && fresh(&d) {
                    *blocks += 2;
                    *inodes += 1;
                }
            }
        };
        for op in ops {
            let (path, len, symlink) = match op {
                // a source not staged yet is one of the small generated files
                Op::Write { path, src, .. } => (
                    path,
                    std::fs::metadata(src).map(|m| m.len()).unwrap_or(1),
                    false,
                ),
                Op::Symlink { path, target } => (path, target.len() as u64, true),
                Op::MkdirP(p) => {
                    new_dirs(p, &mut blocks, &mut inodes);
                    continue;
                }
                Op::Remove(_) | Op::Append { .. } => continue,
            };
            if let Some((dir, _)) = path.rsplit_once('/').filter(|(d, _)| !d.is_empty()) {
                new_dirs(dir, &mut blocks, &mut inodes);
            }
            inodes += 1;
            blocks += 1 + if symlink {
                u64::from(len >= 60)
            } else {
                self.file_blocks(len)
            };
        }
        (blocks, inodes)
    }

    /// Blocks a file of `len` bytes takes: data plus mapping metadata, assuming its
    /// extents may break at every block group and at every 32768 blocks, twice over.
    pub fn file_blocks(&self, len: u64) -> u64 {
        let data = len.div_ceil(self.cluster_size) * (self.cluster_size / self.block_size);
        if data == 0 {
            return 0;
        }
        let meta = if self.extents {
            let per_block = (self.block_size - 12) / 12;
            let mut level =
                data.min(2 * (data.div_ceil(32768) + data.div_ceil(self.blocks_per_group) + 1));
            let mut m = 0;
            while level > 4 {
                level = level.div_ceil(per_block);
                m += level;
            }
            m
        } else {
            let per_block = self.block_size / 4;
            let mut level = data.saturating_sub(12);
            let mut m = 0;
            while level > 0 {
                level = level.div_ceil(per_block);
                m += level + 1;
                if level == 1 {
                    break;
                }
            }
            m
        };
        data + meta
    }
}

/// Read and check ROOT's superblock and group descriptors in `part` of `image`.
/// Err is the one-line reason.
pub fn read(file: &File, image: &Path, part: &Partition) -> Result<Super, String> {
    let why = |w: String| format!("{}: ROOT (partition {}): {w}", image.display(), part.number);
    let mut sb = [0u8; 1024];
    if part.size() < 2048 {
        return Err(why("too small for an ext4 filesystem".into()));
    }
    file.read_exact_at(&mut sb, part.offset() + 1024)
        .map_err(|e| why(format!("reading the superblock: {e}")))?;
    let mut s = Super::parse(&sb, part.size()).map_err(why)?;
    s.check_groups(file, part.offset()).map_err(why)?;
    Ok(s)
}

/// Read ROOT's superblock and refuse what `backend` cannot edit safely.
pub fn check(
    file: &File,
    image: &Path,
    part: &Partition,
    backend: Backend,
) -> Result<Super, String> {
    let s = read(file, image, part)?;
    match s.refusal(backend) {
        Some(r) => Err(format!(
            "{}: ROOT (partition {}) {r}",
            image.display(),
            part.number
        )),
        None => Ok(s),
    }
}

/// Replay ROOT's journal in `image` (the output copy) if it needs recovery, then check
/// the result like the input was checked and with `e2fsck -fn`.
pub fn replay(
    image: &Path,
    part: &Partition,
    backend: Backend,
    work: &Path,
) -> Result<(), FsError> {
    let file = File::open(image).map_err(FsError::io(image))?;
    let invalid = |what: String| FsError::Invalid { part: PART, what };
    let before = read(&file, image, part).map_err(invalid)?;
    if !before.needs_recovery {
        return Ok(());
    }
    // Neither `e2fsck -E journal_only` nor debugfs `journal_run` can replay through
    // `?offset=` (both reopen the filesystem without it, e2fsprogs 1.47.0): replay a
    // sparse copy of the partition in `work` and copy its data back.
    let copy = work.join("root-replay.img");
    let io = |p: &Path| FsError::io(p.to_path_buf());
    let scratch = File::create(&copy).map_err(io(&copy))?;
    scratch.set_len(part.size()).map_err(io(&copy))?;
    sparse::copy_range(&file, part.offset(), &scratch, 0, part.size()).map_err(io(image))?;
    drop(scratch);
    let out = tools::run(
        Command::new("debugfs").current_dir(work).args([
            "-w",
            "-R",
            "journal_run",
            "root-replay.img",
        ]),
        "replaying ROOT's journal in the output (debugfs journal_run)",
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(l) = stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("debugfs "))
    {
        return Err(invalid(format!("replaying its journal: debugfs: {l}")));
    }
    let scratch = File::open(&copy).map_err(io(&copy))?;
    let rw = std::fs::OpenOptions::new()
        .write(true)
        .open(image)
        .map_err(io(image))?;
    sparse::copy_range(&scratch, 0, &rw, part.offset(), part.size()).map_err(io(image))?;
    rw.sync_all().map_err(io(image))?;
    drop((scratch, rw));
    std::fs::remove_file(&copy).map_err(io(&copy))?;
    let after = check(&file, image, part, backend)
        .map_err(|e| invalid(format!("after replaying its journal: {e}")))?;
    if after.needs_recovery {
        return Err(invalid(
            "its journal still needs recovery after debugfs replayed it".into(),
        ));
    }
    super::ext4::fsck(image, part)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A superblock like mkfs.ext4 -b 4096 makes for 10240 blocks.
    fn sb() -> [u8; 1024] {
        let mut b = [0u8; 1024];
        let put =
            |b: &mut [u8; 1024], o: usize, v: u32| b[o..o + 4].copy_from_slice(&v.to_le_bytes());
        put(&mut b, 0x00, 10240);
        put(&mut b, 0x04, 10240);
        put(&mut b, 0x08, 512);
        put(&mut b, 0x0C, 8000);
        put(&mut b, 0x10, 10000);
        put(&mut b, 0x18, 2);
        put(&mut b, 0x1C, 2);
        put(&mut b, 0x20, 32768);
        put(&mut b, 0x24, 32768);
        put(&mut b, 0x28, 10240);
        b[0x38..0x3A].copy_from_slice(&0xEF53u16.to_le_bytes());
        b[0x3A] = 1;
        put(&mut b, 0x4C, 1);
        b[0x58..0x5A].copy_from_slice(&256u16.to_le_bytes());
        put(&mut b, 0x5C, COMPAT_HAS_JOURNAL);
        put(
            &mut b,
            0x60,
            0x2 | INCOMPAT_EXTENTS | INCOMPAT_64BIT | 0x200,
        );
        put(&mut b, 0x64, 0x1 | 0x2 | 0x400);
        put(&mut b, 0xE0, 8);
        b[0xFE..0x100].copy_from_slice(&64u16.to_le_bytes());
        b
    }

    #[test]
    fn geometry() {
        let s = Super::parse(&sb(), 40 << 20).unwrap();
        assert_eq!((s.block_size, s.blocks, s.groups), (4096, 10240, 1));
        assert!(s.refusal(Backend::Rootless).is_none());
        assert!(Super::parse(&sb(), (40 << 20) - 1)
            .unwrap_err()
            .contains("past the partition"));
        let mut b = sb();
        b[0x18] = 7;
        assert!(Super::parse(&b, 1 << 40).is_err());
        let mut b = sb();
        b[0x14] = 1;
        assert!(Super::parse(&b, 40 << 20)
            .unwrap_err()
            .contains("first data block"));
        let mut b = sb();
        b[0x00] = 1;
        assert!(Super::parse(&b, 40 << 20)
            .unwrap_err()
            .contains("do not add up"));
        let mut b = sb();
        b[0xFE] = 48;
        assert!(Super::parse(&b, 40 << 20)
            .unwrap_err()
            .contains("descriptor size"));
    }

    #[test]
    fn states_and_features() {
        let with = |f: &dyn Fn(&mut [u8; 1024])| {
            let mut b = sb();
            f(&mut b);
            Super::parse(&b, 40 << 20)
                .unwrap()
                .refusal(Backend::Rootless)
                .unwrap_or_default()
        };
        assert!(with(&|b| b[0x3A] = 3).contains("errors"));
        assert!(with(&|b| b[0x3A] = 0).contains("not cleanly unmounted"));
        assert!(with(&|b| b[0xE8] = 12).contains("orphan"));
        assert!(with(&|b| b[0x66] = 1).contains("orphan"));
        assert!(with(&|b| b[0x61] |= 0x10).contains("dirdata"));
        assert!(with(&|b| b[0x65] |= 0x10).contains("read-only"));
        assert!(with(&|b| b[0x63] |= 0x80).contains("unknown 0x80000000"));
        assert!(with(&|b| b[0x65] |= 0x1).contains("quota"));
        assert!(with(&|b| b[0xE4] = 1).contains("another device"));
        assert!(with(&|b| b[0x60] |= 4).is_empty(), "recovery is replayed");
        assert!(with(&|b| {
            b[0x60] |= 4;
            b[0x5C] = 0
        })
        .contains("has no journal"));
        let mut b = sb();
        b[0x65] |= 0x1;
        assert!(Super::parse(&b, 40 << 20)
            .unwrap()
            .refusal(Backend::Mount)
            .is_none());
    }

    #[test]
    fn metadata_is_counted() {
        let s = Super::parse(&sb(), 40 << 20).unwrap();
        assert_eq!(s.file_blocks(0), 0);
        assert_eq!(s.file_blocks(1), 1);
        // 1 GiB: 262144 blocks, more extents than fit in the inode
        assert!(s.file_blocks(1 << 30) > 262144);
        let ops = vec![
            Op::Symlink {
                path: "/etc/extensions/a.raw".into(),
                target: "/opt/extensions/a/a-with-a-rather-long-name-1.2.3-x86-64.raw".into(),
            },
            Op::MkdirP("/etc/x/y".into()),
        ];
        // /etc, /etc/extensions, /etc/x, /etc/x/y new: 4 dirs; one slow symlink
        let (blocks, inodes) = s.need(&ops, &mut |_| true);
        assert_eq!((blocks, inodes), (4 * 2 + 2, 5));
        let (blocks, inodes) = s.need(&ops, &mut |_| false);
        assert_eq!((blocks, inodes), (2, 1));
    }
}
