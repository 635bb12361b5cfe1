//! OEM's btrfs filesystem, edited rootless by rebuilding it with btrfs-progs: the
//! partition is copied out (sparse), checked (`btrfs check`), unpacked with
//! `btrfs restore -m -S` (owners, modes, times, symlinks), edited as a directory, and
//! packed again with `mkfs.btrfs --rootdir` using the original label, UUID, node and
//! sector size and mixed mode, checked again, and written back over the partition.
//!
//! Nothing is lost on the way: the original tree is listed from the btrfs metadata
//! ([`btrfs_tree`]), restored and fixed up to equal that listing inside one `fakeroot`
//! session ([`btrfs_stage`]: owners, modes, xattrs such as `security.capability` and the
//! `btrfs.compression` property, hard links, FIFOs, sockets), packed, given back the
//! root directory's mode, owner and xattrs (which mkfs cannot set), and the rebuilt
//! filesystem's listing must equal the staged one. What the rebuild cannot carry
//! (subvolumes, device numbers) is refused, naming the file, with `--backend mount` as
//! the way through.

use super::{btrfs_stage, btrfs_tree, Edits, FsError};
use crate::disk::gpt::Partition;
use crate::disk::sparse;
use crate::tools;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const PART: &str = "OEM";
const SB_OFFSET: u64 = 64 * 1024;

const INCOMPAT_MIXED_GROUPS: u64 = 1 << 2;
const INCOMPAT_EXTENDED_IREF: u64 = 1 << 6;
const INCOMPAT_SKINNY_METADATA: u64 = 1 << 8;
const INCOMPAT_NO_HOLES: u64 = 1 << 9;
const COMPAT_RO_FREE_SPACE_TREE: u64 = 1 << 0;

/// What the btrfs superblock says about the filesystem.
#[derive(Clone, Debug)]
pub struct Super {
    pub fsid: [u8; 16],
    pub label: String,
    pub total_bytes: u64,
    pub bytes_used: u64,
    pub sectorsize: u32,
    pub nodesize: u32,
    pub incompat: u64,
    pub compat_ro: u64,
}

