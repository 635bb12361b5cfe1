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
//! <cache>/<board>/<version>/oem-<id>.raw, *.qcow2                 (+ .sig, .verified)
//! <cache>/extensions/<FILE> (+ .verified), <cache>/extensions/<NAME>.conf (+ .verified,
//! or <NAME>.conf.none when the bakery has none)
//! ```
//!
//! A file appears under its final name only once complete and past every check (its
//! signature or checksum, and what it holds: [`identity`] for the image, the OEM sysext's
//! extension-release, `version.txt`'s version); a file failing any check is not kept.
//! A `<file>.verified` marker (see [`cache`]) lets a later run trust it after a `stat`, so
//! a re-run with an exact version does no network access and no decompression; a file
//! that changed since is checked again or fetched again. Entries are fetched under a
//! per-entry lock (`<file>.lock`); in-progress downloads are `<file>.unverified.part` and
//! are resumed.
//!
//! Submodules: [`channel`] (specs, versions, URLs, head resolution), [`download`] (HTTP),
//! [`verify`] (OpenPGP, checksums), [`decompress`] + [`bz2blocks`] (parallel bzip2 to sparse
//! file), [`identity`] (the image's own version and architecture), [`cache`] (markers,
//! locks), [`progress`] (bar or log lines).

pub mod bz2blocks;
pub mod bz2decode;
pub mod cache;
pub mod channel;
pub mod decompress;
pub mod download;
pub mod identity;
pub mod progress;
pub mod published;
pub mod verify;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

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
    /// A fetched file that is not what was asked for (one line, naming the file).
    #[error("{0}")]
    Rejected(String),
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
    /// Check what fetched files hold against the release asked for: the image's own
    /// version and architecture, OEM sysexts' extension-release, firmware's format.
    /// Only tests of the transport alone (on made-up files) turn it off.
    pub check_contents: bool,
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
            check_contents: true,
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
                    head_version(ctx, &url)?
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
            let version = head_version(ctx, &url)?;
            Ok(ResolvedRelease {
                channel: Channel::Lts,
                arch: o.arch,
                version,
            })
        }
    }
}

/// The version a channel head's `version.txt` at `url` names, verified with its `.sig`
/// like every release file: an unsigned head could point a run at any older release.
fn head_version(ctx: &Ctx<'_>, url: &str) -> Result<Version, Error> {
    let o = ctx.opts;
    let text = ctx.dl.get_bytes(url)?;
    match ctx.dl.get_bytes(&format!("{url}.sig")) {
        Ok(sig) => {
            fs::create_dir_all(&o.cache_dir).map_err(io_err(&o.cache_dir))?;
            let file = cache::temp_path(&o.cache_dir.join(VERSION_TXT), "head");
            let sig_file = download::with_suffix(&file, ".sig");
            let _guards = (
                crate::cleanup::register(&file),
                crate::cleanup::register(&sig_file),
            );
            let res = fs::write(&file, &text)
                .and_then(|()| fs::write(&sig_file, &sig))
                .map_err(io_err(&file))
                .and_then(|()| {
                    verify::verify_detached(&ctx.keyring, &file, &sig_file)
                        .map_err(|e| Error::from(name_real(e, &file, &sig_file, Path::new(url))))
                });
            let _ = fs::remove_file(&file);
            let _ = fs::remove_file(&sig_file);
            match res {
                Ok(_) => {}
                Err(e) if o.insecure_skip_verify => warn_insecure(&e.to_string()),
                Err(e) => return Err(e),
            }
        }
        Err(e) if o.insecure_skip_verify => warn_insecure(&format!("no signature for {url}: {e}")),
        Err(e) => return Err(e.into()),
    }
    Ok(VersionTxt::parse(&String::from_utf8_lossy(&text), url)?.version)
}

/// Pins the spec to a version (network access only for a channel's current release).
pub fn resolve(opts: &FetchOptions) -> Result<ResolvedRelease, Error> {
    resolve_with(&Ctx::new(opts)?)
}

