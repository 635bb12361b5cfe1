//! Getting upstream release files for recipes: HTTP(S) downloads (the release module's
//! downloader: retries, resume) through an
//! optional mirror, sha256 verification against a checksum file, a GitHub release asset
//! digest or a pinned value, and unpacking `.tar.gz`/`.tgz`/`.tar.xz`/`.tar.zst` and
//! `.zip` archives.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Text responses (checksum files, release listings) larger than this are refused.
const MAX_TEXT: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {url}: {what}")]
    Http { url: String, what: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{url}: sha256 mismatch: expected {expected}, got {actual}")]
    Mismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{url}: {what}")]
    Checksum { url: String, what: String },
    #[error("{archive}: {what}")]
    Archive { archive: String, what: String },
}

/// Where downloads come from: upstream, or a mirror that holds `HOST/PATH` for every
/// upstream `https://HOST/PATH` (tests use a loopback server).
#[derive(Clone)]
pub struct Fetcher {
    dl: std::sync::Arc<crate::release::download::Downloader>,
    mirror: Option<String>,
}

impl Fetcher {
    pub fn new(mirror: Option<&str>) -> Result<Fetcher, FetchError> {
        let dl = crate::release::download::Downloader::new(
            crate::release::download::DownloadOptions::default(),
        )
        .map_err(|e| FetchError::Http {
            url: String::new(),
            what: e.to_string(),
        })?;
        Ok(Fetcher {
            dl: std::sync::Arc::new(dl),
            mirror: mirror
                .map(|m| m.trim_end_matches('/').to_owned())
                .filter(|m| !m.is_empty()),
        })
    }

    /// The URL actually fetched for upstream `url`.
    pub fn resolve(&self, url: &str) -> String {
        match &self.mirror {
            None => url.to_owned(),
            Some(m) => {
                let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
                format!("{m}/{rest}")
            }
        }
    }

    /// A small text resource.
    pub fn text(&self, url: &str) -> Result<String, FetchError> {
        let real = self.resolve(url);
        let text = self.dl.get_text(&real).map_err(|e| FetchError::Http {
            url: real.clone(),
            what: e.to_string(),
        })?;
        if text.len() as u64 > MAX_TEXT {
            return Err(FetchError::Http {
                url: real,
                what: format!("over {MAX_TEXT} bytes"),
            });
        }
        Ok(text)
    }

    /// Download `url` to `dest`, returning its sha256.
    pub fn download(&self, url: &str, dest: &Path) -> Result<String, FetchError> {
        let real = self.resolve(url);
        self.dl
            .download(&real, dest)
            .map_err(|e| FetchError::Http {
                url: real.clone(),
                what: e.to_string(),
            })?;
        crate::release::verify::sha256_file(dest).map_err(|e| FetchError::Http {
            url: real,
            what: e.to_string(),
        })
    }
}

/// Find the sha256 of `file` in a checksum file: `sha256sum` lines (`HEX  NAME` or
/// `HEX *NAME`), or a file holding just one hex digest (as dl.k8s.io serves).
pub fn sum_for(text: &str, file: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for l in &lines {
        let mut it = l.split_whitespace();
        let (Some(hex), Some(name)) = (it.next(), it.next()) else {
            continue;
        };
        let name = name.trim_start_matches('*');
        let base = name.rsplit('/').next().unwrap_or(name);
        if (name == file || base == file) && is_sha256(hex) {
            return Some(hex.to_ascii_lowercase());
        }
    }
    match lines.as_slice() {
        [one] if is_sha256(one) => Some(one.to_ascii_lowercase()),
        _ => None,
    }
}

pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// The `sha256:` digest GitHub records for release asset `file`, from the JSON of
/// `GET /repos/OWNER/REPO/releases/tags/TAG`.
pub fn github_digest(json: &str, file: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("not GitHub release JSON: {e}"))?;
    let assets = v
        .get("assets")
        .and_then(|a| a.as_array())
        .ok_or("no assets in the release")?;
    let asset = assets
        .iter()
        .find(|a| a.get("name").and_then(|n| n.as_str()) == Some(file))
        .ok_or_else(|| format!("the release has no asset {file}"))?;
    let digest = asset.get("digest").and_then(|d| d.as_str()).ok_or_else(|| {
        format!("GitHub records no digest for {file} (assets uploaded before mid-2025 have none); pass --sha256")
    })?;
    match digest.strip_prefix("sha256:") {
        Some(h) if is_sha256(h) => Ok(h.to_ascii_lowercase()),
        _ => Err(format!("unexpected digest '{digest}' for {file}")),
    }
}

/// How a download's content is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveKind {
    TarGz,
    TarXz,
    Tar,
    TarZst,
    Zip,
    /// The download is the file itself.
    Plain,
}