impl Super {
    pub fn mixed(&self) -> bool {
        self.incompat & INCOMPAT_MIXED_GROUPS != 0
    }
    pub fn uuid(&self) -> String {
        let h: String = self.fsid.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
    /// `mkfs.btrfs -O` list reproducing the feature flags that matter.
    fn features(&self) -> String {
        let f = |bit: u64, name: &str| {
            if self.incompat & bit != 0 {
                name.to_owned()
            } else {
                format!("^{name}")
            }
        };
        [
            f(INCOMPAT_EXTENDED_IREF, "extref"),
            f(INCOMPAT_SKINNY_METADATA, "skinny-metadata"),
            f(INCOMPAT_NO_HOLES, "no-holes"),
        ]
        .join(",")
    }
}

/// Read the btrfs superblock of `part` inside the open image.
pub fn read_super(file: &File, image: &Path, part: &Partition) -> Result<Super, FsError> {
    let mut sb = [0u8; 4096];
    file.read_exact_at(&mut sb, part.offset() + SB_OFFSET)
        .map_err(FsError::io(image))?;
    if &sb[0x40..0x48] != b"_BHRfS_M" {
        return Err(FsError::Invalid {
            part: PART,
            what: format!(
                "{}: partition {} holds no btrfs filesystem",
                image.display(),
                part.number
            ),
        });
    }
    let u64at = |o: usize| u64::from_le_bytes(sb[o..o + 8].try_into().unwrap_or([0; 8]));
    let u32at = |o: usize| u32::from_le_bytes(sb[o..o + 4].try_into().unwrap_or([0; 4]));
    let label_raw = &sb[0x12B..0x12B + 256];
    let label_len = label_raw.iter().position(|&b| b == 0).unwrap_or(256);
    let mut fsid = [0u8; 16];
    fsid.copy_from_slice(&sb[0x20..0x30]);
    Ok(Super {
        fsid,
        label: String::from_utf8_lossy(&label_raw[..label_len]).into_owned(),
        total_bytes: u64at(0x70),
        bytes_used: u64at(0x78),
        sectorsize: u32at(0x90),
        nodesize: u32at(0x94),
        compat_ro: u64at(0xB4),
        incompat: u64at(0xBC),
    })
}

/// Bytes a file of `len` bytes needs in the rebuilt filesystem, with metadata room.
pub fn footprint(len: u64) -> u64 {
    len.div_ceil(4096) * 4096 + 16 * 1024
}

/// Fixed room the rebuilt filesystem needs beyond its files (trees, system chunks).
pub const OVERHEAD: u64 = 6 << 20;

fn check(img: &Path, doing: &str) -> Result<(), FsError> {
    tools::run(
        Command::new("btrfs")
            .arg("check")
            .arg("--readonly")
            .arg(img),
        doing,
    )?;
    Ok(())
}

/// Check the btrfs in `part` of `file` with `btrfs check` on an extracted sparse copy.
pub fn check_partition(
    file: &File,
    part: &Partition,
    work: &Path,
    doing: &str,
) -> Result<(), FsError> {
    let copy = work.join("oem-check.img");
    {
        let f = File::create(&copy).map_err(FsError::io(&copy))?;
        f.set_len(part.size()).map_err(FsError::io(&copy))?;
        sparse::copy_range(file, part.offset(), &f, 0, part.size()).map_err(FsError::io(&copy))?;
    }
    let r = check(&copy, doing);
    let _ = std::fs::remove_file(&copy);
    r
}

/// Apply `edits` to the btrfs in `part` of `image` (opened read-write as `out`).
pub fn apply(
    image: &Path,
    out: &File,
    part: &Partition,
    edits: &Edits,
    work: &Path,
) -> Result<(), FsError> {
    if edits.is_empty() {
        return Ok(());
    }
    let sup = read_super(out, image, part)?;
    let old = work.join("oem.img");
    {
        let f = File::create(&old).map_err(FsError::io(&old))?;
        f.set_len(part.size()).map_err(FsError::io(&old))?;
        sparse::copy_range(out, part.offset(), &f, 0, part.size()).map_err(FsError::io(&old))?;
    }
    check(&old, "checking the input's OEM filesystem (btrfs check)")?;
    let listing = btrfs_tree::list(&File::open(&old).map_err(FsError::io(&old))?, 0)
        .map_err(tree_err(image))?;
    refuse_unsupported(&listing)?;
    let root = work.join("oem-root");
    std::fs::create_dir(&root).map_err(FsError::io(&root))?;
    let new = work.join("oem-new.img");
    {
        let f = File::create(&new).map_err(FsError::io(&new))?;
        f.set_len(part.size()).map_err(FsError::io(&new))?;
    }
    let job = btrfs_stage::Job {
        old: old.clone(),
        root: root.clone(),
        new: new.clone(),
        mkfs_args: mkfs_args(&sup, &root, &new),
        listing,
        edits: edits.clone(),
        out: work.join("oem-staged.json"),
    };
    let staged = run_worker(&job, work)?;
    std::fs::remove_file(&old).map_err(FsError::io(&old))?;
    let nf = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&new)
        .map_err(FsError::io(&new))?;
    finish(image, &nf, &job.listing, staged)?;
    check(&new, "checking the rebuilt OEM filesystem (btrfs check)")?;
    sparse::zero_range(out, part.offset(), part.size()).map_err(FsError::io(image))?;
    sparse::copy_range(&nf, 0, out, part.offset(), part.size()).map_err(FsError::io(image))?;
    Ok(())
}

