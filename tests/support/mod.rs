//! Shared end-to-end test helpers: fixture images built once per test binary by the
//! scripts under `scripts/`, running the `flatbake` binary, and reading results back
//! with outside tools (sgdisk, debugfs, e2fsck, btrfs).
#![allow(dead_code)]

mod release;
#[allow(unused_imports)]
pub use release::*;
pub mod compat;
pub mod http;
pub mod published;
pub mod refusal;

use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub const BIN: &str = env!("CARGO_BIN_EXE_flatbake");

/// Built once per test binary: `current.bin`, `lts.bin`, `sysexts/` and `release/`
/// (version.txt, OEM sysexts, firmware stand-ins).
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test exe");
        let stem = exe
            .file_stem()
            .expect("stem")
            .to_string_lossy()
            .into_owned();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fixtures-{stem}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("fixture dir");
        let root = env!("CARGO_MANIFEST_DIR");
        sh(Command::new("bash")
            .arg(format!("{root}/scripts/make-fixture-image.sh"))
            .arg(dir.join("current.bin")));
        sh(Command::new("bash")
            .arg(format!("{root}/scripts/make-fixture-image.sh"))
            .arg(dir.join("lts.bin"))
            .args(["--layout", "lts"]));
        sh(Command::new("bash")
            .arg(format!("{root}/scripts/make-fixture-sysexts.sh"))
            .arg(dir.join("sysexts")));
        sh(Command::new("bash")
            .arg(format!("{root}/scripts/make-fixture-release.sh"))
            .arg(dir.join("release")));
        // make everything readable for the unprivileged-user tests
        sh(Command::new("chmod").arg("-R").arg("a+rX").arg(&dir));
        dir
    })
}

pub fn sysext(name: &str) -> PathBuf {
    fixtures().join("sysexts").join(name)
}

/// The fixture Flatcar image (current layout, x86-64).
pub fn current() -> PathBuf {
    fixtures().join("current.bin")
}

/// The `NAME:FILE` argument of the fixture wasmtime sysext.
pub fn wasm() -> String {
    format!(
        "wasmtime:{}",
        sysext("wasmtime-v24.0.0-x86-64.raw").display()
    )
}

/// Size, mtime and ctime: any write changes one of them (hashing the sparse disk
/// images for every case would read all of their holes).
pub fn stamp(p: &Path) -> Option<(u64, i64, i64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| {
        (
            m.len(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        )
    })
}

/// Bake `image` into `dir/out.bin` with `args` besides `--image IMAGE -o OUT`, and
/// assert it succeeded and left no temporary in `dir`. Returns the output and the run.
pub fn bake_into(dir: &Path, image: &Path, args: &[&str]) -> (PathBuf, Output) {
    let out = dir.join("out.bin");
    let mut all = vec!["--image", s(image), "-o", s(&out)];
    all.extend_from_slice(args);
    let o = flatbake(&all);
    assert!(
        o.status.success(),
        "flatbake {all:?} failed: {}",
        stderr(&o)
    );
    assert!(
        leftovers(dir).is_empty(),
        "temporary files left: {:?}",
        leftovers(dir)
    );
    (out, o)
}

/// Bake `image` into a fresh output with `args` besides `--image IMAGE -o OUT`, and
/// assert a clean refusal: exit status 1, an `error:` line, no output, no temporary
/// left, the input untouched (size, mtime, ctime). Returns stderr.
pub fn refused_bake(image: &Path, args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out.bin");
    let before = stamp(image);
    let mut all = vec!["--image", s(image), "-o", s(&out)];
    all.extend_from_slice(args);
    let o = flatbake(&all);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "flatbake {all:?}: {err}");
    assert!(err.contains("error: "), "{err}");
    assert!(!out.exists(), "output written despite the error");
    assert!(
        leftovers(dir.path()).is_empty(),
        "temporary files left: {:?}",
        leftovers(dir.path())
    );
    assert_eq!(stamp(image), before, "input modified");
    err
}

/// A refusal is one line starting `error: `.
pub fn one_line(err: &str) {
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
}

/// Run flatbake for the `sysext` commands: with `envs`, and without the variables that
/// would change what it builds (`SOURCE_DATE_EPOCH`, the recipe mirror and directory).
pub fn run_sysext(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("FLATBAKE_RECIPE_MIRROR")
        .env_remove("FLATBAKE_RECIPES");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run flatbake")
}