impl ArchiveKind {
    pub fn from_url(url: &str) -> ArchiveKind {
        let u = url.split(['?', '#']).next().unwrap_or(url);
        if u.ends_with(".tar.gz") || u.ends_with(".tgz") {
            ArchiveKind::TarGz
        } else if u.ends_with(".tar.xz") || u.ends_with(".txz") {
            ArchiveKind::TarXz
        } else if u.ends_with(".tar.zst") || u.ends_with(".tzst") {
            ArchiveKind::TarZst
        } else if u.ends_with(".zip") {
            ArchiveKind::Zip
        } else if u.ends_with(".tar") {
            ArchiveKind::Tar
        } else {
            ArchiveKind::Plain
        }
    }
}

/// Unpack a tar (or zip) archive into `dest`, refusing entries that would land outside it.
/// Only regular files, directories and symlinks are extracted; ownership is not kept.
pub fn unpack(archive: &Path, kind: ArchiveKind, dest: &Path) -> Result<(), FetchError> {
    let name = archive.display().to_string();
    let bad = |what: String| FetchError::Archive {
        archive: name.clone(),
        what,
    };
    let f = std::io::BufReader::new(crate::input::open_regular(archive).map_err(|source| {
        FetchError::Io {
            path: archive.to_owned(),
            source,
        }
    })?);
    let reader: Box<dyn Read> = match kind {
        ArchiveKind::TarGz => Box::new(flate2::read::GzDecoder::new(f)),
        ArchiveKind::TarXz => Box::new(liblzma::read::XzDecoder::new(f)),
        ArchiveKind::Tar => Box::new(f),
        ArchiveKind::TarZst => {
            Box::new(zstd::stream::read::Decoder::new(f).map_err(|e| bad(e.to_string()))?)
        }
        ArchiveKind::Zip => {
            drop(f);
            return super::zip::unpack(archive, dest).map_err(|e| bad(e.to_string()));
        }
        ArchiveKind::Plain => return Err(bad("not an archive".into())),
    };
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_unpack_xattrs(false);
    tar.set_overwrite(true);
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        if path.components().any(|c| {
            matches!(
                c,
                Component::ParentDir | Component::RootDir | Component::Prefix(_)
            )
        }) {
            return Err(bad(format!(
                "entry {} points outside the archive",
                path.display()
            )));
        }
        let t = entry.header().entry_type();
        if !(t.is_file() || t.is_dir() || t.is_symlink() || t.is_hard_link()) {
            continue;
        }
        entry
            .unpack_in(dest)
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn finds_sums() {
        let text = format!("{H}  k3s\n{}  k3s-arm64\n", H.replace('0', "f"));
        assert_eq!(sum_for(&text, "k3s").as_deref(), Some(H));
        assert!(sum_for(&text, "k3s-arm64").unwrap().starts_with('f'));
        assert_eq!(sum_for(&text, "other"), None);
        assert_eq!(sum_for(&format!("{H}\n"), "kubelet").as_deref(), Some(H));
        assert_eq!(
            sum_for(&format!("{H} *dir/x.tgz\n"), "x.tgz").as_deref(),
            Some(H)
        );
        assert_eq!(sum_for("nonsense\n", "x"), None);
    }

    #[test]
    fn reads_github_digests() {
        let j =
            format!(r#"{{"assets":[{{"name":"a.tar.xz","digest":"sha256:{H}"}},{{"name":"b"}}]}}"#);
        assert_eq!(github_digest(&j, "a.tar.xz").unwrap(), H);
        assert!(github_digest(&j, "b").unwrap_err().contains("no digest"));
        assert!(github_digest(&j, "c").unwrap_err().contains("no asset"));
        assert!(github_digest("<html>", "c").is_err());
    }

    #[test]
    fn mirrors_and_kinds() {
        let f = Fetcher::new(Some("http://127.0.0.1:9/")).unwrap();
        assert_eq!(
            f.resolve("https://dl.k8s.io/release/v1/kubelet"),
            "http://127.0.0.1:9/dl.k8s.io/release/v1/kubelet"
        );
        assert_eq!(
            Fetcher::new(None).unwrap().resolve("https://x/y"),
            "https://x/y"
        );
        assert_eq!(
            ArchiveKind::from_url("https://x/docker-27.0.1.tgz"),
            ArchiveKind::TarGz
        );
        assert_eq!(
            ArchiveKind::from_url("https://x/w.tar.xz"),
            ArchiveKind::TarXz
        );
        assert_eq!(
            ArchiveKind::from_url("https://x/kubelet"),
            ArchiveKind::Plain
        );
    }

    #[test]
    fn refuses_escaping_entries() {
        let d = tempfile::tempdir().unwrap();
        let tarball = d.path().join("evil.tar");
        {
            let mut b = tar::Builder::new(std::fs::File::create(&tarball).unwrap());
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            // set_path refuses "..", so write the name bytes directly
            h.as_gnu_mut().unwrap().name[..7].copy_from_slice(b"../evil");
            h.set_cksum();
            b.append(&h, &b"x"[..]).unwrap();
            b.finish().unwrap();
        }
        let out = d.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let e = unpack(&tarball, ArchiveKind::Tar, &out).unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
        assert!(!d.path().join("evil").exists());
    }
}
