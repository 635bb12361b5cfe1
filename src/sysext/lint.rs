//! Lints a user needs before shipping a sysext, beyond what systemd-sysext itself
//! refuses: ELF binaries built for another machine than `ARCHITECTURE`, units whose
//! `Exec*=` program is in neither the extension nor the base image, `Upholds=`/`Wants=`
//! (drop-ins and `.wants/` links) naming units nobody ships, entries that shadow the
//! base's `/usr` (a directory over a symlink hides everything behind it), and dynamically
//! linked programs needing libraries Flatcar does not have.
//!
//! The base is the `/usr` of a Flatcar image (`--target`), read in-process (btrfs or
//! ext4 USR-A) as a path listing; without one, what only the base could settle is a
//! warning saying so. The image is read through [`Contents`]: squashfs with backhand,
//! EROFS with flatbake's reader, or `fsck.erofs --extract` into a scratch directory when
//! files are compressed. Every read is bounded.

use super::erofs::{Erofs, ErofsError};
use super::image::Format;
use crate::arch::Arch;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding, about one path of the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lint {
    pub severity: Severity,
    pub path: String,
    pub what: String,
}

impl std::fmt::Display for Lint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{s}: {}: {}", self.path, self.what)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LintError {
    #[error("{path}: {what}")]
    Read { path: PathBuf, what: String },
}

fn rerr(path: &Path, what: impl std::fmt::Display) -> LintError {
    LintError::Read {
        path: path.to_owned(),
        what: what.to_string(),
    }
}

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File { size: u64, exec: bool },
    Symlink(String),
    Other,
}

/// Largest file read whole (ELF programs for their libraries).
const MAX_READ: u64 = 256 << 20;
/// Largest unit file or drop-in read.
const MAX_UNIT: u64 = 1 << 20;
/// Findings of one kind listed before the rest are summed up.
const MAX_PER_KIND: usize = 20;

/// The entries of an image (absolute paths) and a way to read its files.
pub struct Contents {
    pub entries: BTreeMap<String, Kind>,
    source: Source,
}

enum Source {
    Squashfs(PathBuf),
    Erofs(PathBuf),
    /// Extracted into a scratch directory (kept alive here).
    Dir(tempfile::TempDir),
}

impl Contents {
    /// Read the listing of the image at `path`.
    pub fn open(path: &Path, format: Format) -> Result<Contents, LintError> {
        match format {
            Format::Squashfs => {
                let fs = squashfs_reader(path)?;
                let mut entries = BTreeMap::new();
                for n in fs.files() {
                    use backhand::InnerNode;
                    let kind = match &n.inner {
                        InnerNode::Dir(_) => Kind::Dir,
                        InnerNode::File(f) => Kind::File {
                            size: f.file_len() as u64,
                            exec: n.header.permissions & 0o111 != 0,
                        },
                        InnerNode::Symlink(l) => {
                            Kind::Symlink(l.link.to_string_lossy().into_owned())
                        }
                        _ => Kind::Other,
                    };
                    entries.insert(n.fullpath.to_string_lossy().into_owned(), kind);
                }
                Ok(Contents {
                    entries,
                    source: Source::Squashfs(path.to_owned()),
                })
            }
            Format::Erofs => {
                let file = crate::input::open_regular(path).map_err(|e| rerr(path, e))?;
                let mut fs = Erofs::open(BufReader::new(file)).map_err(|e| rerr(path, e))?;
                let mut entries = BTreeMap::new();
                let mut links = Vec::new();
                fs.walk(|p, ino| {
                    let kind = if ino.is_dir() {
                        Kind::Dir
                    } else if ino.is_file() {
                        Kind::File {
                            size: ino.size,
                            exec: ino.mode & 0o111 != 0,
                        }
                    } else if ino.mode & 0o170000 == 0o120000 {
                        links.push((p.to_owned(), ino.clone()));
                        Kind::Symlink(String::new())
                    } else {
                        Kind::Other
                    };
                    entries.insert(p.to_owned(), kind);
                })
                .map_err(|e| rerr(path, e))?;
                let mut compressed = false;
                for (p, ino) in links {
                    match fs.read(&ino, &p, 4096) {
                        Ok(t) => {
                            entries.insert(p, Kind::Symlink(String::from_utf8_lossy(&t).into()));
                        }
                        Err(ErofsError::Compressed(_)) => compressed = true,
                        Err(e) => return Err(rerr(path, e)),
                    }
                }
                let mut c = Contents {
                    entries,
                    source: Source::Erofs(path.to_owned()),
                };
                if compressed {
                    c.extract(path)?;
                }
                Ok(c)
            }
        }
    }