/// Give the freshly packed filesystem `nf` what mkfs.btrfs cannot (the root directory's
/// mode, owner and xattrs; inode flags), then check that its listing equals the staged
/// tree's (the original plus the plan).
fn finish(
    image: &Path,
    nf: &File,
    original: &btrfs_tree::Listing,
    staged: btrfs_tree::Listing,
) -> Result<(), FsError> {
    let differs = |what: String| FsError::Invalid {
        part: PART,
        what: format!(
            "the rebuilt filesystem would differ from the plan: {what}; use --backend mount"
        ),
    };
    let root_inode = original
        .inodes
        .get(&btrfs_tree::ROOT_DIR)
        .cloned()
        .unwrap_or_default();
    btrfs_tree::set_root(nf, 0, &root_inode)
        .map_err(|e| differs(format!("root directory: {e}")))?;
    let mut want = btrfs_stage::with_root(staged, &root_inode);
    carry_flags(original, &mut want);
    let packed = btrfs_tree::list(nf, 0).map_err(tree_err(image))?;
    let mut flags = std::collections::BTreeMap::new();
    for (p, ino) in &packed.paths {
        let f = want
            .paths
            .get(p)
            .and_then(|w| want.inodes.get(w))
            .map_or(0, |i| i.flags);
        flags.insert(*ino, f);
    }
    btrfs_tree::set_flags(nf, 0, &flags).map_err(tree_err(image))?;
    nf.sync_all().map_err(FsError::io(image))?;
    let got = btrfs_tree::list(nf, 0).map_err(tree_err(image))?;
    match btrfs_tree::diff(&want, &got) {
        Some(d) => Err(differs(d)),
        None => Ok(()),
    }
}

const FLAG_NOCOMPRESS: u64 = 1 << 3;
const FLAG_COMPRESS: u64 = 1 << 11;
/// Inode flags the rebuild carries: nocompress, sync, immutable, append, nodump,
/// noatime, dirsync, compress (not nodatasum, nodatacow, readonly, prealloc, verity,
/// which describe data mkfs.btrfs writes its own way).
const CARRIED_FLAGS: u64 =
    FLAG_NOCOMPRESS | 0x20 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | FLAG_COMPRESS;

/// Expected inode flags in `want` (the staged tree): each original path keeps its own;
/// a new file or directory gets its parent's compress/nocompress, as btrfs gives it.
fn carry_flags(original: &btrfs_tree::Listing, want: &mut btrfs_tree::Listing) {
    let mut by_path = std::collections::BTreeMap::new();
    for (p, ino) in &want.paths {
        let from_original = original.paths.get(p).and_then(|o| original.inodes.get(o));
        let kind = want.inodes.get(ino).map_or(0, |i| i.mode & 0o170000);
        let parent = p.rsplit_once('/').map_or("", |(d, _)| d);
        let f = match from_original {
            Some(o) => o.flags,
            None if matches!(kind, 0o100000 | 0o040000) => {
                by_path.get(parent).copied().unwrap_or(0) & (FLAG_COMPRESS | FLAG_NOCOMPRESS)
            }
            None => 0,
        };
        by_path.insert(p.clone(), f);
    }
    for (p, ino) in &want.paths {
        if let (Some(i), Some(f)) = (want.inodes.get_mut(ino), by_path.get(p)) {
            i.flags = *f;
        }
    }
}

fn tree_err(image: &Path) -> impl Fn(btrfs_tree::TreeError) -> FsError + '_ {
    move |e| FsError::Invalid {
        part: PART,
        what: format!("{}: {e}", image.display()),
    }
}

/// Refuse what `btrfs restore` + `mkfs.btrfs --rootdir` (btrfs-progs 6.2) cannot carry.
fn refuse_unsupported(l: &btrfs_tree::Listing) -> Result<(), FsError> {
    let no = |what: String| {
        Err(FsError::Invalid {
            part: PART,
            what: format!("{what}; use --backend mount"),
        })
    };
    if let Some(s) = l.subvolumes.first() {
        return no(format!(
            "/{s} is a btrfs subvolume, which the rootless rebuild cannot recreate"
        ));
    }
    for (p, ino) in &l.paths {
        let Some(i) = l.inodes.get(ino) else { continue };
        if i.flags & !CARRIED_FLAGS != 0 {
            return no(format!(
                "/{p} has inode flags {:#x} (nodatacow, nodatasum, prealloc or verity) that the rootless rebuild cannot carry",
                i.flags & !CARRIED_FLAGS
            ));
        }
        if matches!(i.mode & 0o170000, 0o020000 | 0o060000) && i.rdev != 0 {
            return no(format!("/{p} is a device node, whose number the rootless rebuild (mkfs.btrfs 6.2) cannot record"));
        }
    }
    Ok(())
}

