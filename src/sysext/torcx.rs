//! Converting a Torcx image (`NAME:VERSION.torcx.tgz`, Flatcar's add-on format up to
//! release 3760) into a sysext tree, best effort, as the bakery's
//! `convert_torcx_image.sh` did:
//!
//! - the archive's top-level directories move under `usr/` (`bin/` → `usr/bin/`,
//!   `lib/` → `usr/lib/`; an existing `usr/` is merged), `.torcx/` is left out;
//! - `.torcx/manifest.json` (`{"kind": "image-manifest-v0", "value": {"bin": [...],
//!   "units": [...]}}`, `binaries` accepted for `bin`) says which binaries to expose
//!   under `usr/bin` and which units belong under `usr/lib/systemd/system`;
//! - in every unit and drop-in, Torcx's run-time paths are rewritten:
//!   `/run/torcx/unpack/IMAGE/` → `/usr/`, `/run/torcx/bin/` → `/usr/bin/` (also with
//!   `/var/run`); units whose `[Install]` names `WantedBy=` targets get `Upholds=`
//!   drop-ins so they start when the extension is merged.
//!
//! What cannot be converted is reported as warnings: Torcx paths left in units, and the
//! drop-ins users wrote under `/etc` (e.g. for `containerd.service`), which still point
//! at Torcx and which no conversion of the image can see.

use super::fetch::{self, ArchiveKind, FetchError};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TorcxError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Archive(#[from] FetchError),
    #[error("{archive}: not a Torcx image: {what}")]
    NotTorcx { archive: PathBuf, what: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TorcxError + '_ {
    move |source| TorcxError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What the conversion found and did.
#[derive(Clone, Debug, Default)]
pub struct Converted {
    /// Binaries exposed under `usr/bin` (paths inside the sysext).
    pub binaries: Vec<String>,
    /// Units under `usr/lib/systemd/system` (file names).
    pub units: Vec<String>,
    /// Units (and drop-ins) whose Torcx paths were rewritten.
    pub rewritten: Vec<String>,
    /// `Upholds=` drop-ins written, as `TARGET: UNIT`.
    pub upheld: Vec<String>,
    pub warnings: Vec<String>,
}

/// The paths a Torcx image's manifest lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    pub bin: Vec<String>,
    pub units: Vec<String>,
}

/// Parse `.torcx/manifest.json`.
pub fn parse_manifest(text: &str) -> Result<Manifest, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!(".torcx/manifest.json: {e}"))?;
    let value = v.get("value").unwrap_or(&v);
    let list = |keys: &[&str]| -> Result<Vec<String>, String> {
        for k in keys {
            if let Some(x) = value.get(*k) {
                let arr = x
                    .as_array()
                    .ok_or_else(|| format!(".torcx/manifest.json: '{k}' is not a list"))?;
                return arr
                    .iter()
                    .map(|e| {
                        e.as_str().map(str::to_owned).ok_or_else(|| {
                            format!(".torcx/manifest.json: '{k}' holds a non-string")
                        })
                    })
                    .collect();
            }
        }
        Ok(Vec::new())
    };
    Ok(Manifest {
        bin: list(&["bin", "binaries"])?,
        units: list(&["units"])?,
    })
}

/// Rewrite Torcx run-time paths in unit text; returns the new text and whether anything changed.
pub fn rewrite_unit(text: &str) -> (String, bool) {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut l = line.to_owned();
        for prefix in ["/var/run/torcx/", "/run/torcx/"] {
            // /run/torcx/unpack/IMAGE/x -> /usr/x
            let unpack = format!("{prefix}unpack/");
            while let Some(at) = l.find(&unpack) {
                let rest = &l[at + unpack.len()..];
                let Some(slash) = rest.find('/') else { break };
                let tail = &rest[slash + 1..];
                // the image's own usr/ was merged into the sysext's usr/
                let tail = tail.strip_prefix("usr/").unwrap_or(tail);
                l = format!("{}/usr/{}", &l[..at], tail);
            }
            l = l.replace(&format!("{prefix}bin/"), "/usr/bin/");
            // the directory alone, e.g. PATH=/run/torcx/bin:$PATH
            l = l.replace(&format!("{prefix}bin"), "/usr/bin");
        }
        out.push_str(&l);
    }
    let changed = out != text;
    (out, changed)
}