/// A check a fetched file must pass, besides its signature, before the cache trusts it:
/// called with the file to read and its final path in the cache.
type Check<'c> = dyn FnMut(&Path, &Path) -> Result<(), Error> + 'c;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |err| Error::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// Removes a cached release file with its signature and marker.
fn forget(path: &Path) {
    cache::remove_with_marker(path);
    let _ = fs::remove_file(download::with_suffix(path, ".sig"));
}

/// A verification error naming `real` (and its `.sig`) where it named the staging files.
fn name_real(e: VerifyError, staging: &Path, sig_staging: &Path, real: &Path) -> VerifyError {
    let sig_real = download::with_suffix(real, ".sig");
    let fix = |p: PathBuf| {
        if p == staging {
            real.to_path_buf()
        } else if p == sig_staging {
            sig_real.clone()
        } else {
            p
        }
    };
    match e {
        VerifyError::Io { path, err } => VerifyError::Io {
            path: fix(path),
            err,
        },
        VerifyError::BadSignatureFile { path, err } => VerifyError::BadSignatureFile {
            path: fix(path),
            err,
        },
        VerifyError::NotBinarySignature { path } => {
            VerifyError::NotBinarySignature { path: fix(path) }
        }
        VerifyError::NoIssuer { path } => VerifyError::NoIssuer { path: fix(path) },
        VerifyError::UnknownSigner { sig, issuer } => VerifyError::UnknownSigner {
            sig: fix(sig),
            issuer,
        },
        VerifyError::KeyNotValid { sig, key, why } => VerifyError::KeyNotValid {
            sig: fix(sig),
            key,
            why,
        },
        VerifyError::BadSignature {
            file,
            sig,
            key,
            err,
        } => VerifyError::BadSignature {
            file: fix(file),
            sig: fix(sig),
            key,
            err,
        },
        VerifyError::SignatureExpired { sig } => VerifyError::SignatureExpired { sig: fix(sig) },
        other => other,
    }
}

/// Downloads release file `name` and its `.sig`, verifies it, runs `check`, and only then
/// places it in the cache and marks it verified (reusing a cached copy whose marker still
/// matches, or whose signature and check still pass). A file failing any check is not
/// kept, so the next run fetches it again. Returns the path and whether it was verified.
fn fetch_verified(
    ctx: &Ctx<'_>,
    release: &ResolvedRelease,
    name: &str,
    check: &mut Check<'_>,
) -> Result<(PathBuf, bool), Error> {
    check_name(name)?;
    let o = ctx.opts;
    let path = o.release_dir(release).join(name);
    if let Some(m) = cache::valid_marker(&path, o.insecure_skip_verify) {
        return Ok((path, m.verified_by != cache::BY_INSECURE));
    }
    let _lock = cache::lock(&path).map_err(io_err(&path))?;
    // another run may have fetched it while this one waited for the lock
    if let Some(m) = cache::valid_marker(&path, o.insecure_skip_verify) {
        return Ok((path, m.verified_by != cache::BY_INSECURE));
    }
    let sig_path = download::with_suffix(&path, ".sig");
    // A cached file whose marker no longer matches it (copied, restored, touched, changed):
    // trusted again only if its signature and checks pass again, else fetched anew.
    if !o.insecure_skip_verify && path.is_file() && sig_path.is_file() {
        if let Ok(good) = verify::verify_detached(&ctx.keyring, &path, &sig_path) {
            if check(&path, &path).is_ok() {
                cache::write_marker(&path, &format!("openpgp:{}", good.signer), &good.sha256)
                    .map_err(io_err(&cache::marker_path(&path)))?;
                return Ok((path, true));
            }
        }
    }
    forget(&path);
    let version = release.version.to_string();
    let url = o
        .urls
        .release_file(release.channel, release.arch, &version, name);
    let sig_url = format!("{url}.sig");
    let staging = download::with_suffix(&path, ".unverified");
    let sig_staging = download::with_suffix(&sig_path, ".unverified");
    let _guards = (
        crate::cleanup::register(&staging),
        crate::cleanup::register(&sig_staging),
    );
    let drop_staging = || {
        let _ = fs::remove_file(&staging);
        let _ = fs::remove_file(&sig_staging);
    };

    let sig = match ctx.dl.download(&sig_url, &sig_staging) {
        Ok(_) => Some(sig_staging.clone()),
        Err(e) if o.insecure_skip_verify => {
            warn_insecure(&format!("no signature for {url}: {e}"));
            None
        }
        Err(e) => return Err(e.into()),
    };
    ctx.dl.download(&url, &staging)?;
    let (verified_by, sha256) = match &sig {
        Some(sig) => match verify::verify_detached(&ctx.keyring, &staging, sig) {
            Ok(good) => (format!("openpgp:{}", good.signer), good.sha256),
            Err(e) if o.insecure_skip_verify => {
                warn_insecure(&name_real(e, &staging, &sig_staging, &path).to_string());
                (cache::BY_INSECURE.to_string(), String::new())
            }
            Err(e) => {
                drop_staging();
                return Err(name_real(e, &staging, &sig_staging, &path).into());
            }
        },
        None => (cache::BY_INSECURE.to_string(), String::new()),
    };
    if let Err(e) = check(&staging, &path) {
        drop_staging();
        return Err(e);
    }
    if sig.is_some() {
        fs::rename(&sig_staging, &sig_path).map_err(io_err(&sig_path))?;
    }
    fs::rename(&staging, &path).map_err(io_err(&path))?;
    cache::write_marker(&path, &verified_by, &sha256)
        .map_err(io_err(&cache::marker_path(&path)))?;
    Ok((path, verified_by != cache::BY_INSECURE))
}