    /// Switch to reading from an `fsck.erofs --extract` of the image (compressed files).
    fn extract(&mut self, image: &Path) -> Result<(), LintError> {
        let dir = tempfile::Builder::new()
            .prefix("flatbake-lint")
            .tempdir()
            .map_err(|e| rerr(image, e))?;
        let root = dir.path().join("x");
        let mut cmd = std::process::Command::new("fsck.erofs");
        cmd.arg(format!("--extract={}", root.display()))
            .arg("--no-preserve")
            .arg(image);
        crate::tools::run(&mut cmd, "reading a compressed EROFS image")
            .map_err(|e| rerr(image, e))?;
        for (p, k) in self.entries.iter_mut() {
            if let Kind::Symlink(t) = k {
                if let Ok(l) = std::fs::read_link(root.join(p.trim_start_matches('/'))) {
                    *t = l.to_string_lossy().into_owned();
                }
            }
        }
        self.source = Source::Dir(dir);
        Ok(())
    }

    /// The first `limit` bytes (at most) of the file at `p`.
    pub fn read(&mut self, p: &str, limit: u64) -> Result<Vec<u8>, LintError> {
        match &self.source {
            Source::Squashfs(img) => {
                let fs = squashfs_reader(img)?;
                for n in fs.files() {
                    if n.fullpath.to_string_lossy() != p {
                        continue;
                    }
                    if let backhand::InnerNode::File(f) = &n.inner {
                        let mut out = Vec::new();
                        fs.file(f)
                            .reader()
                            .take(limit)
                            .read_to_end(&mut out)
                            .map_err(|e| rerr(img, format!("{p}: {e}")))?;
                        return Ok(out);
                    }
                }
                Err(rerr(img, format!("{p}: not a file")))
            }
            Source::Erofs(img) => {
                let img = img.clone();
                let file = File::open(&img).map_err(|e| rerr(&img, e))?;
                let mut fs = Erofs::open(BufReader::new(file)).map_err(|e| rerr(&img, e))?;
                let ino = fs
                    .lookup(p)
                    .map_err(|e| rerr(&img, e))?
                    .ok_or_else(|| rerr(&img, format!("{p}: missing")))?;
                match fs.read(&ino, p, MAX_READ) {
                    Ok(mut v) => {
                        v.truncate(limit as usize);
                        Ok(v)
                    }
                    Err(ErofsError::Compressed(_)) => {
                        self.extract(&img)?;
                        self.read(p, limit)
                    }
                    Err(e) => Err(rerr(&img, e)),
                }
            }
            Source::Dir(d) => {
                let f = d.path().join("x").join(p.trim_start_matches('/'));
                let mut out = Vec::new();
                File::open(&f)
                    .and_then(|h| h.take(limit).read_to_end(&mut out))
                    .map_err(|e| rerr(&f, e))?;
                Ok(out)
            }
        }
    }
}

fn squashfs_reader(path: &Path) -> Result<backhand::FilesystemReader<'static>, LintError> {
    let file = crate::input::open_regular(path).map_err(|e| rerr(path, e))?;
    backhand::FilesystemReader::from_reader(BufReader::new(file)).map_err(|e| rerr(path, e))
}

