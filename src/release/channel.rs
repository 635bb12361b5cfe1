//! Which Flatcar release to fetch: architectures, channels, version numbers, the
//! `version.txt` format, the URLs of the release servers, and resolving a channel's
//! current head (from `releases.json` or from `<base>/<board>/current/version.txt`).
//!
//! Everything here is pure (no network): callers fetch the documents and hand the text in.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Env var overriding the release server URL template (`{channel}` is replaced).
pub const ENV_RELEASE_URL: &str = "FLATBAKE_RELEASE_URL";
/// Env var overriding the URL of `releases.json`.
pub const ENV_RELEASES_JSON_URL: &str = "FLATBAKE_RELEASES_JSON_URL";
/// Env var overriding the sysext bakery base URL.
pub const ENV_BAKERY_URL: &str = "FLATBAKE_BAKERY_URL";

/// Default release server URL template.
pub const DEFAULT_RELEASE_URL: &str = "https://{channel}.release.flatcar-linux.net";
/// Default `releases.json` URL.
pub const DEFAULT_RELEASES_JSON_URL: &str = "https://www.flatcar.org/releases-json/releases.json";
/// Default sysext bakery base URL.
pub const DEFAULT_BAKERY_URL: &str = "https://extensions.flatcar.org";

/// Errors of parsing specs, versions and release metadata.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("unknown architecture {0:?} (expected x86-64 or arm64)")]
    UnknownArch(String),
    #[error("unknown channel {0:?} (expected alpha, beta, stable or lts)")]
    UnknownChannel(String),
    #[error("invalid release {0:?} (expected alpha, beta, stable, lts, current or X.Y.Z)")]
    InvalidSpec(String),
    #[error("invalid version {0:?} (expected X.Y.Z)")]
    InvalidVersion(String),
    #[error("version {0} has minor number {1}, which names no channel (0 alpha, 1 beta, 2 stable, 3 lts)")]
    NoChannelForVersion(Version, u32),
    #[error("{source_name}: line {line}: not a KEY=value line: {text:?}")]
    VersionTxtSyntax {
        source_name: String,
        line: usize,
        text: String,
    },
    #[error("{source_name}: FLATCAR_VERSION is missing")]
    VersionTxtMissing { source_name: String },
    #[error("{source_name}: FLATCAR_VERSION: {err}")]
    VersionTxtBadVersion {
        source_name: String,
        err: Box<ChannelError>,
    },
    #[error("{source_name}: not valid releases.json: {err}")]
    ReleasesJson { source_name: String, err: String },
    #[error("{source_name}: no {channel} release for {arch}")]
    NoRelease {
        source_name: String,
        channel: Channel,
        arch: Arch,
    },
}

pub use crate::arch::Arch;

/// A Flatcar release channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Alpha,
    Beta,
    Stable,
    Lts,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 4] = [Channel::Alpha, Channel::Beta, Channel::Stable, Channel::Lts];

    /// Lower-case name, as in URLs and `releases.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Alpha => "alpha",
            Channel::Beta => "beta",
            Channel::Stable => "stable",
            Channel::Lts => "lts",
        }
    }

    /// The channel a version belongs to, from its minor number.
    pub fn of_version(v: &Version) -> Result<Channel, ChannelError> {
        match v.minor {
            0 => Ok(Channel::Alpha),
            1 => Ok(Channel::Beta),
            2 => Ok(Channel::Stable),
            3 => Ok(Channel::Lts),
            m => Err(ChannelError::NoChannelForVersion(*v, m)),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = ChannelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "alpha" => Ok(Channel::Alpha),
            "beta" => Ok(Channel::Beta),
            "stable" => Ok(Channel::Stable),
            "lts" => Ok(Channel::Lts),
            _ => Err(ChannelError::UnknownChannel(s.to_string())),
        }
    }
}

/// A Flatcar version `X.Y.Z` (build, branch, patch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for Version {
    type Err = ChannelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ChannelError::InvalidVersion(s.to_string());
        let mut parts = s.split('.');
        let mut num = || -> Result<u32, ChannelError> {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let v = Version::new(num()?, num()?, num()?);
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }
}

/// What the user asked for: a channel's current release or an exact version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseSpec {
    /// The current (newest) release of a channel.
    Current(Channel),
    /// An exact version; its channel follows from the minor number.
    Exact(Version),
    /// The current release of one LTS stream (`lts-2024`: the server's `current-2024`).
    LtsStream(u16),
}

impl ReleaseSpec {
    /// The channel whose server hosts this release.
    pub fn channel(&self) -> Result<Channel, ChannelError> {
        match self {
            ReleaseSpec::Current(c) => Ok(*c),
            ReleaseSpec::Exact(v) => Channel::of_version(v),
            ReleaseSpec::LtsStream(_) => Ok(Channel::Lts),
        }
    }
}

