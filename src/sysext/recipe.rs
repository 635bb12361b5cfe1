//! Recipes: TOML data files (`recipes/NAME.toml`, built into the binary) that say where an
//! upstream release comes from per architecture, how its checksum is verified, which
//! files go where in the sysext, and which systemd units and `Upholds=` drop-ins ship
//! with it. `create` runs a recipe and packs the result; `versions` lists upstream
//! releases.
//!
//! Variants split a recipe into images that can be loaded together or apart (docker's
//! `only-docker` / `only-containerd`): items (installs, files, symlinks, upholds) carry
//! an optional `group`, and `[variant.NAME]` lists the groups it keeps (ungrouped items
//! are always kept) and may rename the extension. [`Recipe::select`] applies one.

use super::fetch::{self, ArchiveKind, FetchError, Fetcher};
use super::pack::{self, PackError, PackOptions, PackReport};
use crate::arch::Arch;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// The recipes shipped with flatbake (the files under `recipes/`).
pub const BUILTIN: &[(&str, &str)] = &[
    ("docker", include_str!("../../recipes/docker.toml")),
    ("k3s", include_str!("../../recipes/k3s.toml")),
    ("kubernetes", include_str!("../../recipes/kubernetes.toml")),
    ("wasmtime", include_str!("../../recipes/wasmtime.toml")),
];

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub homepage: Option<String>,
    /// `ID=` of the extension-release (default `_any`).
    #[serde(default = "any")]
    pub os: String,
    /// Whether systemd reloads units when the extension is merged.
    #[serde(default)]
    pub reload_manager: bool,
    /// Template variables shared by every architecture (e.g. a companion version).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Template variables per systemd architecture; a recipe builds only these.
    pub arch: BTreeMap<String, BTreeMap<String, String>>,
    pub versions: Versions,
    #[serde(default, rename = "download")]
    pub downloads: Vec<Download>,
    #[serde(default, rename = "file")]
    pub files: Vec<InlineFile>,
    #[serde(default, rename = "symlink")]
    pub symlinks: Vec<Symlink>,
    #[serde(default)]
    pub upholds: Vec<Upholds>,
    /// Named subsets of the recipe (`flatbake sysext create --variant NAME`).
    #[serde(default, rename = "variant")]
    pub variants: BTreeMap<String, Variant>,
}

/// `[variant.NAME]`: keep only the items of `groups` (and the ungrouped ones).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    #[serde(default)]
    pub description: Option<String>,
    /// The extension name of this variant's image [default: the recipe's].
    #[serde(default)]
    pub name: Option<String>,
    pub groups: Vec<String>,
}

fn any() -> String {
    "_any".into()
}

/// Where `sysext list RECIPE` finds upstream versions.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Versions {
    /// GitHub `OWNER/REPO`, listed through the releases API.
    #[serde(default)]
    pub github: Option<String>,
    /// An HTML/text index page, scanned for `pattern` (holding `{version}`).
    #[serde(default)]
    pub index: Option<String>,
    #[serde(default)]
    pub pattern: Option<String>,
    /// Removed from tags (`v24.0.0` → `24.0.0`).
    #[serde(default)]
    pub strip_prefix: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Download {
    /// URL template; `.tar.gz`, `.tgz`, `.tar.xz` are unpacked, anything else is a file.
    pub url: String,
    pub checksum: Checksum,
    pub install: Vec<Install>,
}

/// Where a download's sha256 comes from. Exactly one of the fields is set.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checksum {
    /// URL template of a `SHA256SUMS`-style file (or one holding just the digest).
    #[serde(default)]
    pub sums: Option<String>,
    /// GitHub `OWNER/REPO` whose release `tag` records asset digests.
    #[serde(default)]
    pub github: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    /// Pinned digests, keyed `VERSION/ARCH`.
    #[serde(default)]
    pub sha256: BTreeMap<String, String>,
    /// Upstream publishes no checksums (the reason): the user passes `--sha256`.
    #[serde(default)]
    pub unpublished: Option<String>,
}

