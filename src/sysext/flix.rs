//! Flix: dynamically linked programs from a foreign root filesystem (e.g. a container
//! image, see [`super::oci`]) made to run on Flatcar from a sysext. Each named binary and
//! its shared-library closure (ELF `DT_NEEDED`, found through `DT_RUNPATH`/`DT_RPATH`,
//! the root's `/etc/ld.so.conf` and the usual library directories, with symlinks resolved
//! inside the root) are copied into a private prefix `/usr/lib/NAME/{bin,lib}`; the
//! binaries' ELF interpreter (`PT_INTERP`) and every object's run path are rewritten to
//! that prefix with `patchelf`, and the binaries are exposed as symlinks under
//! `/usr/bin` (or where `SRC:DST` says). Static binaries are copied as they are.

use goblin::elf::Elf;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum FlixError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: not an ELF file we can read: {what}")]
    Elf { path: PathBuf, what: String },
    #[error(transparent)]
    Tool(#[from] crate::tools::ToolError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FlixError + '_ {
    move |source| FlixError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `SRC[:DST]`: a binary in the root filesystem and where it appears in the sysext
/// (default `/usr/bin/BASENAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinSpec {
    pub src: String,
    pub dst: String,
}

impl std::str::FromStr for BinSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (src, dst) = match s.split_once(':') {
            Some((a, b)) => (a.to_owned(), b.to_owned()),
            None => {
                let base = s.rsplit('/').next().unwrap_or(s);
                (s.to_owned(), format!("/usr/bin/{base}"))
            }
        };
        for p in [&src, &dst] {
            if !p.starts_with('/')
                || Path::new(p)
                    .components()
                    .any(|c| matches!(c, Component::ParentDir))
            {
                return Err(format!("'{s}': paths must be absolute, without '..'"));
            }
        }
        if !(dst.starts_with("/usr/") || dst.starts_with("/opt/")) {
            return Err(format!(
                "'{s}': {dst} must lie under /usr or /opt (systemd-sysext merges nothing else)"
            ));
        }
        Ok(BinSpec { src, dst })
    }
}

/// What went into the tree.
#[derive(Clone, Debug, Default)]
pub struct Flixed {
    pub prefix: String,
    pub binaries: Vec<String>,
    /// Libraries by soname, with the root path each came from.
    pub libraries: BTreeMap<String, String>,
    pub interpreter: Option<String>,
}

/// Resolve `p` inside `root`, following symlinks (absolute ones relative to `root`),
/// never leaving it. Returns the real path on the host.
pub fn resolve_in(root: &Path, p: &str) -> Option<PathBuf> {
    let mut cur = PathBuf::new(); // relative to root
    let mut todo: Vec<String> = p
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .rev()
        .collect();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let next = cur.join(&c);
        let host = root.join(&next);
        let m = std::fs::symlink_metadata(&host).ok()?;
        if m.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let t = std::fs::read_link(&host).ok()?;
            let t = t.to_str()?.to_owned();
            if t.starts_with('/') {
                cur = PathBuf::new();
            }
            todo.extend(
                t.split('/')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .rev(),
            );
        } else {
            cur = next;
        }
    }
    Some(root.join(cur))
}