impl fmt::Display for ReleaseSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReleaseSpec::Current(c) => write!(f, "{c} (current)"),
            ReleaseSpec::Exact(v) => write!(f, "{v}"),
            ReleaseSpec::LtsStream(y) => write!(f, "lts-{y} (current)"),
        }
    }
}

impl FromStr for ReleaseSpec {
    type Err = ChannelError;
    /// Parses `alpha|beta|stable|lts|current|X.Y.Z` (`current` is stable's current).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("current") {
            return Ok(ReleaseSpec::Current(Channel::Stable));
        }
        if let Ok(c) = t.parse::<Channel>() {
            return Ok(ReleaseSpec::Current(c));
        }
        // an LTS stream: lts-2024 (or the server's own name, current-2024)
        if let Some(y) = t
            .strip_prefix("lts-")
            .or_else(|| t.strip_prefix("current-"))
        {
            if let Ok(year) = y.parse::<u16>() {
                if (2000..=2100).contains(&year) {
                    return Ok(ReleaseSpec::LtsStream(year));
                }
            }
        }
        match t.parse::<Version>() {
            Ok(v) => {
                Channel::of_version(&v)?;
                Ok(ReleaseSpec::Exact(v))
            }
            Err(_) => Err(ChannelError::InvalidSpec(s.to_string())),
        }
    }
}

/// A parsed `version.txt` (shell `KEY=value` lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionTxt {
    /// Every variable, quotes stripped.
    pub vars: BTreeMap<String, String>,
    /// `FLATCAR_VERSION`, parsed.
    pub version: Version,
}

impl VersionTxt {
    /// Parses `text`; `source_name` (a path or URL) is used in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<VersionTxt, ChannelError> {
        let vars = Self::vars(text, source_name)?;
        let v = vars
            .get("FLATCAR_VERSION")
            .ok_or_else(|| ChannelError::VersionTxtMissing {
                source_name: source_name.to_string(),
            })?;
        let version = v
            .parse::<Version>()
            .map_err(|e| ChannelError::VersionTxtBadVersion {
                source_name: source_name.to_string(),
                err: Box::new(e),
            })?;
        Ok(VersionTxt { vars, version })
    }

    /// The variables of `text` (the syntax alone: `KEY=value` lines, `export`, quotes).
    fn vars(text: &str, source_name: &str) -> Result<BTreeMap<String, String>, ChannelError> {
        let mut vars = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
            let syntax = || ChannelError::VersionTxtSyntax {
                source_name: source_name.to_string(),
                line: i + 1,
                text: raw.to_string(),
            };
            let (k, v) = line.split_once('=').ok_or_else(syntax)?;
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(syntax());
            }
            vars.insert(k.to_string(), unquote(v.trim()));
        }
        Ok(vars)
    }

    /// `FLATCAR_VERSION` of the `version.txt` at `path` beside a local image, as written
    /// (developer builds name versions such as `3975.0.0+nightly-...`, which a fetch
    /// would refuse); the error is one line naming the file.
    pub fn flatcar_version_in(path: &Path) -> Result<String, String> {
        let shown = path.display().to_string();
        let text = crate::input::read_text(path, crate::input::TEXT_CAP)
            .map_err(|e| format!("{shown}: {e}"))?;
        let mut vars = Self::vars(&text, &shown).map_err(|e| e.to_string())?;
        vars.remove("FLATCAR_VERSION")
            .ok_or_else(|| format!("{shown}: no FLATCAR_VERSION="))
    }

    /// A variable's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(String::as_str)
    }
}