fn mkfs_args(sup: &Super, root: &Path, new: &Path) -> Vec<PathBuf> {
    let mut args: Vec<PathBuf> = vec!["-q".into(), "-f".into()];
    if sup.mixed() {
        args.push("--mixed".into());
    }
    for a in ["-m", "single", "-d", "single", "-L"] {
        args.push(a.into());
    }
    args.push(sup.label.clone().into());
    args.extend([
        "-U".into(),
        sup.uuid().into(),
        "-s".into(),
        sup.sectorsize.to_string().into(),
    ]);
    args.extend([
        "-n".into(),
        sup.nodesize.to_string().into(),
        "-O".into(),
        sup.features().into(),
        "-R".into(),
    ]);
    args.push(
        if sup.compat_ro & COMPAT_RO_FREE_SPACE_TREE != 0 {
            "free-space-tree"
        } else {
            "^free-space-tree"
        }
        .into(),
    );
    args.extend(["-r".into(), root.to_path_buf(), new.to_path_buf()]);
    args
}

/// Run the worker (`flatbake __oem-rebuild JOB`) in one fakeroot session and return the
/// listing of the tree it packed. As root, it runs where it sees no block devices (a
/// private mount namespace with a /dev of only null, zero and the random devices):
/// mkfs.btrfs refuses a UUID it finds on any block device it can open, such as a loop
/// device or mounted OEM of the same image (or the Flatcar host's own).
fn run_worker(job: &btrfs_stage::Job, work: &Path) -> Result<btrfs_tree::Listing, FsError> {
    let path = work.join("oem-job.json");
    let text = serde_json::to_vec(job).map_err(|e| FsError::Invalid {
        part: PART,
        what: e.to_string(),
    })?;
    std::fs::write(&path, text).map_err(FsError::io(&path))?;
    let exe = std::env::current_exe().map_err(FsError::io("/proc/self/exe"))?;
    let mut cmd = if rustix::process::geteuid().is_root() {
        let real = work.join("realdev");
        std::fs::create_dir_all(&real).map_err(FsError::io(&real))?;
        let script = "set -e; mount --bind /dev \"$0\"; mount -t tmpfs tmpfs /dev; \
            for n in null zero random urandom; do touch /dev/$n; mount --bind \"$0/$n\" /dev/$n; done; \
            exec fakeroot -- \"$@\"";
        let mut c = Command::new("unshare");
        c.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
        ])
        .arg(&real);
        c
    } else {
        let mut c = Command::new("fakeroot");
        c.arg("--");
        c
    };
    cmd.arg(exe).arg("__oem-rebuild").arg(&path);
    // mkfs.btrfs checks its UUID against libblkid's cache, which may remember a loop
    // device it cannot open (not as root) or that is gone: give it a cache of its own
    cmd.env("BLKID_FILE", work.join("blkid.tab"));
    let err_file = path.with_extension("error");
    if let Err(e) = tools::run(&mut cmd, "rebuilding OEM") {
        let msg = std::fs::read_to_string(&err_file)
            .ok()
            .filter(|m| !m.trim().is_empty());
        return Err(match msg {
            Some(m) => FsError::Invalid {
                part: PART,
                what: m.trim().trim_start_matches("OEM partition: ").to_owned(),
            },
            None => e.into(),
        });
    }
    let text = std::fs::read(&job.out).map_err(FsError::io(&job.out))?;
    serde_json::from_slice(&text).map_err(|e| FsError::Invalid {
        part: PART,
        what: format!("{}: {e}", job.out.display()),
    })
}

/// The worker's entry point: run the job, leave any error beside it for the parent.
pub fn run_job(path: &Path) -> Result<(), FsError> {
    let r = btrfs_stage::run_job(path);
    if let Err(e) = &r {
        let _ = std::fs::write(path.with_extension("error"), e.to_string());
    }
    r
}