fn ld_so_conf_dirs(root: &Path, file: &str, depth: u32, out: &mut Vec<String>) {
    let Some(p) = resolve_in(root, file) else {
        return;
    };
    let Ok(text) = std::fs::read_to_string(p) else {
        return;
    };
    for l in text.lines().map(str::trim) {
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(pat) = l.strip_prefix("include ") {
            if depth > 4 {
                continue;
            }
            let pat = pat.trim();
            let (dir, glob) = pat.rsplit_once('/').unwrap_or(("/etc", pat));
            if let Some(d) = resolve_in(root, dir) {
                let mut names: Vec<String> = std::fs::read_dir(d)
                    .map(|rd| {
                        rd.flatten()
                            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                names.sort();
                for n in names
                    .into_iter()
                    .filter(|n| super::recipe::glob_match(glob, n))
                {
                    ld_so_conf_dirs(root, &format!("{dir}/{n}"), depth + 1, out);
                }
            }
        } else if l.starts_with('/') {
            out.push(l.to_owned());
        }
    }
}

/// The library directories of `root`: ld.so.conf, then the usual ones.
pub fn library_dirs(root: &Path) -> Vec<String> {
    let mut v = Vec::new();
    ld_so_conf_dirs(root, "/etc/ld.so.conf", 0, &mut v);
    for d in [
        "/lib64",
        "/usr/lib64",
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib/aarch64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/lib",
        "/usr/lib",
        "/usr/local/lib",
    ] {
        v.push(d.to_owned());
    }
    v.dedup();
    v
}

struct ElfInfo {
    interp: Option<String>,
    needed: Vec<String>,
    runpath: Vec<String>,
}

fn elf_info(path: &Path) -> Result<ElfInfo, FlixError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let e = Elf::parse(&bytes).map_err(|e| FlixError::Elf {
        path: path.to_owned(),
        what: e.to_string(),
    })?;
    let mut runpath: Vec<String> = Vec::new();
    for r in e.runpaths.iter().chain(e.rpaths.iter()) {
        runpath.extend(r.split(':').filter(|s| !s.is_empty()).map(str::to_owned));
    }
    Ok(ElfInfo {
        interp: e.interpreter.map(str::to_owned),
        needed: e.libraries.iter().map(|s| (*s).to_owned()).collect(),
        runpath,
    })
}

/// Build the flix tree for extension `name` from `rootfs` into `out` (a sysext source
/// directory: `usr/...`).
pub fn flix(rootfs: &Path, name: &str, bins: &[BinSpec], out: &Path) -> Result<Flixed, FlixError> {
    let prefix = format!("/usr/lib/{name}");
    let pbin = out.join(prefix.trim_start_matches('/')).join("bin");
    let plib = out.join(prefix.trim_start_matches('/')).join("lib");
    std::fs::create_dir_all(&pbin).map_err(io(&pbin))?;
    std::fs::create_dir_all(&plib).map_err(io(&plib))?;
    let dirs = library_dirs(rootfs);
    let mut f = Flixed {
        prefix: prefix.clone(),
        ..Flixed::default()
    };
    // (soname, root path) still to copy and scan
    let mut queue: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut patch_bins = Vec::new();
    for b in bins {
        let host = resolve_in(rootfs, &b.src)
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                FlixError::Invalid(format!("{}: not a file in {}", b.src, rootfs.display()))
            })?;
        let info = elf_info(&host)?;
        let base = b.dst.rsplit('/').next().unwrap_or(&b.dst).to_owned();
        let dst = pbin.join(&base);
        if dst.exists() {
            return Err(FlixError::Invalid(format!("two binaries named {base}")));
        }
        std::fs::copy(&host, &dst).map_err(io(&dst))?;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).map_err(io(&dst))?;
        let link = out.join(b.dst.trim_start_matches('/'));
        if let Some(p) = link.parent() {
            std::fs::create_dir_all(p).map_err(io(p))?;
        }
        std::os::unix::fs::symlink(format!("{prefix}/bin/{base}"), &link).map_err(io(&link))?;
        f.binaries.push(b.dst.clone());
        if let Some(i) = &info.interp {
            if f.interpreter.as_ref().is_some_and(|x| x != i) {
                return Err(FlixError::Invalid(format!(
                    "{}: interpreter {i} differs from {}",
                    b.src,
                    f.interpreter.as_deref().unwrap_or_default()
                )));
            }
            f.interpreter = Some(i.clone());
            patch_bins.push(dst);
        }
        let origin = parent_of(&b.src);
        for n in info.needed {
            queue.push((n, origin.clone(), expand_origin(&info.runpath, &origin)));
        }
    }
    let mut patch_libs = Vec::new();
    while let Some((soname, _from, runpath)) = queue.pop() {
        if f.libraries.contains_key(&soname) {
            continue;
        }
        let found = if soname.contains('/') {
            Some(soname.clone())
        } else {
            runpath
                .iter()
                .chain(dirs.iter())
                .map(|d| format!("{}/{soname}", d.trim_end_matches('/')))
                .find(|p| resolve_in(rootfs, p).is_some_and(|h| h.is_file()))
        };
        let Some(path) = found else {
            return Err(FlixError::Invalid(format!(
                "library {soname} not found in {} (searched {})",
                rootfs.display(),
                dirs.join(", ")
            )));
        };
        let host = resolve_in(rootfs, &path)
            .ok_or_else(|| FlixError::Invalid(format!("{path}: unresolvable")))?;
        let base = soname.rsplit('/').next().unwrap_or(&soname).to_owned();
        let dst = plib.join(&base);
        std::fs::copy(&host, &dst).map_err(io(&dst))?;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).map_err(io(&dst))?;
        f.libraries.insert(soname.clone(), path.clone());
        let info = elf_info(&host)?;
        let origin = parent_of(&path);
        for n in info.needed {
            queue.push((n, origin.clone(), expand_origin(&info.runpath, &origin)));
        }
        patch_libs.push(dst);
    }
    if let Some(i) = &f.interpreter {
        let host = resolve_in(rootfs, i)
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                FlixError::Invalid(format!("interpreter {i} not found in {}", rootfs.display()))
            })?;
        let base = i.rsplit('/').next().unwrap_or(i);
        let dst = plib.join(base);
        std::fs::copy(&host, &dst).map_err(io(&dst))?;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).map_err(io(&dst))?;
        // the interpreter itself is not patched
        patch_libs.retain(|p| p != &dst);
        let interp = format!("{prefix}/lib/{base}");
        let rpath = format!("{prefix}/lib");
        for b in &patch_bins {
            crate::tools::run(
                Command::new("patchelf")
                    .arg("--set-interpreter")
                    .arg(&interp)
                    .arg("--set-rpath")
                    .arg(&rpath)
                    .arg(b),
                "rewriting a binary's interpreter and run path (patchelf)",
            )?;
        }
        for l in &patch_libs {
            crate::tools::run(
                Command::new("patchelf")
                    .arg("--set-rpath")
                    .arg(&rpath)
                    .arg(l),
                "rewriting a library's run path (patchelf)",
            )?;
        }
    }
    Ok(f)
}