/// [`run_sysext`], asserting success.
pub fn ok_sysext(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let o = run_sysext(args, envs);
    assert!(
        o.status.success(),
        "flatbake {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    o
}

/// Run a command, panic with its output unless it succeeds.
pub fn sh(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn flatbake(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run flatbake")
}

/// Run flatbake with `args`, assert that it failed, and return its stderr.
#[allow(dead_code)]
pub fn flatbake_refused(args: &[&str]) -> String {
    let o = flatbake(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{args:?} succeeded: {err}");
    err
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A partition's (offset, size) in bytes, as sgdisk reports it.
pub fn part(img: &Path, number: u32) -> (u64, u64) {
    let out = sh(Command::new("sgdisk")
        .arg("-i")
        .arg(number.to_string())
        .arg(img));
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| -> u64 {
        let line = text
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} in {text}"));
        line[key.len()..]
            .split_whitespace()
            .next()
            .expect("value")
            .parse()
            .expect("number")
    };
    let first = field("First sector:");
    let size = field("Partition size:");
    (first * 512, size * 512)
}

pub const ESP: u32 = 1;
pub const BIOS: u32 = 2;
pub const USR_A: u32 = 3;
pub const USR_B: u32 = 4;
pub const OEM: u32 = 6;
pub const OEM_CONFIG: u32 = 7;
pub const ROOT: u32 = 9;

pub fn sha256_range(img: &Path, off: u64, len: u64) -> String {
    let f = File::open(img).expect("open");
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = 0;
    while pos < len {
        let n = (len - pos).min(buf.len() as u64) as usize;
        f.read_exact_at(&mut buf[..n], off + pos).expect("read");
        h.update(&buf[..n]);
        pos += n as u64;
    }
    format!("{:x}", h.finalize())
}

pub fn sha256_file(p: &Path) -> String {
    let len = std::fs::metadata(p).expect("meta").len();
    sha256_range(p, 0, len)
}

/// `debugfs -R CMD` on ROOT of `img`; returns stdout.
pub fn debugfs(img: &Path, cmd: &str) -> String {
    let (off, _) = part(img, ROOT);
    let out = sh(Command::new("debugfs")
        .arg("-R")
        .arg(cmd)
        .arg(format!("{}?offset={off}", img.display())));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Content of a file in ROOT, read by debugfs.
pub fn root_file(img: &Path, path: &str) -> Vec<u8> {
    let tmp = tempfile::NamedTempFile::new().expect("tmp");
    debugfs(img, &format!("dump {path} {}", tmp.path().display()));
    std::fs::read(tmp.path()).expect("dumped")
}

/// `Fast link dest` of a symlink in ROOT.
pub fn root_link(img: &Path, path: &str) -> Option<String> {
    let s = debugfs(img, &format!("stat {path}"));
    let l = s.lines().find(|l| l.contains("link dest:"))?;
    Some(l.split('"').nth(1)?.to_owned())
}

/// `(mode, uid, gid)` of a path in ROOT, from debugfs stat.
pub fn root_owner_mode(img: &Path, path: &str) -> (String, u32, u32) {
    let s = debugfs(img, &format!("stat {path}"));
    let mode = s
        .split("Mode:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("mode")
        .to_owned();
    let num = |key: &str| -> u32 {
        s.split(key)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("id")
    };
    (mode, num("User:"), num("Group:"))
}

pub fn e2fsck_root(img: &Path) {
    let (off, _) = part(img, ROOT);
    sh(Command::new("e2fsck")
        .arg("-fn")
        .arg(format!("{}?offset={off}", img.display())));
}

pub fn sgdisk_verify(img: &Path) {
    let out = sh(Command::new("sgdisk").arg("-v").arg(img));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("No problems found"), "sgdisk -v: {text}");
}

/// Extract OEM, `btrfs check` it, and unpack it (as root) into a temp dir.
pub fn oem_tree(img: &Path) -> tempfile::TempDir {
    let (off, size) = part(img, OEM);
    partition_tree(img, off, size)
}

/// Copy the `size` bytes at `off` of `img` (a partition) into a sparse file `dst`.
pub fn copy_partition(img: &Path, off: u64, size: u64, dst: &Path) {
    sh(Command::new("dd")
        .arg(format!("if={}", img.display()))
        .arg(format!("of={}", dst.display()))
        .args([
            "bs=1M",
            "iflag=skip_bytes,count_bytes",
            "conv=sparse",
            "status=none",
        ])
        .arg(format!("skip={off}"))
        .arg(format!("count={size}")));
}

/// Extract the btrfs at `off`, `btrfs check` it, unpack it into `TEMPDIR/tree`.
pub fn partition_tree(img: &Path, off: u64, size: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let raw = dir.path().join("oem.img");
    copy_partition(img, off, size, &raw);
    sh(Command::new("btrfs")
        .arg("check")
        .arg("--readonly")
        .arg(&raw));
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).expect("mkdir");
    sh(Command::new("btrfs")
        .arg("restore")
        .arg("-m")
        .arg("-S")
        .arg(&raw)
        .arg(&tree));
    std::fs::remove_file(&raw).expect("rm");
    dir
}

/// Entries of `dir` whose names look like flatbake's temporary files.
pub fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".flatbake"))
        .collect()
}