/// The base image's `/usr`: every path (absolute, `/usr/...`) and whether it is a
/// directory, a symlink or something else.
#[derive(Clone, Debug, Default)]
pub struct Base {
    pub paths: BTreeMap<String, BaseKind>,
    /// Where it came from, for messages.
    pub label: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaseKind {
    Dir,
    Symlink,
    Other,
}

impl Base {
    /// The `/usr` of a Flatcar disk image (USR-A, btrfs or ext4), read through its facts.
    pub fn from_facts(facts: &crate::facts::Facts) -> Result<Base, LintError> {
        let image = facts.path.as_path();
        let layout = facts.layout.as_ref().map_err(|e| rerr(image, e))?;
        let part = &layout.usr_a;
        let mut base = Base {
            label: format!("{} (USR-A)", image.display()),
            ..Default::default()
        };
        base.paths.insert("/usr".into(), BaseKind::Dir);
        match facts.btrfs_list(part) {
            Ok(l) => {
                for (p, ino) in &l.paths {
                    if p.is_empty() {
                        continue;
                    }
                    let mode = l.inodes.get(ino).map(|i| i.mode).unwrap_or(0);
                    base.paths.insert(format!("/usr/{p}"), kind_of_mode(mode));
                }
            }
            Err(btrfs_err) => {
                let fs = facts.ext4(part).map_err(|e| {
                    rerr(
                        image,
                        format!("USR-A is neither readable btrfs ({btrfs_err}) nor ext4 ({e})"),
                    )
                })?;
                let mut stack = vec![(String::from("/"), 0usize)];
                while let Some((dir, depth)) = stack.pop() {
                    if depth > 64 || base.paths.len() > 2_000_000 {
                        return Err(rerr(image, "USR-A nests too deep or has too many entries"));
                    }
                    let rd = fs
                        .read_dir(dir.as_str())
                        .map_err(|e| rerr(image, format!("USR-A {dir}: {e}")))?;
                    for e in rd.flatten() {
                        let Ok(name) = e.file_name().as_str().map(str::to_owned) else {
                            continue;
                        };
                        if name == "." || name == ".." {
                            continue;
                        }
                        let p = format!("{}/{name}", dir.trim_end_matches('/'));
                        let k = match e.file_type() {
                            Ok(t) if t.is_dir() => BaseKind::Dir,
                            Ok(t) if t.is_symlink() => BaseKind::Symlink,
                            _ => BaseKind::Other,
                        };
                        if k == BaseKind::Dir {
                            stack.push((p.clone(), depth + 1));
                        }
                        base.paths.insert(format!("/usr{p}"), k);
                    }
                }
            }
        }
        Ok(base)
    }

