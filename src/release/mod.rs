//! Where a Flatcar release comes from: resolve a channel or version, download the release
//! files into a cache, verify their OpenPGP signatures, and decompress the image to a
//! sparse raw file. Also sysexts from the bakery, checked against its `SHA256SUMS`.
//!
//! # Public API
//!
//! ```text
//! // What to fetch (ReleaseSpec: "alpha|beta|stable|lts|current|X.Y.Z", Arch: "x86-64|arm64")
//! let mut opts = FetchOptions::new("stable".parse()?, Arch::X86_64, cache_dir);
//! opts.urls = ReleaseUrls::from_env();           // FLATBAKE_RELEASE_URL, ..._RELEASES_JSON_URL, ..._BAKERY_URL
//! opts.keyring = None;                           // None: the embedded Flatcar image signing key
//! opts.insecure_skip_verify = false;             // true: accept unverifiable files, loudly
//!
//! pub fn resolve(opts: &FetchOptions) -> Result<ResolvedRelease, Error>;
//! pub fn fetch_release(opts: &FetchOptions) -> Result<FetchedRelease, Error>;
//! pub fn fetch_release_file(opts: &FetchOptions, release: &ResolvedRelease, name: &str)
//!     -> Result<PathBuf, Error>;                // e.g. "oem-qemu.raw", efi qcow2s; .sig-verified
//! pub fn fetch_extension(opts: &FetchOptions, name: &str, file: &str)
//!     -> Result<FetchedExtension, Error>;       // bakery NAME + FILE (NAME-VERSION-ARCH.raw)
//! ```
//!
//! [`fetch_release`] returns [`FetchedRelease`] with `image` (the sparse
//! `flatcar_production_image.bin`, which callers must copy before editing: the cache keeps
//! it for the next run), `image_bz2`, `version_txt_path`, the parsed [`VersionTxt`], and
//! `decompressed: Option<DecompressStats>` (`None` when the cache already had the image).
//!
//! # Cache layout
//!
//! ```text
//! <cache>/<board>/<version>/flatcar_production_image.bin.bz2 (+ .sig, .verified)
//! <cache>/<board>/<version>/flatcar_production_image.bin     (+ .verified)
//! <cache>/<board>/<version>/version.txt                      (+ .sig, .verified)
//! <cache>/extensions/<FILE> (+ .verified), <cache>/extensions/<NAME>.conf
//! ```
//!
//! A file appears under its final name only once complete and verified; a `<file>.verified`
//! marker (see [`cache`]) lets a later run trust it after a `stat`, so a re-run with an
//! exact version does no network access and no decompression. In-progress downloads are
//! `<file>.unverified.part` and are resumed.
//!
//! Submodules: [`channel`] (specs, versions, URLs, head resolution), [`download`] (HTTP),
//! [`verify`] (OpenPGP, checksums), [`decompress`] + [`bz2blocks`] (parallel bzip2 to sparse
//! file), [`cache`] (markers), [`progress`] (bar or log lines).

pub mod bz2blocks;
pub mod bz2decode;
pub mod cache;
pub mod channel;
pub mod decompress;
pub mod download;
pub mod progress;
pub mod verify;

use std::fs;
use std::path::PathBuf;

pub use channel::{Arch, Channel, ChannelError, ReleaseSpec, ReleaseUrls, Version, VersionTxt};
pub use decompress::{DecompressError, DecompressOptions, DecompressStats};
pub use download::{DownloadError, DownloadOptions, Downloader, RetryPolicy};
pub use progress::ProgressMode;
pub use verify::{Keyring, VerifyError};

/// The compressed production image of a release.
pub const IMAGE_BZ2: &str = "flatcar_production_image.bin.bz2";
/// The decompressed (sparse) production image in the cache.
pub const IMAGE: &str = "flatcar_production_image.bin";
/// The release's version file.
pub const VERSION_TXT: &str = "version.txt";

/// Errors of fetching a release or an extension.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Decompress(#[from] DecompressError),
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{}: says FLATCAR_VERSION={found}, expected {expected}", path.display())]
    VersionMismatch {
        path: PathBuf,
        expected: Version,
        found: Version,
    },
    #[error("invalid file name {0:?} (a plain file name is expected)")]
    BadName(String),
}

/// Where a channel's current version is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeadSource {
    /// `<release base>/<board>/current/version.txt` on the channel's server.
    #[default]
    CurrentVersionTxt,
    /// The newest matching entry of `releases.json`.
    ReleasesJson,
}