/// A path as `&str` (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// Write `content` to `p` (parents created) with `mode`.
pub fn write(p: &Path, content: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, content).expect("write");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Merge `images` (NAME.raw files) into a throwaway root with a Flatcar os-release, in a
/// private mount namespace, then run `extra` (ROOT stands for the root); returns the
/// output of both.
pub fn sysext_merge(images: &[(&str, &Path)], extra: &str) -> String {
    sysext_merge_as(images, extra, "ROOT")
}

/// [`sysext_merge`] with `token` standing for the root in `extra`.
pub fn sysext_merge_as(images: &[(&str, &Path)], extra: &str, token: &str) -> String {
    let root = tempfile::tempdir().expect("tmp");
    let r = root.path();
    write(
        &r.join("usr/lib/os-release"),
        b"ID=flatcar\nVERSION_ID=4081.2.0\nSYSEXT_LEVEL=1.0\n",
        0o644,
    );
    std::fs::create_dir_all(r.join("etc/extensions")).expect("mkdir");
    std::fs::create_dir_all(r.join("opt")).expect("mkdir");
    // programs of Flatcar's own /usr that extensions' units run (crio's drop-in seeds
    // /etc with mkdir and rsync), so systemd-analyze verify finds them in the base
    std::fs::create_dir_all(r.join("usr/bin")).expect("mkdir");
    for b in ["mkdir", "rsync"] {
        std::fs::copy("/bin/true", r.join("usr/bin").join(b)).expect("copy");
    }
    for (name, img) in images {
        std::fs::copy(img, r.join(format!("etc/extensions/{name}.raw"))).expect("copy");
    }
    let script = format!(
        // systemd-sysext mounts from a child namespace: the root must be a shared mount
        // (of this namespace only) for the merged /usr to be seen here
        "set -e; mount -t tmpfs tmpfs /run; mount --bind {0} {0}; mount --make-shared {0}; \
         systemd-sysext --root={0} merge 2>&1; {1}",
        r.display(),
        extra.replace(token, s(r))
    );
    let out = sh(Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fixture release directory of Flatcar `version` (the default fixture release is
/// 4593.2.5, the current stable), built once per test binary.
pub fn release(version: &str) -> PathBuf {
    use std::sync::Mutex;
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let dir = fixtures().join(format!("release-{version}"));
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|v| v == version) {
        sh(std::process::Command::new("bash")
            .arg(format!(
                "{}/scripts/make-fixture-release.sh",
                env!("CARGO_MANIFEST_DIR")
            ))
            .arg(&dir)
            .args(["--version", version]));
        built.push(version.to_owned());
    }
    dir
}

/// `mksquashfs SRC OUT` with the settings flatbake's squashfs writer uses (root-owned,
/// 128 KiB blocks, every time 0, compressor `comp` at flatbake's level) plus `extra`:
/// the reference a packed image is compared with.
pub fn mksquashfs_reference(src: &Path, out: &Path, comp: &str, extra: &[&str]) {
    let mut c = std::process::Command::new("mksquashfs");
    c.arg(src)
        .arg(out)
        .args(["-noappend", "-quiet", "-no-progress", "-all-root"]);
    c.args(extra).args([
        "-b",
        "131072",
        "-mkfs-time",
        "0",
        "-all-time",
        "0",
        "-comp",
        comp,
    ]);
    match comp {
        "gzip" => c.args(["-Xcompression-level", "9"]),
        "zstd" => c.args(["-Xcompression-level", "15"]),
        _ => &mut c,
    };
    c.env_remove("SOURCE_DATE_EPOCH");
    sh(&mut c);
}
