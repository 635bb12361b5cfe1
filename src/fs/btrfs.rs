//! OEM's btrfs filesystem, edited rootless by rebuilding it with btrfs-progs: the
//! partition is copied out (sparse), checked (`btrfs check`), unpacked with
//! `btrfs restore -m -S` (owners, modes, times, symlinks), edited as a directory, and
//! packed again with `mkfs.btrfs --rootdir` using the original label, UUID, node and
//! sector size and mixed mode, checked again, and written back over the partition.
//!
//! When not running as root the restore and mkfs run under one `fakeroot` session, so
//! ownership survives the round trip. Known loss: btrfs-progs 6.2 cannot set properties
//! offline, so the root's `compression=zlib` property is not carried over (the
//! `mount` backend keeps it).

use super::{Edits, FsError};
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
    let root = work.join("oem-root");
    std::fs::create_dir(&root).map_err(FsError::io(&root))?;
    let state = work.join("fakeroot.state");
    tools::run(
        tools::as_root("btrfs", &state)
            .arg("restore")
            .arg("-m")
            .arg("-S")
            .arg(&old)
            .arg(&root),
        "unpacking OEM (btrfs restore)",
    )?;
    std::fs::remove_file(&old).map_err(FsError::io(&old))?;
    let is_root = rustix::process::geteuid().is_root();
    let applied = super::tree::apply(PART, &root, edits, is_root)?;
    if !is_root {
        let created: Vec<PathBuf> = applied.created.iter().map(|p| root.join(p)).collect();
        own_by_root(&created, &state)?;
    }
    let new = work.join("oem-new.img");
    {
        let f = File::create(&new).map_err(FsError::io(&new))?;
        f.set_len(part.size()).map_err(FsError::io(&new))?;
    }
    let mut args: Vec<std::ffi::OsString> = vec!["-q".into(), "-f".into()];
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
    args.extend([
        "-r".into(),
        root.clone().into_os_string(),
        new.clone().into_os_string(),
    ]);
    let doing = "packing OEM (mkfs.btrfs --rootdir)";
    match tools::run(tools::as_root("mkfs.btrfs", &state).args(&args), doing) {
        // mkfs.btrfs refuses a UUID it finds on any block device it can open: as root
        // that includes a loop device or mounted OEM of the same image (or the Flatcar
        // host's own). Keeping the image's UUID matters more: run it where it sees no
        // block devices, a private mount namespace with a /dev of only null, zero and
        // the random devices.
        Err(tools::ToolError::Failed { message, .. })
            if message.contains("non-unique UUID") && rustix::process::geteuid().is_root() =>
        {
            let real = work.join("realdev");
            std::fs::create_dir_all(&real).map_err(FsError::io(&real))?;
            let script = "set -e; mount --bind /dev \"$0\"; mount -t tmpfs tmpfs /dev; \
                for n in null zero random urandom; do touch /dev/$n; mount --bind \"$0/$n\" /dev/$n; done; \
                exec mkfs.btrfs \"$@\"";
            let mut c = std::process::Command::new("unshare");
            c.args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                script,
            ])
            .arg(&real)
            .args(&args);
            tools::run(&mut c, doing)?;
        }
        r => {
            r?;
        }
    }
    check(&new, "checking the rebuilt OEM filesystem (btrfs check)")?;
    let nf = File::open(&new).map_err(FsError::io(&new))?;
    sparse::zero_range(out, part.offset(), part.size()).map_err(FsError::io(image))?;
    sparse::copy_range(&nf, 0, out, part.offset(), part.size()).map_err(FsError::io(image))?;
    Ok(())
}

fn own_by_root(paths: &[PathBuf], state: &Path) -> Result<(), FsError> {
    if paths.is_empty() {
        return Ok(());
    }
    tools::run(
        tools::as_root("chown", state)
            .arg("-h")
            .arg("0:0")
            .args(paths),
        "recording root ownership (fakeroot chown)",
    )?;
    Ok(())
}