/// `WantedBy=` / `RequiredBy=` targets of a unit's `[Install]` section.
pub fn install_targets(text: &str) -> Vec<String> {
    let mut in_install = false;
    let mut out = Vec::new();
    for l in text.lines().map(str::trim) {
        if l.starts_with('[') {
            in_install = l == "[Install]";
        } else if in_install {
            if let Some((k, v)) = l.split_once('=') {
                if matches!(k.trim(), "WantedBy" | "RequiredBy" | "UpheldBy") {
                    out.extend(v.split_whitespace().map(str::to_owned));
                }
            }
        }
    }
    out
}

const UNIT_DIR: &str = "usr/lib/systemd/system";

/// Unpack `archive` and build the sysext tree in `root` (which must be empty).
pub fn convert(
    archive: &Path,
    name: &str,
    root: &Path,
    scratch: &Path,
) -> Result<Converted, TorcxError> {
    let not = |what: String| TorcxError::NotTorcx {
        archive: archive.to_owned(),
        what,
    };
    let x = scratch.join("torcx");
    std::fs::create_dir_all(&x).map_err(io(&x))?;
    let kind = match ArchiveKind::from_url(&archive.to_string_lossy()) {
        ArchiveKind::Plain => ArchiveKind::TarGz,
        k => k,
    };
    fetch::unpack(archive, kind, &x)?;
    let mpath = x.join(".torcx/manifest.json");
    let text = crate::input::read_text(&mpath, crate::input::JSON_CAP)
        .map_err(|e| not(format!("no readable .torcx/manifest.json ({e})")))?;
    let manifest = parse_manifest(&text).map_err(not)?;
    let mut c = Converted::default();

    // top-level entries move under usr/
    let usr = root.join("usr");
    std::fs::create_dir_all(&usr).map_err(io(&usr))?;
    let mut tops: Vec<_> = std::fs::read_dir(&x)
        .map_err(io(&x))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    tops.sort();
    for t in tops {
        let src = x.join(&t);
        if t == ".torcx" {
            continue;
        }
        if t == "usr" {
            merge_move(&src, &usr)?;
        } else if t == "opt" {
            merge_move(&src, &root.join("opt"))?;
        } else {
            merge_move(&src, &usr.join(&t))?;
        }
    }
    // where a manifest path landed
    let landed = |p: &str| -> PathBuf {
        let rel = p.trim_start_matches('/');
        let rel = rel.strip_prefix("usr/").unwrap_or(rel);
        usr.join(rel)
    };
    let bin = usr.join("bin");
    for b in &manifest.bin {
        let at = landed(b);
        let file = at
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !at.is_file() {
            c.warnings
                .push(format!("manifest binary {b} is not in the image; left out"));
            continue;
        }
        let mode = std::fs::metadata(&at)
            .map_err(io(&at))?
            .permissions()
            .mode();
        std::fs::set_permissions(&at, std::fs::Permissions::from_mode(mode | 0o755))
            .map_err(io(&at))?;
        if at.parent() != Some(bin.as_path()) {
            std::fs::create_dir_all(&bin).map_err(io(&bin))?;
            let link = bin.join(&file);
            if !link.exists() {
                let target = format!("/{}", at.strip_prefix(root).unwrap_or(&at).display());
                std::os::unix::fs::symlink(&target, &link).map_err(io(&link))?;
            }
        }
        c.binaries.push(format!("usr/bin/{file}"));
    }
    let units = root.join(UNIT_DIR);
    for u in &manifest.units {
        let at = landed(u);
        let file = at
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !at.is_file() {
            c.warnings
                .push(format!("manifest unit {u} is not in the image; left out"));
            continue;
        }
        if at.parent() != Some(units.as_path()) {
            std::fs::create_dir_all(&units).map_err(io(&units))?;
            std::fs::rename(&at, units.join(&file)).map_err(io(&at))?;
        }
        c.units.push(file);
    }
    // rewrite every unit and drop-in
    if units.is_dir() {
        let mut files = Vec::new();
        collect_files(&units, &mut files)?;
        files.sort();
        for f in files {
            let Ok(text) = std::fs::read_to_string(&f) else {
                continue;
            };
            let rel = f.strip_prefix(root).unwrap_or(&f).display().to_string();
            let (new, changed) = rewrite_unit(&text);
            if changed {
                std::fs::write(&f, &new).map_err(io(&f))?;
                c.rewritten.push(rel.clone());
            }
            if new.contains("/run/torcx") {
                c.warnings.push(format!(
                    "{rel} still refers to /run/torcx after rewriting; check it by hand"
                ));
            }
            let is_unit = f.parent() == Some(units.as_path());
            if is_unit {
                let unit = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                for t in install_targets(&new) {
                    let d = units.join(format!("{t}.d"));
                    std::fs::create_dir_all(&d).map_err(io(&d))?;
                    let p = d.join(format!("10-{name}-{unit}.conf"));
                    std::fs::write(&p, format!("[Unit]\nUpholds={unit}\n")).map_err(io(&p))?;
                    c.upheld.push(format!("{t}: {unit}"));
                }
            }
        }
    }
    if !c.units.is_empty() {
        c.warnings.push(format!(
            "drop-ins under /etc/systemd/system/ for {} that use Torcx paths (/run/torcx/bin, /run/torcx/unpack, ${{TORCX_BINDIR}}, \
             e.g. Flatcar's documented containerd.service.d/10-use-custom-config.conf) are not part of the image and still point at Torcx: \
             change them to /usr/bin",
            c.units.join(", ")
        ));
    }
    super::fix_dir_modes(root).map_err(io(root))?;
    Ok(c)
}