    /// Whether the base has `p` (an absolute path; `/bin`, `/sbin`, `/lib`, `/lib64` are
    /// Flatcar's links into `/usr`).
    pub fn has(&self, p: &str) -> bool {
        self.paths.contains_key(&usr_path(p))
    }
}

fn kind_of_mode(mode: u32) -> BaseKind {
    match mode & 0o170000 {
        0o040000 => BaseKind::Dir,
        0o120000 => BaseKind::Symlink,
        _ => BaseKind::Other,
    }
}

/// `/bin/x` → `/usr/bin/x` (Flatcar's merged /usr links), other paths unchanged.
fn usr_path(p: &str) -> String {
    for top in ["/bin/", "/sbin/", "/lib/", "/lib64/"] {
        if let Some(rest) = p.strip_prefix(top) {
            return format!("/usr{top}{rest}");
        }
    }
    p.to_owned()
}

/// ELF `e_machine` values of the architectures systemd names.
fn machine_of(arch: &str) -> Option<(u16, &'static str)> {
    Some(match arch {
        "x86-64" => (62, "x86-64"),
        "arm64" => (183, "arm64"),
        "x86" => (3, "x86"),
        "arm" => (40, "arm"),
        "riscv64" => (243, "riscv64"),
        "ppc64-le" | "ppc64" => (21, "ppc64"),
        "s390x" => (22, "s390x"),
        _ => return None,
    })
}

fn machine_name(m: u16) -> String {
    match m {
        62 => "x86-64".into(),
        183 => "arm64 (aarch64)".into(),
        3 => "x86 (i386)".into(),
        40 => "arm".into(),
        243 => "riscv".into(),
        21 => "ppc64".into(),
        22 => "s390x".into(),
        m => format!("machine {m}"),
    }
}

/// Where systemd looks up a unit's program given without a path.
const EXEC_SEARCH: [&str; 4] = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"];
/// Unit directories an extension ships units in.
const UNIT_DIRS: [&str; 2] = ["/usr/lib/systemd/system", "/usr/lib/systemd/user"];

/// Everything that can be said about `c`, an image whose extension-release says
/// `architecture` (`None`: any), against `base` if known.
pub fn lint(
    c: &mut Contents,
    architecture: Option<&str>,
    arch_hint: Option<Arch>,
    base: Option<&Base>,
) -> Vec<Lint> {
    let mut out = Vec::new();
    elf_lints(c, architecture, arch_hint, base, &mut out);
    unit_lints(c, base, &mut out);
    shadow_lints(c, base, &mut out);
    cap(out)
}

/// The lints of the image at `path` (what `flatbake sysext check` adds to systemd's own
/// verdict): `architecture` from its extension-release, `arch_hint` from `--arch` or the
/// file name.
pub fn lint_image(
    path: &Path,
    format: Format,
    architecture: Option<&str>,
    arch_hint: Option<Arch>,
    base: Option<&Base>,
) -> Result<Vec<Lint>, LintError> {
    let mut c = Contents::open(path, format)?;
    Ok(lint(&mut c, architecture, arch_hint, base))
}

/// Keep at most [`MAX_PER_KIND`] findings with the same message shape, plus one that
/// sums up the rest.
fn cap(all: Vec<Lint>) -> Vec<Lint> {
    let mut count: BTreeMap<(Severity, String), usize> = BTreeMap::new();
    let mut out = Vec::new();
    for l in all {
        let key = l.what.split(':').next().unwrap_or("").to_owned();
        let n = count.entry((l.severity, key)).or_default();
        *n += 1;
        if *n <= MAX_PER_KIND {
            out.push(l);
        }
    }
    for ((sev, key), n) in count {
        if n > MAX_PER_KIND {
            out.push(Lint {
                severity: sev,
                path: "...".into(),
                what: format!("{} more like \"{key}\"", n - MAX_PER_KIND),
            });
        }
    }
    out
}

/// The file name part of a path.
fn base_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Resolve `p` inside the image, following symlinks (at most 16).
fn resolve(c: &Contents, p: &str) -> Option<String> {
    let mut cur = p.to_owned();
    for _ in 0..16 {
        match c.entries.get(&cur) {
            Some(Kind::Symlink(t)) => {
                cur = if t.starts_with('/') {
                    t.clone()
                } else {
                    let dir = cur.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    normalize(&format!("{dir}/{t}"))
                };
            }
            Some(_) => return Some(cur),
            None => return None,
        }
    }
    None
}

fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn elf_lints(
    c: &mut Contents,
    architecture: Option<&str>,
    arch_hint: Option<Arch>,
    base: Option<&Base>,
    out: &mut Vec<Lint>,
) {
    let want = architecture
        .and_then(machine_of)
        .or_else(|| arch_hint.and_then(|a| machine_of(a.systemd_name())));
    let files: Vec<String> = c
        .entries
        .iter()
        .filter(|(_, k)| matches!(k, Kind::File { size, .. } if *size >= 64))
        .map(|(p, _)| p.clone())
        .collect();
    // names of every file and symlink in the image, for library lookups
    let names: BTreeSet<String> = c
        .entries
        .iter()
        .filter(|(_, k)| !matches!(k, Kind::Dir))
        .map(|(p, _)| base_name(p).to_owned())
        .collect();
    for p in files {
        let Ok(head) = c.read(&p, 64) else { continue };
        if head.len() < 20 || &head[..4] != b"\x7fELF" {
            continue;
        }
        let little = head[5] == 1;
        let rd16 = |o: usize| {
            if little {
                u16::from_le_bytes([head[o], head[o + 1]])
            } else {
                u16::from_be_bytes([head[o], head[o + 1]])
            }
        };
        let (etype, machine) = (rd16(16), rd16(18));
        if let Some((m, name)) = want {
            if machine != m && (etype == 2 || etype == 3 || etype == 1) {
                out.push(Lint {
                    severity: Severity::Error,
                    path: p.clone(),
                    what: format!(
                        "ELF built for {}, but the image is for ARCHITECTURE={name}: it cannot run there",
                        machine_name(machine)
                    ),
                });
                continue;
            }
        }
        if etype != 2 && etype != 3 {
            continue;
        }
        let size = match c.entries.get(&p) {
            Some(Kind::File { size, .. }) => *size,
            _ => 0,
        };
        if size > MAX_READ {
            continue;
        }
        let Ok(bytes) = c.read(&p, MAX_READ) else {
            continue;
        };
        let Ok(elf) = goblin::elf::Elf::parse(&bytes) else {
            continue;
        };
        let mut missing = Vec::new();
        let mut unknown = Vec::new();
        let mut needs: Vec<String> = elf.libraries.iter().map(|s| (*s).to_owned()).collect();
        if let Some(interp) = elf.interpreter {
            needs.push(interp.to_owned());
        }
        for lib in needs {
            let in_ext = if lib.starts_with('/') {
                resolve(c, &lib).is_some() || names.contains(base_name(&lib))
            } else {
                names.contains(&lib)
            };
            if in_ext {
                continue;
            }
            match base {
                Some(b) => {
                    let found = if lib.starts_with('/') {
                        b.has(&lib)
                    } else {
                        ["/usr/lib64/", "/usr/lib/"]
                            .iter()
                            .any(|d| b.has(&format!("{d}{lib}")))
                    };
                    if !found {
                        missing.push(lib);
                    }
                }
                None => unknown.push(lib),
            }
        }
        if !missing.is_empty() {
            out.push(Lint {
                severity: Severity::Error,
                path: p.clone(),
                what: format!(
                    "dynamically linked against {}, which neither the extension nor Flatcar has: bundle them with `flatbake sysext flix` or `flatbake sysext flatwrap`",
                    missing.join(", ")
                ),
            });
        } else if !unknown.is_empty() && !unknown.iter().all(|l| is_libc_family(l)) {
            out.push(Lint {
                severity: Severity::Warning,
                path: p.clone(),
                what: format!(
                    "dynamically linked against {}, not in the extension; without --target flatbake cannot tell whether Flatcar has them (else use `flatbake sysext flix` or `flatbake sysext flatwrap`)",
                    unknown.join(", ")
                ),
            });
        }
    }
}

/// glibc's own libraries and loader, which every Flatcar has.
fn is_libc_family(lib: &str) -> bool {
    let n = base_name(lib);
    [
        "libc.so.6",
        "libm.so.6",
        "libdl.so.2",
        "libpthread.so.0",
        "librt.so.1",
        "libresolv.so.2",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
    ]
    .contains(&n)
}

/// The units an image ships, by name, in its unit directories.
fn shipped_units(c: &Contents) -> BTreeSet<String> {
    c.entries
        .keys()
        .filter_map(|p| {
            UNIT_DIRS.iter().find_map(|d| {
                p.strip_prefix(d)
                    .and_then(|r| r.strip_prefix('/'))
                    .filter(|r| !r.contains('/'))
            })
        })
        .map(str::to_owned)
        .collect()
}

fn is_unit_name(n: &str) -> bool {
    [
        ".service",
        ".socket",
        ".target",
        ".timer",
        ".path",
        ".mount",
        ".automount",
        ".slice",
        ".scope",
        ".swap",
        ".device",
    ]
    .iter()
    .any(|s| n.ends_with(s))
}

/// `foo@bar.service` → `foo@.service`.
fn template_of(n: &str) -> Option<String> {
    let (pre, rest) = n.split_once('@')?;
    let ext = rest.rsplit_once('.')?.1;
    Some(format!("{pre}@.{ext}"))
}

fn unit_lints(c: &mut Contents, base: Option<&Base>, out: &mut Vec<Lint>) {
    let shipped = shipped_units(c);
    let base_has_unit = |n: &str| -> Option<bool> {
        base.map(|b| {
            ["/usr/lib/systemd/system/", "/usr/lib/systemd/user/"]
                .iter()
                .any(|d| b.has(&format!("{d}{n}")))
        })
    };
    let unit_exists = |n: &str| -> Option<bool> {
        if shipped.contains(n) || template_of(n).is_some_and(|t| shipped.contains(&t)) {
            return Some(true);
        }
        match (
            base_has_unit(n),
            template_of(n).and_then(|t| base_has_unit(&t)),
        ) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), _) => Some(false),
            (None, _) => None,
        }
    };
    let mut unit_files = Vec::new();
    for (p, k) in &c.entries {
        let Some(rel) = UNIT_DIRS
            .iter()
            .find_map(|d| p.strip_prefix(d).and_then(|r| r.strip_prefix('/')))
        else {
            continue;
        };
        match rel.split_once('/') {
            // NAME.wants/X or NAME.upholds/X or NAME.requires/X links
            Some((dir, name))
                if !name.contains('/')
                    && [".wants", ".upholds", ".requires"]
                        .iter()
                        .any(|s| dir.ends_with(s))
                    && is_unit_name(name)
                    && unit_exists(name) != Some(true) =>
            {
                out.push(dangling(p, name, unit_exists(name)));
            }
            Some((dir, name)) if dir.ends_with(".d") && name.ends_with(".conf") => {
                if matches!(k, Kind::File { .. } | Kind::Symlink(_)) {
                    unit_files.push(p.clone());
                }
            }
            None if is_unit_name(rel) && matches!(k, Kind::File { .. }) => {
                unit_files.push(p.clone())
            }
            _ => {}
        }
    }
    for p in unit_files {
        let Ok(bytes) = c.read(&p, MAX_UNIT) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        for (key, value) in unit_settings(&text) {
            match key.as_str() {
                "Upholds" | "Wants" => {
                    for n in value.split_whitespace() {
                        if is_unit_name(n) && unit_exists(n) != Some(true) {
                            out.push(dangling(&p, n, unit_exists(n)));
                        }
                    }
                }
                "ExecStart" | "ExecStartPre" | "ExecStartPost" | "ExecReload" | "ExecStop"
                | "ExecStopPost" | "ExecCondition" => {
                    if let Some(l) = exec_lint(c, base, &p, &key, &value) {
                        out.push(l);
                    }
                }
                _ => {}
            }
        }
    }
}