/// Everything [`fetch_release`] and friends need.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub spec: ReleaseSpec,
    pub arch: Arch,
    /// Cache root (e.g. `~/.cache/flatbake`).
    pub cache_dir: PathBuf,
    pub urls: ReleaseUrls,
    /// Trusted keys; `None` means the embedded Flatcar image signing key.
    pub keyring: Option<Keyring>,
    /// Accept files whose signature or checksum is missing or bad (warns loudly).
    pub insecure_skip_verify: bool,
    pub head_source: HeadSource,
    pub download: DownloadOptions,
    pub decompress: DecompressOptions,
}

impl FetchOptions {
    /// Defaults: URLs from the environment ([`ReleaseUrls::from_env`]), the Flatcar key,
    /// verification on, head from `current/version.txt`.
    pub fn new(spec: ReleaseSpec, arch: Arch, cache_dir: impl Into<PathBuf>) -> FetchOptions {
        FetchOptions {
            spec,
            arch,
            cache_dir: cache_dir.into(),
            urls: ReleaseUrls::from_env(),
            keyring: None,
            insecure_skip_verify: false,
            head_source: HeadSource::default(),
            download: DownloadOptions::default(),
            decompress: DecompressOptions::default(),
        }
    }

    /// The directory of one release in the cache.
    pub fn release_dir(&self, release: &ResolvedRelease) -> PathBuf {
        self.cache_dir
            .join(release.arch.board())
            .join(release.version.to_string())
    }
}

/// A release pinned to a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedRelease {
    /// The channel whose server is used.
    pub channel: Channel,
    pub arch: Arch,
    pub version: Version,
}

/// A fetched, verified and decompressed release.
#[derive(Debug, Clone)]
pub struct FetchedRelease {
    pub release: ResolvedRelease,
    pub version_txt: VersionTxt,
    /// `<cache>/<board>/<version>`.
    pub dir: PathBuf,
    /// Sparse raw image (keep it pristine: copy before editing).
    pub image: PathBuf,
    pub image_bz2: PathBuf,
    pub version_txt_path: PathBuf,
    /// False only when `insecure_skip_verify` let an unverified file through.
    pub verified: bool,
    /// Decompression statistics; `None` when the cached image was reused.
    pub decompressed: Option<DecompressStats>,
}

/// A sysext fetched from the bakery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedExtension {
    /// `<cache>/extensions/<FILE>`, checked against `SHA256SUMS`.
    pub raw: PathBuf,
    /// `<cache>/extensions/<NAME>.conf`, when the bakery has one.
    pub conf: Option<PathBuf>,
    /// SHA-256 of the image.
    pub sha256: String,
}

/// Network and trust for one call.
struct Ctx<'a> {
    opts: &'a FetchOptions,
    dl: Downloader,
    keyring: Keyring,
}