fn unquote(v: &str) -> String {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'\'') && b[b.len() - 1] == b[0] {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

/// The newest `X.Y.Z` release of `channel` in a `releases.json` document that lists `arch`
/// (when an entry has an `architectures` list).
pub fn latest_from_releases_json(
    json: &str,
    channel: Channel,
    arch: Arch,
    source_name: &str,
) -> Result<Version, ChannelError> {
    let bad = |err: String| ChannelError::ReleasesJson {
        source_name: source_name.to_string(),
        err,
    };
    let doc: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    let obj = doc
        .as_object()
        .ok_or_else(|| bad("top level is not an object".into()))?;
    let mut best: Option<Version> = None;
    for (key, entry) in obj {
        let Ok(v) = key.parse::<Version>() else {
            continue; // "current", "current-2024", ...
        };
        let Some(ch) = entry.get("channel").and_then(|c| c.as_str()) else {
            continue;
        };
        if !ch.eq_ignore_ascii_case(channel.as_str()) {
            continue;
        }
        if let Some(archs) = entry.get("architectures").and_then(|a| a.as_array()) {
            let listed = archs
                .iter()
                .filter_map(|a| a.as_str())
                .any(|a| a.parse::<Arch>().ok() == Some(arch));
            if !listed {
                continue;
            }
        }
        if best.is_none_or(|b| v > b) {
            best = Some(v);
        }
    }
    best.ok_or_else(|| ChannelError::NoRelease {
        source_name: source_name.to_string(),
        channel,
        arch,
    })
}

/// Where releases, `releases.json` and sysexts are downloaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseUrls {
    /// Release server template; `{channel}` is replaced by the channel name. Without the
    /// placeholder the same base serves every channel.
    pub release_template: String,
    /// URL of `releases.json`.
    pub releases_json: String,
    /// Base URL of the sysext bakery (files live under `<bakery>/extensions/`).
    pub bakery: String,
}

impl Default for ReleaseUrls {
    fn default() -> Self {
        ReleaseUrls {
            release_template: DEFAULT_RELEASE_URL.to_string(),
            releases_json: DEFAULT_RELEASES_JSON_URL.to_string(),
            bakery: DEFAULT_BAKERY_URL.to_string(),
        }
    }
}