/// Copy `from` (a path inside the archive, `DIR/*` for a directory's content; omitted
/// for a plain download) to `to` (inside the sysext; ending in `/` means into it).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Install {
    #[serde(default)]
    pub from: Option<String>,
    pub to: String,
    /// Octal mode, e.g. `"0755"`; default: the archive's mode, 0644 for plain downloads.
    #[serde(default)]
    pub mode: Option<String>,
    /// Variant group (see [`Variant`]).
    #[serde(default)]
    pub group: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlineFile {
    pub path: String,
    pub content: String,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Symlink {
    pub path: String,
    pub target: String,
    #[serde(default)]
    pub group: Option<String>,
}

/// `usr/lib/systemd/system/TARGET.d/10-NAME-UNIT.conf` with `[Unit] Upholds=UNIT`: the
/// unit starts when the extension is merged and is kept running.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upholds {
    pub target: String,
    pub unit: String,
    #[serde(default)]
    pub group: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("recipe {0}: {1}")]
    Invalid(String, String),
    #[error("no recipe named '{0}' (known: {1})")]
    Unknown(String, String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Pack(#[from] PackError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecipeError + '_ {
    move |source| RecipeError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Recipe {
    pub fn parse(text: &str, origin: &str) -> Result<Recipe, RecipeError> {
        let r: Recipe = toml::from_str(text)
            .map_err(|e| RecipeError::Invalid(origin.to_owned(), e.to_string()))?;
        r.validate()
            .map_err(|e| RecipeError::Invalid(origin.to_owned(), e))?;
        Ok(r)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(p) = super::name_problem(&self.name) {
            return Err(p);
        }
        for a in self.arch.keys() {
            let parsed: Arch = a.parse()?;
            if parsed.systemd_name() != a {
                return Err(format!(
                    "[arch.{a}]: use the systemd name {}",
                    parsed.systemd_name()
                ));
            }
        }
        if self.arch.is_empty() {
            return Err("no [arch.*] table: name the architectures it builds".into());
        }
        for d in &self.downloads {
            let c = &d.checksum;
            let n = [
                c.sums.is_some(),
                c.github.is_some(),
                !c.sha256.is_empty(),
                c.unpublished.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if n != 1 {
                return Err(format!(
                    "{}: checksum needs exactly one of sums, github, sha256, unpublished",
                    d.url
                ));
            }
            if c.github.is_some() != c.tag.is_some() {
                return Err(format!(
                    "{}: checksum.github and checksum.tag go together",
                    d.url
                ));
            }
            if d.install.is_empty() {
                return Err(format!("{}: nothing to install from it", d.url));
            }
            for i in &d.install {
                check_dest(&i.to)?;
                if let Some(m) = &i.mode {
                    parse_mode(m)?;
                }
            }
        }
        for f in &self.files {
            check_dest(&f.path)?;
            if let Some(m) = &f.mode {
                parse_mode(m)?;
            }
        }
        for s in &self.symlinks {
            check_dest(&s.path)?;
        }
        for u in &self.upholds {
            for x in [&u.target, &u.unit] {
                if x.is_empty() || x.contains('/') || !x.contains('.') {
                    return Err(format!("upholds: '{x}' is not a unit name"));
                }
            }
        }
        let groups = self.groups();
        for (v, var) in &self.variants {
            if let Some(p) = super::name_problem(v) {
                return Err(format!("[variant.{v}]: {p}"));
            }
            if let Some(p) = var.name.as_deref().and_then(super::name_problem) {
                return Err(format!("[variant.{v}] name: {p}"));
            }
            if var.groups.is_empty() {
                return Err(format!("[variant.{v}]: groups is empty"));
            }
            if let Some(g) = var.groups.iter().find(|g| !groups.contains(g)) {
                return Err(format!("[variant.{v}]: no item is in group '{g}'"));
            }
        }
        match (&self.versions.github, &self.versions.index, &self.versions.pattern) {
            (Some(_), None, None) => {}
            (None, Some(_), Some(p)) if p.contains("{version}") => {}
            _ => {
                return Err(
                    "[versions]: give github = OWNER/REPO, or index = URL with pattern = '...{version}...'".into()
                )
            }
        }
        Ok(())
    }

    /// Every group named by an item.
    fn groups(&self) -> Vec<String> {
        let mut g: Vec<String> = self
            .downloads
            .iter()
            .flat_map(|d| d.install.iter().map(|i| &i.group))
            .chain(self.files.iter().map(|f| &f.group))
            .chain(self.symlinks.iter().map(|s| &s.group))
            .chain(self.upholds.iter().map(|u| &u.group))
            .flatten()
            .cloned()
            .collect();
        g.sort();
        g.dedup();
        g
    }

    /// The recipe as variant `name` builds it: only ungrouped items and those of the
    /// variant's groups, downloads left with nothing to install dropped, renamed if the
    /// variant says so. `None` is the whole recipe.
    pub fn select(&self, name: Option<&str>) -> Result<Recipe, RecipeError> {
        let Some(name) = name else {
            return Ok(self.clone());
        };
        let v = self.variants.get(name).ok_or_else(|| {
            RecipeError::Invalid(
                self.name.clone(),
                if self.variants.is_empty() {
                    format!("has no variant {name} (it has no variants)")
                } else {
                    format!(
                        "has no variant {name} (it has {})",
                        self.variants.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                },
            )
        })?;
        let keep = |g: &Option<String>| g.as_ref().is_none_or(|g| v.groups.contains(g));
        let mut r = self.clone();
        for d in &mut r.downloads {
            d.install.retain(|i| keep(&i.group));
        }
        r.downloads.retain(|d| !d.install.is_empty());
        r.files.retain(|f| keep(&f.group));
        r.symlinks.retain(|s| keep(&s.group));
        r.upholds.retain(|u| keep(&u.group));
        if let Some(n) = &v.name {
            r.name = n.clone();
        }
        r.variants.clear();
        Ok(r)
    }

    /// Template variables for a build.
    pub fn vars(&self, version: &str, arch: Arch) -> Result<BTreeMap<String, String>, RecipeError> {
        let per = self.arch.get(arch.systemd_name()).ok_or_else(|| {
            RecipeError::Invalid(
                self.name.clone(),
                format!(
                    "no build for {arch} (it builds {})",
                    self.arch.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        let mut v = self.vars.clone();
        v.extend(per.iter().map(|(k, x)| (k.clone(), x.clone())));
        v.insert("version".into(), version.to_owned());
        v.insert("name".into(), self.name.clone());
        v.insert("systemd_arch".into(), arch.systemd_name().to_owned());
        Ok(v)
    }
}

fn parse_mode(m: &str) -> Result<u32, String> {
    u32::from_str_radix(m, 8)
        .ok()
        .filter(|v| *v <= 0o7777)
        .ok_or_else(|| format!("mode '{m}' is not octal like \"0755\""))
}

/// A destination inside the sysext: relative, under `usr/` or `opt/`, no `..`.
fn check_dest(p: &str) -> Result<(), String> {
    let path = Path::new(p);
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(format!(
            "'{p}': must be a relative path without '.' or '..'"
        ));
    }
    match path.components().next() {
        Some(Component::Normal(t))
            if pack::MERGED_TOPS.iter().any(|m| t == *m) && path.components().count() > 1 =>
        {
            Ok(())
        }
        _ => Err(format!(
            "'{p}': must lie under usr/ or opt/ (systemd-sysext merges nothing else)"
        )),
    }
}

/// Replace `{key}` by its value; an unknown key is an error.
pub fn expand(template: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let j = after
            .find('}')
            .ok_or_else(|| format!("'{template}': unclosed '{{'"))?;
        let key = &after[..j];
        let v = vars
            .get(key)
            .ok_or_else(|| format!("'{template}': unknown variable {{{key}}}"))?;
        out.push_str(v);
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Where recipes are looked up: a directory (overriding the built-in ones) or built-ins.
pub fn load(name_or_path: &str, dir: Option<&Path>) -> Result<Recipe, RecipeError> {
    let as_path = Path::new(name_or_path);
    if name_or_path.ends_with(".toml") {
        let text = crate::input::read_text(as_path, crate::input::TEXT_CAP).map_err(io(as_path))?;
        return Recipe::parse(&text, name_or_path);
    }
    if let Some(d) = dir {
        let p = d.join(format!("{name_or_path}.toml"));
        if p.is_file() {
            let text = crate::input::read_text(&p, crate::input::TEXT_CAP).map_err(io(&p))?;
            return Recipe::parse(&text, &p.display().to_string());
        }
    }
    match BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
        Some((n, text)) => Recipe::parse(text, n),
        None => Err(RecipeError::Unknown(
            name_or_path.to_owned(),
            names(dir).join(", "),
        )),
    }
}

/// Names of every known recipe.
pub fn names(dir: Option<&Path>) -> Vec<String> {
    let mut v: Vec<String> = BUILTIN.iter().map(|(n, _)| (*n).to_owned()).collect();
    if let Some(Ok(rd)) = dir.map(std::fs::read_dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(stem) = n.strip_suffix(".toml") {
                v.push(stem.to_owned());
            }
        }
    }
    v.sort();
    v.dedup();
    v
}

/// Inputs to a recipe run besides the recipe.
pub struct CreateOptions<'a> {
    pub version: &'a str,
    pub arch: Arch,
    pub fetcher: &'a Fetcher,
    /// `--sha256 [FILE=]HEX`: digests given by the user, by download file name (`""`
    /// for a bare digest, which applies when the recipe has a single download).
    pub user_sums: &'a [(String, String)],
    pub pack: PackOptions,
    pub output: &'a Path,
    /// Scratch space for downloads and the staged tree.
    pub work_dir: &'a Path,
    /// Progress messages (stderr in the CLI).
    pub log: &'a dyn Fn(&str),
}

/// Download, verify, stage and pack.
pub fn create(r: &Recipe, o: &CreateOptions<'_>) -> Result<PackReport, RecipeError> {
    let bad = |what: String| RecipeError::Invalid(r.name.clone(), what);
    let vars = r.vars(o.version, o.arch)?;
    pack::validate(&o.pack)?;
    let work = crate::cleanup::temp_dir(o.work_dir, "recipe-").map_err(io(o.work_dir))?;
    let root = work.path().join("root");
    std::fs::create_dir(&root).map_err(io(&root))?;
    for (i, d) in r.downloads.iter().enumerate() {
        let url = expand(&d.url, &vars).map_err(bad)?;
        let file = url
            .rsplit('/')
            .next()
            .filter(|f| !f.is_empty())
            .unwrap_or("download")
            .to_owned();
        let dl = work.path().join(format!("dl{i}-{file}"));
        (o.log)(&format!("fetching {}", o.fetcher.resolve(&url)));
        let actual = o.fetcher.download(&url, &dl)?;
        let expected = expected_sum(r, d, &vars, &url, &file, o, &actual)?;
        if expected != actual {
            return Err(FetchError::Mismatch {
                url,
                expected,
                actual,
            }
            .into());
        }
        (o.log)(&format!("verified {file}: sha256 {actual}"));
        let kind = ArchiveKind::from_url(&url);
        let src_root = if kind == ArchiveKind::Plain {
            None
        } else {
            let x = work.path().join(format!("x{i}"));
            std::fs::create_dir(&x).map_err(io(&x))?;
            fetch::unpack(&dl, kind, &x)?;
            Some(x)
        };
        for inst in &d.install {
            let to = expand(&inst.to, &vars).map_err(bad)?;
            check_dest(&to).map_err(bad)?;
            let mode = inst
                .mode
                .as_deref()
                .map(parse_mode)
                .transpose()
                .map_err(bad)?;
            match (&src_root, &inst.from) {
                (None, None) => {
                    let dst = dest_file(&root, &to, &file);
                    copy_file(&dl, &dst, Some(mode.unwrap_or(0o644)))?;
                }
                (None, Some(_)) => {
                    return Err(bad(format!(
                        "{url} is not an archive: install.from does not apply"
                    )))
                }
                (Some(_), None) => {
                    return Err(bad(format!(
                        "{url} is an archive: say which files (install.from)"
                    )))
                }
                (Some(x), Some(from)) => {
                    let from = expand(from, &vars).map_err(bad)?;
                    if Path::new(&from)
                        .components()
                        .any(|c| !matches!(c, Component::Normal(_)))
                    {
                        return Err(bad(format!(
                            "install.from '{from}': relative, without '..'"
                        )));
                    }
                    let whole = if from == "*" {
                        Some("")
                    } else {
                        from.strip_suffix("/*")
                    };
                    if let Some(dir) = whole {
                        let sd = x.join(dir);
                        let dd = root.join(to.trim_end_matches('/'));
                        copy_tree(&sd, &dd, mode).map_err(|e| match e {
                            RecipeError::Io { path, source }
                                if source.kind() == std::io::ErrorKind::NotFound =>
                            {
                                bad(format!("{url} has no {} ({})", from, path.display()))
                            }
                            e => e,
                        })?;
                    } else if let Some(pattern) = Path::new(&from)
                        .file_name()
                        .and_then(|f| f.to_str())
                        .filter(|f| f.contains('*'))
                    {
                        let sd = match Path::new(&from).parent() {
                            Some(p) if !p.as_os_str().is_empty() => x.join(p),
                            _ => x.clone(),
                        };
                        let mut matched: Vec<PathBuf> = match std::fs::read_dir(&sd) {
                            Ok(rd) => rd
                                .flatten()
                                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                                .filter(|e| {
                                    e.file_name()
                                        .to_str()
                                        .is_some_and(|n| glob_match(pattern, n))
                                })
                                .map(|e| e.path())
                                .collect(),
                            Err(_) => Vec::new(),
                        };
                        if matched.is_empty() {
                            return Err(bad(format!("{url} has no file matching {from}")));
                        }
                        matched.sort();
                        for m in matched {
                            let base = m
                                .file_name()
                                .map(|f| f.to_string_lossy().into_owned())
                                .unwrap_or_default();
                            copy_file(&m, &dest_file(&root, &to, &base), mode)?;
                        }
                    } else {
                        let s = x.join(&from);
                        if !s.is_file() {
                            return Err(bad(format!("{url} has no file {from}")));
                        }
                        let base = Path::new(&from)
                            .file_name()
                            .map(|f| f.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        copy_file(&s, &dest_file(&root, &to, &base), mode)?;
                    }
                }
            }
        }
    }
    for f in &r.files {
        let p = root.join(&f.path);
        mkparent(&p)?;
        std::fs::write(&p, &f.content).map_err(io(&p))?;
        let mode = f
            .mode
            .as_deref()
            .map(parse_mode)
            .transpose()
            .map_err(bad)?
            .unwrap_or(0o644);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(io(&p))?;
    }
    for u in &r.upholds {
        let p = root.join(format!(
            "usr/lib/systemd/system/{}.d/10-{}-{}.conf",
            u.target, r.name, u.unit
        ));
        mkparent(&p)?;
        std::fs::write(&p, format!("[Unit]\nUpholds={}\n", u.unit)).map_err(io(&p))?;
    }
    for s in &r.symlinks {
        let p = root.join(&s.path);
        mkparent(&p)?;
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink(&s.target, &p).map_err(io(&p))?;
    }
    super::fix_dir_modes(&root).map_err(io(&root))?;
    (o.log)(&format!("packing {}", o.output.display()));
    Ok(pack::pack(&root, o.output, &o.pack)?)
}

fn expected_sum(
    r: &Recipe,
    d: &Download,
    vars: &BTreeMap<String, String>,
    url: &str,
    file: &str,
    o: &CreateOptions<'_>,
    actual: &str,
) -> Result<String, RecipeError> {
    let bad = |what: String| RecipeError::Invalid(r.name.clone(), what);
    let user = o.user_sums.iter().find(|(f, _)| f == file).or_else(|| {
        if r.downloads.len() == 1 {
            o.user_sums.iter().find(|(f, _)| f.is_empty())
        } else {
            None
        }
    });
    if let Some((_, h)) = user {
        return Ok(h.to_ascii_lowercase());
    }
    let c = &d.checksum;
    let unverifiable = |why: String| {
        RecipeError::Fetch(FetchError::Checksum {
            url: url.to_owned(),
            what: format!("{why}; its sha256 is {actual}: check it against a source you trust, then pass --sha256 {file}={actual}"),
        })
    };
    if let Some(t) = &c.sums {
        let sums_url = expand(t, vars).map_err(bad)?;
        let text = o.fetcher.text(&sums_url)?;
        return fetch::sum_for(&text, file).ok_or_else(|| {
            RecipeError::Fetch(FetchError::Checksum {
                url: o.fetcher.resolve(&sums_url),
                what: format!("no sha256 for {file}"),
            })
        });
    }
    if let (Some(repo), Some(tag)) = (&c.github, &c.tag) {
        let tag = expand(tag, vars).map_err(bad)?;
        let api = format!("https://api.github.com/repos/{repo}/releases/tags/{tag}");
        let json = o.fetcher.text(&api)?;
        return fetch::github_digest(&json, file).map_err(unverifiable);
    }
    if !c.sha256.is_empty() {
        let key = format!("{}/{}", o.version, o.arch.systemd_name());
        return match c.sha256.get(&key) {
            Some(h) if fetch::is_sha256(h) => Ok(h.to_ascii_lowercase()),
            Some(h) => Err(bad(format!("pinned sha256 for {key} is not a sha256: {h}"))),
            None => Err(unverifiable(format!("the recipe pins no sha256 for {key}"))),
        };
    }
    Err(unverifiable(
        c.unpublished
            .clone()
            .unwrap_or_else(|| "no checksum source".into()),
    ))
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == name;
    }
    if name.len() < first.len() + last.len() || !name.starts_with(first) || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

fn dest_file(root: &Path, to: &str, base: &str) -> PathBuf {
    if to.ends_with('/') {
        root.join(to).join(base)
    } else {
        root.join(to)
    }
}

fn mkparent(p: &Path) -> Result<(), RecipeError> {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    Ok(())
}

fn copy_file(src: &Path, dst: &Path, mode: Option<u32>) -> Result<(), RecipeError> {
    mkparent(dst)?;
    let _ = std::fs::remove_file(dst);
    std::fs::copy(src, dst).map_err(io(dst))?;
    if let Some(m) = mode {
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m)).map_err(io(dst))?;
    }
    Ok(())
}

/// Copy the content of `src` into `dst`: files (with `mode` if given), symlinks, subdirs.
fn copy_tree(src: &Path, dst: &Path, mode: Option<u32>) -> Result<(), RecipeError> {
    std::fs::create_dir_all(dst).map_err(io(dst))?;
    let mut entries: Vec<_> = std::fs::read_dir(src)
        .map_err(io(src))?
        .collect::<Result<_, _>>()
        .map_err(io(src))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let s = e.path();
        let d = dst.join(e.file_name());
        let ft = e.file_type().map_err(io(&s))?;
        if ft.is_dir() {
            copy_tree(&s, &d, mode)?;
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&s).map_err(io(&s))?;
            let _ = std::fs::remove_file(&d);
            std::os::unix::fs::symlink(t, &d).map_err(io(&d))?;
        } else if ft.is_file() {
            copy_file(&s, &d, mode)?;
        }
    }
    Ok(())
}

/// Upstream versions usable as sysext versions (no `-`), newest first.
pub fn versions(r: &Recipe, fetcher: &Fetcher) -> Result<Vec<String>, RecipeError> {
    let strip = r.versions.strip_prefix.as_deref().unwrap_or("");
    let mut out: Vec<String> = if let Some(repo) = &r.versions.github {
        let url = format!("https://api.github.com/repos/{repo}/releases?per_page=100");
        let json = fetcher.text(&url)?;
        let v: serde_json::Value = serde_json::from_str(&json).map_err(|e| {
            RecipeError::Invalid(
                r.name.clone(),
                format!("{}: not GitHub releases JSON: {e}", fetcher.resolve(&url)),
            )
        })?;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter(|rel| {
                        !rel.get("draft").and_then(|d| d.as_bool()).unwrap_or(false)
                            && !rel
                                .get("prerelease")
                                .and_then(|d| d.as_bool())
                                .unwrap_or(false)
                    })
                    .filter_map(|rel| rel.get("tag_name").and_then(|t| t.as_str()))
                    .map(|t| t.strip_prefix(strip).unwrap_or(t).to_owned())
                    .collect()
            })
            .unwrap_or_default()
    } else if let (Some(index), Some(pattern)) = (&r.versions.index, &r.versions.pattern) {
        let text = fetcher.text(index)?;
        scan_versions(&text, pattern)
            .into_iter()
            .map(|t| t.strip_prefix(strip).unwrap_or(&t).to_owned())
            .collect()
    } else {
        Vec::new()
    };
    out.retain(|v| !v.is_empty() && !v.contains('-') && !v.contains('/'));
    out.sort_by(|a, b| version_cmp(b, a));
    out.dedup();
    Ok(out)
}