impl<'a> Ctx<'a> {
    fn new(opts: &'a FetchOptions) -> Result<Ctx<'a>, Error> {
        let keyring = match &opts.keyring {
            Some(k) => k.clone(),
            None => Keyring::flatcar()?,
        };
        Ok(Ctx {
            opts,
            dl: Downloader::new(opts.download.clone())?,
            keyring,
        })
    }
}

fn warn_insecure(what: &str) {
    eprintln!("flatbake: WARNING: {what}");
    eprintln!("flatbake: WARNING: continuing ONLY because verification is disabled (insecure)");
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\\')
        || name.contains('\0')
    {
        return Err(Error::BadName(name.to_string()));
    }
    Ok(())
}

fn resolve_with(ctx: &Ctx<'_>) -> Result<ResolvedRelease, Error> {
    let o = ctx.opts;
    match o.spec {
        ReleaseSpec::Exact(version) => Ok(ResolvedRelease {
            channel: Channel::of_version(&version)?,
            arch: o.arch,
            version,
        }),
        ReleaseSpec::Current(channel) => {
            let version = match o.head_source {
                HeadSource::CurrentVersionTxt => {
                    let url = o.urls.release_file(channel, o.arch, "current", VERSION_TXT);
                    VersionTxt::parse(&ctx.dl.get_text(&url)?, &url)?.version
                }
                HeadSource::ReleasesJson => {
                    let url = &o.urls.releases_json;
                    let text = ctx.dl.get_text(url)?;
                    channel::latest_from_releases_json(&text, channel, o.arch, url)?
                }
            };
            Ok(ResolvedRelease {
                channel,
                arch: o.arch,
                version,
            })
        }
        ReleaseSpec::LtsStream(year) => {
            // each LTS stream has its own head on the lts server: <board>/current-YEAR/
            let url = o.urls.release_file(
                Channel::Lts,
                o.arch,
                &format!("current-{year}"),
                VERSION_TXT,
            );
            let version = VersionTxt::parse(&ctx.dl.get_text(&url)?, &url)?.version;
            Ok(ResolvedRelease {
                channel: Channel::Lts,
                arch: o.arch,
                version,
            })
        }
    }
}

/// Pins the spec to a version (network access only for a channel's current release).
pub fn resolve(opts: &FetchOptions) -> Result<ResolvedRelease, Error> {
    resolve_with(&Ctx::new(opts)?)
}

/// Downloads release file `name` and its `.sig`, verifies it, and places it in the cache
/// (reusing a verified cached copy). Returns the path and whether it was verified.
fn fetch_verified(
    ctx: &Ctx<'_>,
    release: &ResolvedRelease,
    name: &str,
) -> Result<(PathBuf, bool), Error> {
    check_name(name)?;
    let o = ctx.opts;
    let path = o.release_dir(release).join(name);
    if let Some(m) = cache::valid_marker(&path, o.insecure_skip_verify) {
        return Ok((path, m.verified_by != cache::BY_INSECURE));
    }
    cache::remove_with_marker(&path);
    let version = release.version.to_string();
    let url = o
        .urls
        .release_file(release.channel, release.arch, &version, name);
    let sig_url = format!("{url}.sig");
    let sig_path = download::with_suffix(&path, ".sig");
    let staging = download::with_suffix(&path, ".unverified");

    let sig = match ctx.dl.download(&sig_url, &sig_path) {
        Ok(_) => Some(sig_path.clone()),
        Err(e) if o.insecure_skip_verify => {
            warn_insecure(&format!("no signature for {url}: {e}"));
            None
        }
        Err(e) => return Err(e.into()),
    };
    ctx.dl.download(&url, &staging)?;
    let (verified_by, sha256) = match sig {
        Some(sig) => match verify::verify_detached(&ctx.keyring, &staging, &sig) {
            Ok(good) => (format!("openpgp:{}", good.signer), good.sha256),
            Err(e) if o.insecure_skip_verify => {
                warn_insecure(&format!("{url}: {e}"));
                (cache::BY_INSECURE.to_string(), String::new())
            }
            Err(e) => {
                let _ = fs::remove_file(&staging);
                let _ = fs::remove_file(&sig);
                return Err(e.into());
            }
        },
        None => (cache::BY_INSECURE.to_string(), String::new()),
    };
    fs::rename(&staging, &path).map_err(|err| Error::Io {
        path: path.clone(),
        err,
    })?;
    cache::write_marker(&path, &verified_by, &sha256).map_err(|err| Error::Io {
        path: cache::marker_path(&path),
        err,
    })?;
    Ok((path, verified_by != cache::BY_INSECURE))
}

/// Resolves the spec, fetches and verifies `version.txt` and the image, and decompresses
/// the image to a sparse file in the cache (each step skipped when the cache has it).
pub fn fetch_release(opts: &FetchOptions) -> Result<FetchedRelease, Error> {
    let ctx = Ctx::new(opts)?;
    let release = resolve_with(&ctx)?;
    let dir = opts.release_dir(&release);
    let (version_txt_path, vt_ok) = fetch_verified(&ctx, &release, VERSION_TXT)?;
    let text =
        crate::input::read_text(&version_txt_path, crate::input::TEXT_CAP).map_err(|err| {
            Error::Io {
                path: version_txt_path.clone(),
                err,
            }
        })?;
    let version_txt = VersionTxt::parse(&text, &version_txt_path.display().to_string())?;
    if version_txt.version != release.version {
        return Err(Error::VersionMismatch {
            path: version_txt_path,
            expected: release.version,
            found: version_txt.version,
        });
    }
    let image = dir.join(IMAGE);
    let image_bz2 = dir.join(IMAGE_BZ2);
    let cached = cache::valid_marker(&image, opts.insecure_skip_verify);
    let (verified, decompressed) = match cached {
        Some(m) => (vt_ok && m.verified_by != cache::BY_INSECURE, None),
        None => {
            cache::remove_with_marker(&image);
            let (bz2, bz2_ok) = fetch_verified(&ctx, &release, IMAGE_BZ2)?;
            let stats = decompress::decompress_file(&bz2, &image, &opts.decompress)?;
            let source = cache::valid_marker(&bz2, true)
                .map(|m| m.sha256)
                .unwrap_or_default();
            let by = if bz2_ok {
                format!("source-sha256:{source}")
            } else {
                cache::BY_INSECURE.to_string()
            };
            cache::write_marker(&image, &by, "").map_err(|err| Error::Io {
                path: cache::marker_path(&image),
                err,
            })?;
            (vt_ok && bz2_ok, Some(stats))
        }
    };
    Ok(FetchedRelease {
        release,
        version_txt,
        dir,
        image,
        image_bz2,
        version_txt_path,
        verified,
        decompressed,
    })
}

/// Fetches another file of a release (`oem-<id>.raw`, `*_efi_code.qcow2`, ...), verified
/// with its `.sig`, into the release's cache directory.
pub fn fetch_release_file(
    opts: &FetchOptions,
    release: &ResolvedRelease,
    name: &str,
) -> Result<PathBuf, Error> {
    let ctx = Ctx::new(opts)?;
    Ok(fetch_verified(&ctx, release, name)?.0)
}

/// Fetches sysext `file` (e.g. `docker-27.0-x86-64.raw`) of extension `name` from the
/// bakery, checks it against the bakery's `SHA256SUMS` (a missing line or a mismatch is an
/// error), and fetches `<name>.conf` when the bakery has one (404 gives `None`).
pub fn fetch_extension(
    opts: &FetchOptions,
    name: &str,
    file: &str,
) -> Result<FetchedExtension, Error> {
    check_name(name)?;
    check_name(file)?;
    let dl = Downloader::new(opts.download.clone())?;
    let dir = opts.cache_dir.join("extensions");
    let sums_url = opts.urls.bakery_file("SHA256SUMS");
    let sums = verify::Checksums::parse_sha256sums(&dl.get_text(&sums_url)?, &sums_url)?;
    let expected = match sums.require(file) {
        Ok(h) => Some(h.to_string()),
        Err(e) if opts.insecure_skip_verify => {
            warn_insecure(&e.to_string());
            None
        }
        Err(e) => return Err(e.into()),
    };
    let raw = dir.join(file);
    let hit = cache::valid_marker(&raw, opts.insecure_skip_verify).filter(|m| {
        expected
            .as_deref()
            .is_none_or(|e| m.sha256.eq_ignore_ascii_case(e))
    });
    let sha256 = match hit {
        Some(m) => m.sha256,
        None => {
            cache::remove_with_marker(&raw);
            let staging = download::with_suffix(&raw, ".unverified");
            dl.download(&opts.urls.bakery_file(file), &staging)?;
            let actual = verify::sha256_file(&staging)?;
            let by = match &expected {
                Some(e) => match verify::check_digest(&raw, "SHA256", e, &actual) {
                    Ok(()) => format!("sha256sums:{sums_url}"),
                    Err(err) if opts.insecure_skip_verify => {
                        warn_insecure(&err.to_string());
                        cache::BY_INSECURE.to_string()
                    }
                    Err(err) => {
                        let _ = fs::remove_file(&staging);
                        return Err(err.into());
                    }
                },
                None => cache::BY_INSECURE.to_string(),
            };
            fs::rename(&staging, &raw).map_err(|err| Error::Io {
                path: raw.clone(),
                err,
            })?;
            cache::write_marker(&raw, &by, &actual).map_err(|err| Error::Io {
                path: cache::marker_path(&raw),
                err,
            })?;
            actual
        }
    };
    // The bakery publishes the sysupdate config as extensions/NAME/NAME.conf (the URL its
    // docs' Butane snippets use); older layouts had extensions/NAME.conf.
    let conf_path = dir.join(format!("{name}.conf"));
    let mut conf = None;
    for rel in [format!("{name}/{name}.conf"), format!("{name}.conf")] {
        match dl.download(&opts.urls.bakery_file(&rel), &conf_path) {
            Ok(_) => {
                conf = Some(conf_path.clone());
                break;
            }
            Err(DownloadError::NotFound { .. }) => {
                let _ = fs::remove_file(&conf_path);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(FetchedExtension { raw, conf, sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain() {
        assert!(check_name("oem-qemu.raw").is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "a\\b"] {
            assert!(matches!(check_name(bad), Err(Error::BadName(_))), "{bad}");
        }
    }

    #[test]
    fn exact_version_resolves_offline() {
        let mut o = FetchOptions::new("4081.3.6".parse().unwrap(), Arch::Arm64, "/nonexistent");
        o.urls = ReleaseUrls::default().with_release_base("http://127.0.0.1:1");
        let r = resolve(&o).unwrap();
        assert_eq!(r.channel, Channel::Lts);
        assert_eq!(
            o.release_dir(&r),
            PathBuf::from("/nonexistent/arm64-usr/4081.3.6")
        );
    }
}