fn parent_of(p: &str) -> String {
    match p.rsplit_once('/') {
        Some(("", _)) | None => "/".into(),
        Some((d, _)) => d.to_owned(),
    }
}

fn expand_origin(runpath: &[String], origin: &str) -> Vec<String> {
    runpath
        .iter()
        .map(|r| r.replace("${ORIGIN}", origin).replace("$ORIGIN", origin))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let b: BinSpec = "/bin/busybox:/usr/bin/busybox".parse().unwrap();
        assert_eq!(b.dst, "/usr/bin/busybox");
        let b: BinSpec = "/usr/bin/b3sum".parse().unwrap();
        assert_eq!(
            (b.src.as_str(), b.dst.as_str()),
            ("/usr/bin/b3sum", "/usr/bin/b3sum")
        );
        assert!("rel".parse::<BinSpec>().is_err());
        assert!("/bin/x:/etc/x".parse::<BinSpec>().is_err());
        assert!("/bin/../x".parse::<BinSpec>().is_err());
    }

    #[test]
    fn resolves_symlinks_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::fs::write(r.join("usr/lib/libx.so.1.2"), "x").unwrap();
        std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
        std::os::unix::fs::symlink("/usr/lib/libx.so.1.2", r.join("usr/lib/libx.so.1")).unwrap();
        std::os::unix::fs::symlink("../../../../../etc/passwd", r.join("usr/lib/evil")).unwrap();
        assert_eq!(
            resolve_in(r, "/lib/libx.so.1"),
            Some(r.join("usr/lib/libx.so.1.2"))
        );
        // '..' stops at the root
        assert_eq!(resolve_in(r, "/usr/lib/evil"), None);
        std::fs::create_dir_all(r.join("etc/ld.so.conf.d")).unwrap();
        std::fs::write(
            r.join("etc/ld.so.conf"),
            "include /etc/ld.so.conf.d/*.conf\n",
        )
        .unwrap();
        std::fs::write(r.join("etc/ld.so.conf.d/a.conf"), "# c\n/opt/lib\n").unwrap();
        assert_eq!(library_dirs(r)[0], "/opt/lib");
    }
}