impl ReleaseUrls {
    /// Defaults, overridden by `FLATBAKE_RELEASE_URL`, `FLATBAKE_RELEASES_JSON_URL` and
    /// `FLATBAKE_BAKERY_URL` when set and non-empty.
    pub fn from_env() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let d = ReleaseUrls::default();
        ReleaseUrls {
            release_template: get(ENV_RELEASE_URL).unwrap_or(d.release_template),
            releases_json: get(ENV_RELEASES_JSON_URL).unwrap_or(d.releases_json),
            bakery: get(ENV_BAKERY_URL).unwrap_or(d.bakery),
        }
    }

    /// One base URL (`{channel}` template or not) for every release server.
    pub fn with_release_base(mut self, template: impl Into<String>) -> Self {
        self.release_template = template.into();
        self
    }

    /// The release server base of `channel`, without a trailing slash.
    pub fn release_base(&self, channel: Channel) -> String {
        self.release_template
            .replace("{channel}", channel.as_str())
            .trim_end_matches('/')
            .to_string()
    }

    /// `<base>/<board>/<dir>/<file>`; `dir` is a version or `current`.
    pub fn release_file(&self, channel: Channel, arch: Arch, dir: &str, file: &str) -> String {
        format!(
            "{}/{}/{}/{}",
            self.release_base(channel),
            arch.board(),
            dir,
            file
        )
    }

    /// `<bakery>/extensions/<file>`.
    pub fn bakery_file(&self, file: &str) -> String {
        format!("{}/extensions/{}", self.bakery.trim_end_matches('/'), file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names() {
        assert_eq!(Arch::X86_64.board(), "amd64-usr");
        assert_eq!(Arch::Arm64.board(), "arm64-usr");
        assert_eq!("x86-64".parse::<Arch>().unwrap(), Arch::X86_64);
        assert_eq!("arm64-usr".parse::<Arch>().unwrap(), Arch::Arm64);
        assert!("riscv".parse::<Arch>().is_err());
        assert_eq!(
            "lts-2024".parse::<ReleaseSpec>().unwrap(),
            ReleaseSpec::LtsStream(2024)
        );
        assert_eq!(
            "current-2023".parse::<ReleaseSpec>().unwrap(),
            ReleaseSpec::LtsStream(2023)
        );
        assert_eq!(
            ReleaseSpec::LtsStream(2024).channel().unwrap(),
            Channel::Lts
        );
        assert!("lts-99".parse::<ReleaseSpec>().is_err());
        assert_eq!(Arch::Arm64.to_string(), "arm64");
    }

    #[test]
    fn spec_parsing() {
        assert_eq!(
            "current".parse::<ReleaseSpec>().unwrap(),
            ReleaseSpec::Current(Channel::Stable)
        );
        assert_eq!(
            "LTS".parse::<ReleaseSpec>().unwrap(),
            ReleaseSpec::Current(Channel::Lts)
        );
        let s: ReleaseSpec = "4593.2.5".parse().unwrap();
        assert_eq!(s, ReleaseSpec::Exact(Version::new(4593, 2, 5)));
        assert_eq!(s.channel().unwrap(), Channel::Stable);
        assert_eq!(
            "4081.3.6"
                .parse::<ReleaseSpec>()
                .unwrap()
                .channel()
                .unwrap(),
            Channel::Lts
        );
        assert!(matches!(
            "4593.7.0".parse::<ReleaseSpec>(),
            Err(ChannelError::NoChannelForVersion(_, 7))
        ));
        for bad in ["", "1.2", "1.2.3.4", "a.b.c", "1..2", "nightly", "1.2.-3"] {
            assert!(bad.parse::<ReleaseSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn version_order() {
        let a: Version = "4593.2.5".parse().unwrap();
        let b: Version = "4593.2.10".parse().unwrap();
        let c: Version = "4600.2.0".parse().unwrap();
        assert!(a < b && b < c);
    }

    #[test]
    fn version_txt() {
        let t = "# comment\n\nFLATCAR_BUILD=4593\nFLATCAR_VERSION=4593.2.5\n\
                 FLATCAR_BUILD_ID=\"\"\nFLATCAR_SDK_VERSION='4593.0.0'\nexport X=1\n";
        let v = VersionTxt::parse(t, "v.txt").unwrap();
        assert_eq!(v.version, Version::new(4593, 2, 5));
        assert_eq!(v.get("FLATCAR_BUILD_ID"), Some(""));
        assert_eq!(v.get("FLATCAR_SDK_VERSION"), Some("4593.0.0"));
        assert_eq!(v.get("X"), Some("1"));
        let e = VersionTxt::parse("FLATCAR_BUILD=1\n", "http://x/version.txt").unwrap_err();
        assert_eq!(
            e.to_string(),
            "http://x/version.txt: FLATCAR_VERSION is missing"
        );
        let e = VersionTxt::parse("garbage line\n", "v").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        assert!(VersionTxt::parse("FLATCAR_VERSION=abc\n", "v").is_err());
    }

    #[test]
    fn local_version_txt_keeps_developer_versions() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("version.txt");
        std::fs::write(&p, "export FLATCAR_VERSION='3975.0.0+nightly-1'\n").unwrap();
        assert_eq!(
            VersionTxt::flatcar_version_in(&p).unwrap(),
            "3975.0.0+nightly-1"
        );
        std::fs::write(&p, "FLATCAR_BUILD=1\n").unwrap();
        let e = VersionTxt::flatcar_version_in(&p).unwrap_err();
        assert!(e.ends_with("version.txt: no FLATCAR_VERSION="), "{e}");
        std::fs::write(&p, "garbage\n").unwrap();
        let e = VersionTxt::flatcar_version_in(&p).unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let e = VersionTxt::flatcar_version_in(&d.path().join("none")).unwrap_err();
        assert!(e.contains("none"), "{e}");
    }

    #[test]
    fn releases_json() {
        let j = r#"{
          "current": {"channel": "stable"},
          "4593.2.5": {"channel": "stable", "architectures": ["amd64", "arm64"]},
          "4593.2.10": {"channel": "stable", "architectures": ["amd64"]},
          "4459.2.4": {"channel": "stable"},
          "4628.1.0": {"channel": "beta"},
          "4081.3.6": {"channel": "lts", "architectures": ["x86-64", "arm64"]}
        }"#;
        let f = |c, a| latest_from_releases_json(j, c, a, "r.json");
        assert_eq!(
            f(Channel::Stable, Arch::X86_64).unwrap().to_string(),
            "4593.2.10"
        );
        assert_eq!(
            f(Channel::Stable, Arch::Arm64).unwrap().to_string(),
            "4593.2.5"
        );
        assert_eq!(
            f(Channel::Beta, Arch::Arm64).unwrap().to_string(),
            "4628.1.0"
        );
        assert_eq!(
            f(Channel::Lts, Arch::Arm64).unwrap().to_string(),
            "4081.3.6"
        );
        assert!(matches!(
            f(Channel::Alpha, Arch::X86_64),
            Err(ChannelError::NoRelease { .. })
        ));
        assert!(latest_from_releases_json("[1]", Channel::Alpha, Arch::X86_64, "r").is_err());
    }

    #[test]
    fn urls() {
        let u = ReleaseUrls::default();
        assert_eq!(
            u.release_file(Channel::Beta, Arch::Arm64, "current", "version.txt"),
            "https://beta.release.flatcar-linux.net/arm64-usr/current/version.txt"
        );
        let u = u.with_release_base("http://127.0.0.1:9/");
        assert_eq!(
            u.release_file(Channel::Lts, Arch::X86_64, "1.3.0", "f"),
            "http://127.0.0.1:9/amd64-usr/1.3.0/f"
        );
        assert_eq!(
            ReleaseUrls::default().bakery_file("SHA256SUMS"),
            "https://extensions.flatcar.org/extensions/SHA256SUMS"
        );
    }
}