fn dangling(p: &str, name: &str, known: Option<bool>) -> Lint {
    match known {
        Some(_) => Lint {
            severity: Severity::Error,
            path: p.to_owned(),
            what: format!(
                "names unit {name}, which neither the extension nor Flatcar ships: it will never start"
            ),
        },
        None => Lint {
            severity: Severity::Warning,
            path: p.to_owned(),
            what: format!(
                "names unit {name}, which the extension does not ship; without --target flatbake cannot tell whether Flatcar does"
            ),
        },
    }
}

/// `Key=value` settings of a unit file, continuation lines joined, comments skipped.
fn unit_settings(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim();
        if pending.is_empty() && (t.starts_with('#') || t.starts_with(';') || t.starts_with('[')) {
            continue;
        }
        if let Some(s) = t.strip_suffix('\\') {
            pending.push_str(s);
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        if let Some((k, v)) = pending.split_once('=') {
            out.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        pending.clear();
    }
    out
}

fn exec_lint(
    c: &Contents,
    base: Option<&Base>,
    unit: &str,
    key: &str,
    value: &str,
) -> Option<Lint> {
    let cmd = value.trim_start_matches(['-', '@', ':', '+', '!']);
    let prog = cmd.split_whitespace().next()?;
    if prog.contains('$') || prog.contains('%') {
        return None;
    }
    let candidates: Vec<String> = if prog.starts_with('/') {
        vec![prog.to_owned()]
    } else {
        EXEC_SEARCH.iter().map(|d| format!("{d}/{prog}")).collect()
    };
    for cand in &candidates {
        if resolve(c, cand).is_some() || resolve(c, &usr_path(cand)).is_some() {
            return None;
        }
    }
    let under_usr = candidates.iter().any(|p| usr_path(p).starts_with("/usr/"));
    let lint = |severity, what: String| {
        Some(Lint {
            severity,
            path: unit.to_owned(),
            what,
        })
    };
    match base {
        Some(b) if candidates.iter().any(|p| b.has(p)) => None,
        Some(b) if under_usr => lint(
            Severity::Error,
            format!(
                "{key}={prog}: the program is in neither the extension nor {}: the unit will fail",
                b.label
            ),
        ),
        _ if !under_usr => lint(
            Severity::Warning,
            format!(
                "{key}={prog}: the program is not in the extension, and Flatcar's /usr cannot provide it there; it must come from elsewhere (Ignition, another extension)"
            ),
        ),
        _ => lint(
            Severity::Warning,
            format!(
                "{key}={prog}: the program is not in the extension; without --target flatbake cannot tell whether Flatcar has it"
            ),
        ),
    }
}

fn shadow_lints(c: &Contents, base: Option<&Base>, out: &mut Vec<Lint>) {
    let Some(b) = base else {
        let shadows: Vec<&String> = c
            .entries
            .keys()
            .filter(|p| p.starts_with("/usr/sbin/") || p.starts_with("/usr/bin/"))
            .take(1)
            .collect();
        if let Some(p) = shadows.first() {
            out.push(Lint {
                severity: Severity::Warning,
                path: (*p).clone(),
                what:
                    "without --target flatbake cannot tell whether files here shadow Flatcar's own"
                        .into(),
            });
        }
        return;
    };
    for (p, k) in &c.entries {
        if !p.starts_with("/usr/") || p.starts_with("/usr/lib/extension-release.d") {
            continue;
        }
        let Some(bk) = b.paths.get(p) else { continue };
        match (k, bk) {
            (Kind::Dir, BaseKind::Dir) => {}
            (Kind::Dir, _) => out.push(Lint {
                severity: Severity::Error,
                path: p.clone(),
                what: format!(
                    "a directory where Flatcar has a {}: merged, it hides Flatcar's {p} and everything reached through it",
                    if *bk == BaseKind::Symlink { "symlink" } else { "file" }
                ),
            }),
            (_, BaseKind::Dir) => out.push(Lint {
                severity: Severity::Error,
                path: p.clone(),
                what: format!(
                    "shadows Flatcar's directory {p}: merged, everything Flatcar has under it disappears"
                ),
            }),
            _ => out.push(Lint {
                severity: Severity::Warning,
                path: p.clone(),
                what: format!("shadows Flatcar's own {p}: merged, the extension's replaces it"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_settings_and_helpers() {
        let s = unit_settings("[Unit]\n# c\nUpholds=a.service \\\n  b.service\n[Service]\nExecStart=-/usr/bin/x --y\n");
        assert_eq!(
            s,
            vec![
                ("Upholds".into(), "a.service  b.service".into()),
                ("ExecStart".into(), "-/usr/bin/x --y".into())
            ]
        );
        assert_eq!(usr_path("/bin/sh"), "/usr/bin/sh");
        assert_eq!(usr_path("/opt/x"), "/opt/x");
        assert_eq!(
            template_of("getty@tty1.service").as_deref(),
            Some("getty@.service")
        );
        assert_eq!(normalize("/usr/bin/../lib/./x"), "/usr/lib/x");
    }
}
