//! Judging a whole sysext image the way systemd-sysext will on a given target: its
//! extension-release (present, rightly named, compatible with the target's os-release,
//! by [`super::compat`]), and its content (nothing outside `/usr` and `/opt`, no
//! `/usr/lib/os-release`, everything owned by root). Shared by `flatbake sysext check`
//! and the pre-flight of `flatbake bake`.

use super::compat::{self, TargetOs};
use super::erofs::Erofs;
use super::image::{self, Format, ImageError, SysextImage, RELEASE_DIR};
use super::pack::MERGED_TOPS;
use crate::arch::Arch;
use std::io::BufReader;
use std::path::Path;

/// The host's os-release; an extension must not carry one.
const OS_RELEASE: &str = "/usr/lib/os-release";

/// How many offending paths a problem message names before it summarises.
const EXAMPLES: usize = 3;

/// Problems with an opened image's extension-release for extension `name`.
pub fn release_problems(img: &SysextImage, name: &str, target: &TargetOs) -> Vec<String> {
    match &img.release {
        None => {
            let found = if img.release_names.is_empty() {
                "it has none".to_owned()
            } else {
                format!(
                    "it has {}; systemd will refuse it under the name {name}",
                    img.release_names
                        .iter()
                        .map(|n| format!("extension-release.{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            vec![format!(
                "no {RELEASE_DIR}/extension-release.{name} ({found})"
            )]
        }
        Some(rel) => compat::problems(rel, target),
    }
}

/// One entry of an image: absolute path and owner.
struct Node {
    path: String,
    uid: u32,
    gid: u32,
}

/// Problems with what an image holds: entries outside `/usr` and `/opt` (systemd-sysext
/// does not merge them), a `/usr/lib/os-release` (systemd-sysext refuses to merge an
/// extension that carries one: it would replace the host's), and entries not owned by
/// root (they would show up on the host owned by whoever has that id there).
pub fn content_problems(path: &Path, format: Format) -> Result<Vec<String>, ImageError> {
    let nodes = match format {
        Format::Squashfs => squashfs_nodes(path)?,
        Format::Erofs => erofs_nodes(path)?,
    };
    Ok(judge(&nodes))
}

fn judge(nodes: &[Node]) -> Vec<String> {
    let mut out = Vec::new();
    let mut outside: Vec<&str> = Vec::new();
    for n in nodes {
        let top = n
            .path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("");
        if !top.is_empty() && !MERGED_TOPS.contains(&top) && !outside.contains(&top) {
            outside.push(top);
        }
    }
    if !outside.is_empty() {
        out.push(format!(
            "holds {} outside /usr and /opt, which systemd-sysext does not merge",
            outside
                .iter()
                .map(|t| format!("/{t}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if nodes.iter().any(|n| n.path == OS_RELEASE) {
        out.push(format!(
            "holds {OS_RELEASE}, which systemd-sysext refuses in an extension (remove it; the extension's own metadata goes in {RELEASE_DIR}/extension-release.NAME)"
        ));
    }
    let not_root: Vec<&Node> = nodes.iter().filter(|n| n.uid != 0 || n.gid != 0).collect();
    if let Some(first) = not_root.first() {
        let examples: Vec<String> = not_root
            .iter()
            .take(EXAMPLES)
            .map(|n| format!("{} ({}:{})", n.path, n.uid, n.gid))
            .collect();
        let more = not_root.len().saturating_sub(EXAMPLES);
        out.push(format!(
            "{} not owned by root:root: {}{}; the host would see them owned by whoever has uid {} there (build with root ownership, e.g. mksquashfs -all-root)",
            if not_root.len() == 1 { "1 entry is".to_owned() } else { format!("{} entries are", not_root.len()) },
            examples.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() },
            first.uid
        ));
    }
    out
}

fn squashfs_nodes(path: &Path) -> Result<Vec<Node>, ImageError> {
    let io = |source| ImageError::Io {
        path: path.to_owned(),
        source,
    };
    let file = BufReader::new(crate::input::open_regular(path).map_err(io)?);
    let fs = backhand::FilesystemReader::from_reader(file).map_err(|e| ImageError::Squashfs {
        path: path.to_owned(),
        what: e.to_string(),
    })?;
    Ok(fs
        .files()
        .map(|n| Node {
            path: n.fullpath.to_string_lossy().into_owned(),
            uid: n.header.uid,
            gid: n.header.gid,
        })
        .collect())
}

/// Every entry of an EROFS image, walked with the reader's bounds (each directory once,
/// limited depth, path length and entry count).
fn erofs_nodes(path: &Path) -> Result<Vec<Node>, ImageError> {
    let er = |source| ImageError::Erofs {
        path: path.to_owned(),
        source,
    };
    let file =
        BufReader::new(
            crate::input::open_regular(path).map_err(|source| ImageError::Io {
                path: path.to_owned(),
                source,
            })?,
        );
    let mut fs = Erofs::open(file).map_err(er)?;
    let mut out = Vec::new();
    fs.walk(|p, ino| {
        out.push(Node {
            path: p.to_owned(),
            uid: ino.uid,
            gid: ino.gid,
        })
    })
    .map_err(er)?;
    Ok(out)
}

/// The extension name a file is meant for: the `extension-release.X` whose `X` the file
/// name is or starts with (`X-...`), else `NAME` of a bakery-style `NAME-VERSION-ARCH.raw`,
/// else the file name without `.raw`.
pub fn infer_name(file_name: &str, release_names: &[String]) -> String {
    let stem = file_name.strip_suffix(".raw").unwrap_or(file_name);
    if release_names.iter().any(|n| n == stem) {
        return stem.to_owned();
    }
    if let Some(n) = release_names
        .iter()
        .filter(|n| {
            stem.strip_prefix(n.as_str())
                .is_some_and(|r| r.starts_with('-'))
        })
        .max_by_key(|n| n.len())
    {
        return n.clone();
    }
    if let Some((_, rest)) = split_arch(stem) {
        if let Some((name, _version)) = rest.rsplit_once('-') {
            if !name.is_empty() {
                return name.to_owned();
            }
        }
    }
    stem.to_owned()
}

/// `NAME-VERSION-ARCH` → (arch, `NAME-VERSION`).
fn split_arch(stem: &str) -> Option<(Arch, &str)> {
    for a in [Arch::X86_64, Arch::Arm64] {
        if let Some(rest) = stem
            .strip_suffix(a.systemd_name())
            .and_then(|r| r.strip_suffix('-'))
        {
            return Some((a, rest));
        }
    }
    None
}

/// The architecture a bakery-style file name declares (`...-x86-64.raw`, `...-arm64.raw`).
pub fn arch_from_file_name(file_name: &str) -> Option<Arch> {
    split_arch(file_name.strip_suffix(".raw").unwrap_or(file_name)).map(|(a, _)| a)
}

/// The result of checking one image.
#[derive(Clone, Debug)]
pub struct CheckReport {
    pub image: SysextImage,
    pub name: String,
    /// The architecture checked against, and where it came from.
    pub arch: Option<(Arch, &'static str)>,
    /// The target OS checked against.
    pub target: TargetOs,
    pub problems: Vec<String>,
}

/// Check `path` as extension `name` (inferred from the file name when `None`) for
/// `target` (any current Flatcar when `None`) of architecture `arch` (the target's, else
/// from the file name when `None`).
pub fn check_image(
    path: &Path,
    name: Option<&str>,
    arch: Option<Arch>,
    target: Option<TargetOs>,
) -> Result<CheckReport, ImageError> {
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match name {
        Some(n) => n.to_owned(),
        None => {
            let probe = image::open(path, "")?;
            infer_name(&file_name, &probe.release_names)
        }
    };
    let img = image::open(path, &name)?;
    let target_arch = target
        .as_ref()
        .and_then(|t| t.arch.as_deref())
        .and_then(|a| a.parse::<Arch>().ok());
    let arch = match (arch, target_arch) {
        (Some(a), _) => Some((a, "--arch")),
        (None, Some(a)) => Some((a, "target")),
        (None, None) => arch_from_file_name(&file_name).map(|a| (a, "file name")),
    };
    let mut target = target.unwrap_or_else(|| TargetOs::any_flatcar(None));
    target.arch = arch.map(|(a, _)| a.systemd_name().to_owned());
    let mut problems = Vec::new();
    if let Some(p) = super::name_problem(&name) {
        problems.push(p);
    }
    problems.extend(release_problems(&img, &name, &target));
    problems.extend(content_problems(path, img.format)?);
    Ok(CheckReport {
        image: img,
        name,
        arch,
        target,
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str, uid: u32) -> Node {
        Node {
            path: p.into(),
            uid,
            gid: uid,
        }
    }

    #[test]
    fn judges_content() {
        assert!(judge(&[n("/", 0), n("/usr", 0), n("/usr/bin/x", 0), n("/opt/y", 0)]).is_empty());
        let p = judge(&[
            n("/", 0),
            n("/etc", 0),
            n("/etc/x", 0),
            n("/var", 0),
            n("/usr", 0),
        ]);
        assert_eq!(
            p,
            vec!["holds /etc, /var outside /usr and /opt, which systemd-sysext does not merge"]
        );
        let p = judge(&[
            n("/", 0),
            n("/usr", 1000),
            n("/usr/a", 1000),
            n("/usr/b", 0),
            n("/usr/c", 5),
            n("/usr/d", 5),
        ]);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with(
                "4 entries are not owned by root:root: /usr (1000:1000), /usr/a (1000:1000), /usr/c (5:5) and 1 more"
            ),
            "{}",
            p[0]
        );
    }

    #[test]
    fn refuses_os_release() {
        let p = judge(&[
            n("/", 0),
            n("/usr", 0),
            n("/usr/lib", 0),
            n("/usr/lib/os-release", 0),
        ]);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("/usr/lib/os-release"), "{}", p[0]);
        assert!(judge(&[n("/usr/lib/os-release.d", 0)]).is_empty());
    }

    #[test]
    fn infers_names() {
        let rn = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            infer_name("wasmtime-v24.0.0-x86-64.raw", &rn(&["wasmtime"])),
            "wasmtime"
        );
        assert_eq!(
            infer_name("docker-flatcar.raw", &rn(&["docker-flatcar"])),
            "docker-flatcar"
        );
        assert_eq!(
            infer_name("misnamed-1.0-x86-64.raw", &rn(&["othername"])),
            "misnamed"
        );
        assert_eq!(
            infer_name("containerd-docker-1.7-arm64.raw", &rn(&[])),
            "containerd-docker"
        );
        assert_eq!(infer_name("plain.raw", &rn(&[])), "plain");
        assert_eq!(arch_from_file_name("x-1-arm64.raw"), Some(Arch::Arm64));
        assert_eq!(arch_from_file_name("x-1-x86-64.raw"), Some(Arch::X86_64));
        assert_eq!(arch_from_file_name("x.raw"), None);
    }
}