/// `version.txt` must parse and name the release asked for.
fn check_version_txt(
    release: &ResolvedRelease,
    file: &Path,
    real: &Path,
) -> Result<VersionTxt, Error> {
    let text = crate::input::read_text(file, crate::input::TEXT_CAP).map_err(io_err(real))?;
    let vt = VersionTxt::parse(&text, &real.display().to_string())?;
    if vt.version != release.version {
        return Err(Error::VersionMismatch {
            path: real.to_path_buf(),
            expected: release.version,
            found: vt.version,
        });
    }
    Ok(vt)
}

/// Decompresses the verified `.bz2` at `src` to `image` and checks that the image is the
/// release asked for; on failure nothing is left at `image`.
fn decompress_checked(
    opts: &FetchOptions,
    release: &ResolvedRelease,
    src: &Path,
    real: &Path,
    image: &Path,
) -> Result<DecompressStats, Error> {
    let stats = decompress::decompress_file(src, image, &opts.decompress).map_err(|e| {
        let e = e.to_string().replace(&src.display().to_string(), &real.display().to_string());
        Error::Rejected(format!(
            "{e} (the signed file does not decompress; it was not kept, the next run fetches it again)"
        ))
    })?;
    if opts.check_contents {
        let shown = real.display().to_string();
        let version = release.version.to_string();
        if let Err(e) = identity::check(image, &shown, &version, release.arch) {
            let _ = fs::remove_file(image);
            if !opts.insecure_skip_verify {
                return Err(Error::Rejected(format!(
                    "{e}; it was not kept, the next run fetches it again"
                )));
            }
            warn_insecure(&e);
        }
    }
    Ok(stats)
}

/// What every fetch of a release starts with: the release resolved, and its version.txt
/// fetched, verified and checked against it.
struct Head<'a> {
    ctx: Ctx<'a>,
    release: ResolvedRelease,
    /// `<cache>/<board>/<version>`.
    dir: PathBuf,
    version_txt_path: PathBuf,
    /// version.txt's signature was verified (not let through by insecure_skip_verify).
    vt_ok: bool,
    version_txt: VersionTxt,
}