/// Move `src` to `dst`, merging into directories that exist.
fn merge_move(src: &Path, dst: &Path) -> Result<(), TorcxError> {
    let m = std::fs::symlink_metadata(src).map_err(io(src))?;
    if m.is_dir() && dst.is_dir() {
        for e in std::fs::read_dir(src).map_err(io(src))? {
            let e = e.map_err(io(src))?;
            merge_move(&e.path(), &dst.join(e.file_name()))?;
        }
        Ok(())
    } else {
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p).map_err(io(p))?;
        }
        if std::fs::symlink_metadata(dst).is_ok() {
            if dst.is_dir() {
                std::fs::remove_dir_all(dst).map_err(io(dst))?;
            } else {
                std::fs::remove_file(dst).map_err(io(dst))?;
            }
        }
        std::fs::rename(src, dst).map_err(io(dst))
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), TorcxError> {
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let t = e.file_type().map_err(io(dir))?;
        if t.is_dir() {
            collect_files(&e.path(), out)?;
        } else if t.is_file() {
            out.push(e.path());
        }
    }
    Ok(())
}

/// The version in a Torcx file name, `NAME:VERSION.torcx.tgz`.
pub fn version_from_file_name(file: &str) -> Option<String> {
    let stem = file
        .strip_suffix(".torcx.tgz")
        .or_else(|| file.strip_suffix(".torcx.tar.gz"))?;
    let v = stem.split_once(':').map(|(_, v)| v)?;
    (!v.is_empty() && !v.contains('-') && !v.contains('/')).then(|| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_torcx_paths() {
        let unit = "[Service]\nEnvironment=PATH=/run/torcx/bin:/usr/sbin\nExecStart=/run/torcx/unpack/docker/bin/containerd --config /run/torcx/unpack/docker/usr/share/containerd/config.toml\nExecStartPre=/var/run/torcx/bin/dockerd -v\n";
        let (new, changed) = rewrite_unit(unit);
        assert!(changed);
        assert_eq!(
            new,
            "[Service]\nEnvironment=PATH=/usr/bin:/usr/sbin\nExecStart=/usr/bin/containerd --config /usr/share/containerd/config.toml\nExecStartPre=/usr/bin/dockerd -v\n"
        );
        assert_eq!(rewrite_unit("[Unit]\n"), ("[Unit]\n".to_owned(), false));
    }

    #[test]
    fn manifest_and_names() {
        let m = parse_manifest(r#"{"kind":"image-manifest-v0","value":{"bin":["/bin/docker"],"units":["/lib/systemd/system/docker.service"]}}"#).unwrap();
        assert_eq!(m.bin, vec!["/bin/docker"]);
        assert_eq!(m.units, vec!["/lib/systemd/system/docker.service"]);
        let m = parse_manifest(r#"{"binaries":["/bin/x"]}"#).unwrap();
        assert_eq!(m.bin, vec!["/bin/x"]);
        assert!(parse_manifest(r#"{"value":{"bin":"x"}}"#).is_err());
        assert!(parse_manifest("nope").is_err());
        assert_eq!(
            version_from_file_name("docker:20.10.torcx.tgz").as_deref(),
            Some("20.10")
        );
        assert_eq!(version_from_file_name("docker.tgz"), None);
        assert_eq!(
            install_targets(
                "[Unit]\nWantedBy=no\n[Install]\nWantedBy=multi-user.target sockets.target\n"
            ),
            vec!["multi-user.target", "sockets.target"]
        );
    }
}