/// Every `{version}` matched by `pattern` (e.g. `docker-{version}.tgz`) in `text`.
pub fn scan_versions(text: &str, pattern: &str) -> Vec<String> {
    let Some((pre, post)) = pattern.split_once("{version}") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(pre) {
        let after = &rest[i + pre.len()..];
        let n = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || ".+_-".contains(c)))
            .unwrap_or(after.len());
        // the version must be followed by `post`; back off to the longest prefix that is
        let cand = &after[..n];
        let mut found = None;
        for end in (1..=cand.len()).rev() {
            if after[end..].starts_with(post)
                && cand[..end].starts_with(|c: char| c.is_ascii_digit())
            {
                found = Some(&cand[..end]);
                break;
            }
        }
        if let Some(v) = found {
            out.push(v.to_owned());
        }
        rest = after;
        if rest.is_empty() {
            break;
        }
    }
    out
}

/// Compare dotted versions numerically where the parts are numbers.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |s: &str| -> Vec<(u64, String)> {
        s.split(['.', '+'])
            .map(|p| {
                let digits: String = p.chars().take_while(|c| c.is_ascii_digit()).collect();
                (digits.parse().unwrap_or(0), p[digits.len()..].to_owned())
            })
            .collect()
    };
    parts(a).cmp(&parts(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_recipes_parse() {
        for (n, text) in BUILTIN {
            let r = Recipe::parse(text, n).unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(&r.name, n);
            for a in [Arch::X86_64, Arch::Arm64] {
                let vars = r.vars("1.2.3", a).unwrap();
                for d in &r.downloads {
                    expand(&d.url, &vars).unwrap_or_else(|e| panic!("{n}: {e}"));
                    if let Some(s) = &d.checksum.sums {
                        expand(s, &vars).unwrap();
                    }
                    for i in &d.install {
                        expand(&i.to, &vars).unwrap();
                        if let Some(f) = &i.from {
                            expand(f, &vars).unwrap();
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("docker*", "docker") && glob_match("docker*", "docker-proxy"));
        assert!(
            glob_match("containerd*", "containerd-shim-runc-v2")
                && !glob_match("containerd*", "ctr")
        );
        assert!(
            glob_match("*-v2", "containerd-shim-runc-v2")
                && glob_match("a*b*c", "a-b-c")
                && !glob_match("a*b*c", "a-c")
        );
        assert!(glob_match("runc", "runc") && !glob_match("runc", "runc2"));
    }

    #[test]
    fn docker_variants_split_the_recipe() {
        let r = load("docker", None).unwrap();
        let files = |r: &Recipe| -> Vec<String> {
            let mut v: Vec<String> = r
                .downloads
                .iter()
                .flat_map(|d| d.install.iter().filter_map(|i| i.from.clone()))
                .collect();
            v.extend(r.files.iter().map(|f| f.path.clone()));
            v.extend(r.upholds.iter().map(|u| u.unit.clone()));
            v
        };
        let all = files(&r.select(None).unwrap());
        let d = r.select(Some("only-docker")).unwrap();
        let c = r.select(Some("only-containerd")).unwrap();
        assert_eq!(d.name, "docker");
        assert_eq!(c.name, "containerd");
        let (fd, fc) = (files(&d), files(&c));
        assert!(
            fd.iter()
                .all(|f| !f.contains("containerd") && !f.contains("runc")),
            "{fd:?}"
        );
        assert!(
            fc.iter()
                .all(|f| !f.rsplit('/').next().unwrap_or(f).contains("docker")),
            "{fc:?}"
        );
        assert_eq!(
            fd.len() + fc.len(),
            all.len(),
            "every item is in exactly one variant"
        );
        assert!(r
            .select(Some("nope"))
            .unwrap_err()
            .to_string()
            .contains("has no variant nope (it has only-containerd, only-docker)"));
        let bad = "name='x'\ndescription='d'\n[versions]\ngithub='a/b'\n[arch.x86-64]\n[variant.v]\ngroups=['g']\n";
        assert!(Recipe::parse(bad, "x")
            .unwrap_err()
            .to_string()
            .contains("no item is in group 'g'"));
    }

    #[test]
    fn templates() {
        let mut v = BTreeMap::new();
        v.insert("version".to_owned(), "1.0".to_owned());
        assert_eq!(expand("a-{version}.tgz", &v).unwrap(), "a-1.0.tgz");
        assert!(expand("{nope}", &v)
            .unwrap_err()
            .contains("unknown variable {nope}"));
        assert!(expand("{version", &v).is_err());
    }

    #[test]
    fn rejects_bad_recipes() {
        let base = "name='x'\ndescription='d'\n[versions]\ngithub='a/b'\n[arch.x86-64]\n";
        assert!(Recipe::parse(base, "x").is_ok());
        let bad_dest = format!(
            "{base}[[download]]\nurl='https://h/x'\nchecksum={{sums='https://h/s'}}\ninstall=[{{to='etc/x'}}]\n"
        );
        assert!(Recipe::parse(&bad_dest, "x")
            .unwrap_err()
            .to_string()
            .contains("under usr/ or opt/"));
        let two = format!("{base}[[download]]\nurl='https://h/x'\nchecksum={{sums='s', unpublished='no'}}\ninstall=[{{to='usr/bin/x'}}]\n");
        assert!(Recipe::parse(&two, "x")
            .unwrap_err()
            .to_string()
            .contains("exactly one"));
        assert!(Recipe::parse(&format!("{base}typo=1\n"), "x").is_err());
        assert!(Recipe::parse(
            "name='x'\ndescription='d'\n[versions]\ngithub='a/b'\n[arch.amd64]\n",
            "x"
        )
        .is_err());
    }

    #[test]
    fn scans_and_sorts_versions() {
        let html = r#"<a href="docker-27.0.1.tgz">docker-27.0.1.tgz</a> <a href="docker-9.1.tgz">x</a> docker-rootless-extras-27.0.1.tgz docker-28.0.0-rc.1.tgz"#;
        assert_eq!(
            scan_versions(html, "docker-{version}.tgz"),
            vec!["27.0.1", "27.0.1", "9.1", "28.0.0-rc.1"]
        );
        let mut s = vec!["1.9.0".to_owned(), "1.10.0".into(), "1.31.1+k3s1".into()];
        s.sort_by(|a, b| version_cmp(b, a));
        assert_eq!(s, vec!["1.31.1+k3s1", "1.10.0", "1.9.0"]);
    }
}