fn head(opts: &FetchOptions) -> Result<Head<'_>, Error> {
    let ctx = Ctx::new(opts)?;
    let release = resolve_with(&ctx)?;
    let dir = opts.release_dir(&release);
    let (version_txt_path, vt_ok) = fetch_verified(&ctx, &release, VERSION_TXT, &mut |f, real| {
        check_version_txt(&release, f, real).map(|_| ())
    })?;
    let version_txt = check_version_txt(&release, &version_txt_path, &version_txt_path)?;
    Ok(Head {
        ctx,
        release,
        dir,
        version_txt_path,
        vt_ok,
        version_txt,
    })
}

/// Resolves the spec, fetches and verifies `version.txt` and the image, decompresses
/// the image to a sparse file in the cache and checks that it is the release asked for
/// (each step skipped when the cache has its result).
pub fn fetch_release(opts: &FetchOptions) -> Result<FetchedRelease, Error> {
    let Head {
        ctx,
        release,
        dir,
        version_txt_path,
        vt_ok,
        version_txt,
    } = head(opts)?;
    let image = dir.join(IMAGE);
    let image_bz2 = dir.join(IMAGE_BZ2);
    let cached = cache::valid_marker(&image, opts.insecure_skip_verify);
    let (verified, decompressed) = match cached {
        Some(m) => (vt_ok && m.verified_by != cache::BY_INSECURE, None),
        None => {
            let _lock = cache::lock(&image).map_err(io_err(&image))?;
            match cache::valid_marker(&image, opts.insecure_skip_verify) {
                Some(m) => (vt_ok && m.verified_by != cache::BY_INSECURE, None),
                None => {
                    cache::remove_with_marker(&image);
                    let mut stats = None;
                    let (bz2, bz2_ok) =
                        fetch_verified(&ctx, &release, IMAGE_BZ2, &mut |f, real| {
                            stats = Some(decompress_checked(opts, &release, f, real, &image)?);
                            Ok(())
                        })?;
                    let stats = match stats {
                        Some(s) => s,
                        // the .bz2 came from the cache: decompress and check it again
                        None => decompress_checked(opts, &release, &bz2, &bz2, &image)
                            .inspect_err(|_| forget(&bz2))?,
                    };
                    let source = cache::valid_marker(&bz2, true)
                        .map(|m| m.sha256)
                        .unwrap_or_default();
                    let by = if bz2_ok {
                        format!("source-sha256:{source}")
                    } else {
                        cache::BY_INSECURE.to_string()
                    };
                    cache::write_marker(&image, &by, "")
                        .map_err(io_err(&cache::marker_path(&image)))?;
                    (vt_ok && bz2_ok, Some(stats))
                }
            }
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

/// What a release file other than the image must hold: an OEM sysext `oem-<id>.raw` is
/// for this release's version and architecture; a `.qcow2` (UEFI firmware) is a qcow2.
fn check_release_file(
    opts: &FetchOptions,
    release: &ResolvedRelease,
    name: &str,
    file: &Path,
    real: &Path,
) -> Result<(), Error> {
    if !opts.check_contents {
        return Ok(());
    }
    let fix = |s: String| s.replace(&file.display().to_string(), &real.display().to_string());
    if let Some(id) = name
        .strip_prefix("oem-")
        .and_then(|n| n.strip_suffix(".raw"))
    {
        let version = release.version.to_string();
        crate::sysext::oem::check_sysext(id, file, &version, Some(release.arch.systemd_name()))
            .map_err(|e| Error::Rejected(fix(e)))?;
    } else if name.ends_with(".qcow2") {
        let mut magic = Vec::new();
        crate::input::open_regular(file)
            .and_then(|f| std::io::Read::take(f, 4).read_to_end(&mut magic))
            .map_err(io_err(real))?;
        if magic != b"QFI\xfb" {
            return Err(Error::Rejected(format!(
                "{}: is not a qcow2 image",
                real.display()
            )));
        }
    }
    Ok(())
}

/// Fetches another file of a release (`oem-<id>.raw`, `*_efi_code.qcow2`, ...), verified
/// with its `.sig` and checked against the release, into the release's cache directory.
pub fn fetch_release_file(
    opts: &FetchOptions,
    release: &ResolvedRelease,
    name: &str,
) -> Result<PathBuf, Error> {
    let ctx = Ctx::new(opts)?;
    let (path, _) = fetch_verified(&ctx, release, name, &mut |f, real| {
        check_release_file(opts, release, name, f, real)
    })?;
    // a marker older than these checks (or written with them off) is checked once more
    if let Err(e) = check_release_file(opts, release, name, &path, &path) {
        forget(&path);
        return Err(e);
    }
    Ok(path)
}

/// How a bakery sysupdate config was vouched for when it is not in `SHA256SUMS`.
const BY_UNLISTED: &str = "not listed in SHA256SUMS";

/// Downloads `url` into cache entry `path` (under its lock), runs `check` on the staged
/// file, and only then renames it into place and marks it with `by` and its sha256.
fn fetch_checked(
    dl: &Downloader,
    url: &str,
    path: &Path,
    check: &mut dyn FnMut(&Path, &str) -> Result<String, Error>,
) -> Result<String, Error> {
    let staging = download::with_suffix(path, ".unverified");
    let _guard = crate::cleanup::register(&staging);
    dl.download(url, &staging)?;
    let actual = verify::sha256_file(&staging)?;
    let by = match check(&staging, &actual) {
        Ok(by) => by,
        Err(e) => {
            let _ = fs::remove_file(&staging);
            return Err(e);
        }
    };
    fs::rename(&staging, path).map_err(io_err(path))?;
    cache::write_marker(path, &by, &actual).map_err(io_err(&cache::marker_path(path)))?;
    Ok(actual)
}

/// A cached bakery file still trusted: its marker matches, or its bytes still hash to
/// what was verified (the marker is then renewed).
fn cached_sum(path: &Path, accept_insecure: bool) -> Option<cache::Marker> {
    if let Some(m) = cache::valid_marker(path, accept_insecure) {
        return Some(m);
    }
    let m = cache::read_marker(path)?;
    if m.sha256.is_empty() || (m.verified_by == cache::BY_INSECURE && !accept_insecure) {
        return None;
    }
    let now = verify::sha256_file(path).ok()?;
    if !now.eq_ignore_ascii_case(&m.sha256) {
        return None;
    }
    cache::write_marker(path, &m.verified_by, &m.sha256).ok()
}

/// `<cache>/extensions/<NAME>.conf.none`: the bakery had no config for NAME.
fn no_conf_path(conf: &Path) -> PathBuf {
    download::with_suffix(conf, ".none")
}

/// Fetches sysext `file` (e.g. `docker-27.0-x86-64.raw`) of extension `name` from the
/// bakery, checks it against the bakery's `SHA256SUMS` (a missing line or a mismatch is an
/// error), and fetches `<name>.conf` when the bakery has one (404 gives `None`), checked
/// against `SHA256SUMS` when listed there (installed with a warning when not). A cached,
/// still matching copy of both is used without any network access, so a bake after
/// `flatbake fetch` runs offline.
pub fn fetch_extension(
    opts: &FetchOptions,
    name: &str,
    file: &str,
) -> Result<FetchedExtension, Error> {
    check_name(name)?;
    check_name(file)?;
    let dir = opts.cache_dir.join("extensions");
    let raw = dir.join(file);
    let conf_path = dir.join(format!("{name}.conf"));
    let insecure = opts.insecure_skip_verify;
    let conf_state = |warn: bool| -> Option<Option<PathBuf>> {
        if let Some(m) = cached_sum(&conf_path, insecure) {
            if warn && m.verified_by == BY_UNLISTED {
                eprintln!(
                    "flatbake: warning: {}: {BY_UNLISTED}, installed unchecked",
                    conf_path.display()
                );
            }
            return Some(Some(conf_path.clone()));
        }
        no_conf_path(&conf_path).is_file().then_some(None)
    };
    if let (Some(m), Some(conf)) = (cached_sum(&raw, insecure), conf_state(true)) {
        return Ok(FetchedExtension {
            raw,
            conf,
            sha256: m.sha256,
        });
    }

    let dl = Downloader::new(opts.download.clone())?;
    let sums_url = opts.urls.bakery_file("SHA256SUMS");
    let sums = verify::Checksums::parse_sha256sums(&dl.get_text(&sums_url)?, &sums_url)?;
    let expected = match sums.require(file) {
        Ok(h) => Some(h.to_string()),
        Err(e) if insecure => {
            warn_insecure(&e.to_string());
            None
        }
        Err(e) => return Err(e.into()),
    };
    let sha256 = {
        let _lock = cache::lock(&raw).map_err(io_err(&raw))?;
        let hit = cached_sum(&raw, insecure).filter(|m| {
            expected
                .as_deref()
                .is_none_or(|e| m.sha256.eq_ignore_ascii_case(e))
        });
        match hit {
            Some(m) => m.sha256,
            None => {
                cache::remove_with_marker(&raw);
                let url = opts.urls.bakery_file(file);
                fetch_checked(&dl, &url, &raw, &mut |_, actual| match &expected {
                    Some(e) => match verify::check_digest(&raw, "SHA256", e, actual) {
                        Ok(()) => Ok(format!("sha256sums:{sums_url}")),
                        Err(err) if insecure => {
                            warn_insecure(&err.to_string());
                            Ok(cache::BY_INSECURE.to_string())
                        }
                        Err(err) => Err(err.into()),
                    },
                    None => Ok(cache::BY_INSECURE.to_string()),
                })?
            }
        }
    };

    // The bakery publishes the sysupdate config as extensions/NAME/NAME.conf (the URL its
    // docs' Butane snippets use); older layouts had extensions/NAME.conf.
    let conf_name = format!("{name}.conf");
    let listed = sums.get(&conf_name).map(str::to_owned);
    let _lock = cache::lock(&conf_path).map_err(io_err(&conf_path))?;
    let still = cached_sum(&conf_path, insecure).filter(|m| match &listed {
        Some(e) => m.sha256.eq_ignore_ascii_case(e),
        None => m.verified_by == BY_UNLISTED || m.verified_by == cache::BY_INSECURE,
    });
    let mut conf = None;
    if still.is_some() {
        conf = Some(conf_path.clone());
    } else {
        cache::remove_with_marker(&conf_path);
        let _ = fs::remove_file(no_conf_path(&conf_path));
        for rel in [format!("{name}/{conf_name}"), conf_name.clone()] {
            let url = opts.urls.bakery_file(&rel);
            let res = fetch_checked(&dl, &url, &conf_path, &mut |_, actual| match &listed {
                Some(e) => {
                    let shown = PathBuf::from(&url);
                    match verify::check_digest(&shown, "SHA256", e, actual) {
                        Ok(()) => Ok(format!("sha256sums:{sums_url}")),
                        Err(err) if insecure => {
                            warn_insecure(&err.to_string());
                            Ok(cache::BY_INSECURE.to_string())
                        }
                        Err(err) => Err(err.into()),
                    }
                }
                None => Ok(BY_UNLISTED.to_string()),
            });
            match res {
                Ok(_) => {
                    conf = Some(conf_path.clone());
                    break;
                }
                Err(Error::Download(DownloadError::NotFound { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        if conf.is_none() {
            fs::write(no_conf_path(&conf_path), b"").map_err(io_err(&conf_path))?;
        }
    }
    if conf.is_some() && listed.is_none() {
        eprintln!(
            "flatbake: warning: {}: {BY_UNLISTED} ({sums_url}), installed unchecked",
            conf_path.display()
        );
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
