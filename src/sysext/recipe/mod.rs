//! Recipes: TOML data files (`recipes/NAME.toml`, with an optional static tree
//! `recipes/NAME/files/`, built into the binary) that say where an upstream release comes
//! from per architecture, how its checksum is verified, which files go where in the sysext,
//! and which systemd units and `Upholds=` drop-ins ship with it. `create` runs a recipe and
//! packs the result; [`versions`] lists upstream releases; [`release`] lays out a
//! self-hosted bakery.
//!
//! Versions are spelled as the Flatcar sysext bakery spells them (`prefix = "v"`: kubernetes
//! `v1.32.2`, wasmtime `v24.0.0`), so image names match the bakery's; templates see
//! `{version}` (that spelling), `{bare_version}` (without the prefix) and `{minor}`
//! (`1.32`). Items may carry `when` (see [`Cond`]): version ranges and variables given or
//! not. Variables come from `[vars]` (defaults), the command line (`--set KEY=VALUE`), or
//! `[lookup.KEY]` (a URL read at build time, e.g. the runc version a containerd release
//! names). After staging, `exclude` removes paths and `[[substitute]]` edits files (a
//! substitution that matches nothing is an error). `[build]` takes programs from an OCI image
//! (flix or flatwrap) for extensions whose upstream ships only sources.
//!
//! Variants split a recipe into images that can be loaded together or apart (docker's
//! `only-docker` / `only-containerd`): items (installs, files, symlinks, upholds) carry
//! an optional `group`, and `[variant.NAME]` lists the groups it keeps (ungrouped items
//! are always kept) and may rename the extension. [`Recipe::select`] applies one.

pub mod release;
pub mod versions;

pub use versions::{scan_versions, version_cmp, versions};

use super::fetch::{self, ArchiveKind, FetchError, Fetcher};
use super::pack::{self, PackError, PackOptions, PackReport};
use crate::arch::Arch;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/recipe_files.rs"));

/// The recipes shipped with flatbake (the files under `recipes/`).
pub const BUILTIN: &[(&str, &str)] = RECIPE_FILES;

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
    /// Variables read from upstream at build time unless given with `--set`.
    #[serde(default)]
    pub lookup: BTreeMap<String, Lookup>,
    /// Paths (templates; `*` in the last part) removed after unpacking.
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default, rename = "substitute")]
    pub substitutes: Vec<Substitute>,
    /// Also publish `NAME-vMAJOR.MINOR.conf` (sysupdate stays on one minor), as the
    /// bakery does for kubernetes, k3s and rke2.
    #[serde(default)]
    pub sysupdate_minor: bool,
    /// The programs come from an OCI image (`--rootfs`), not from downloads.
    #[serde(default)]
    pub build: Option<Build>,
    /// `recipes/NAME/files/**`: (path, content, mode), copied first.
    #[serde(skip)]
    pub tree: Vec<(String, Vec<u8>, u32)>,
}

/// `[lookup.KEY]`: the value of `{KEY}` fetched from `url` (a template): the JSON string at
/// `json` (a top-level key such as `tag_name`), or else the first line of the text.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    pub url: String,
    #[serde(default)]
    pub json: Option<String>,
}

/// `[[substitute]]`: replace `from` by `to` in the staged file `path`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Substitute {
    pub path: String,
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub when: Option<String>,
}

/// `[build]`: the image needs a compiler; its programs come from an OCI image the user
/// builds or pulls (`image` says which), bundled by flix (`flix`: binaries with their
/// libraries) or flatwrap (`flatwrap`: the whole root filesystem with wrappers).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// What the OCI image is (documentation shown by `sysext list`).
    pub image: String,
    #[serde(default)]
    pub flix: Vec<String>,
    #[serde(default)]
    pub flatwrap: Vec<String>,
    /// Directories or files of the image copied as they are (flix only).
    #[serde(default)]
    pub resources: Vec<String>,
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
    /// Removed from tags (containerd's `v2.0.0` → the bakery's `2.0.0`).
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// GitHub `OWNER/REPO` whose tags (not releases) are the versions.
    #[serde(default)]
    pub github_tags: Option<String>,
    /// GitLab `HOST/PROJECT_ID` whose tags are the versions.
    #[serde(default)]
    pub gitlab: Option<String>,
    /// HashiCorp product name, listed through the releases index API.
    #[serde(default)]
    pub hashicorp: Option<String>,
    /// The bakery's spelling starts with this (`v`): added to a version given without it.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Only versions matching this glob (`*` for any run) are listed.
    #[serde(default)]
    pub glob: Option<String>,
    /// `latest` means the newest patch of each of this many newest minors.
    #[serde(default)]
    pub latest_minors: Option<usize>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Download {
    /// URL template; `.tar.gz`, `.tgz`, `.tar.xz`, `.tar.zst`, `.zip` are unpacked,
    /// anything else is a file.
    pub url: String,
    #[serde(default)]
    pub when: Option<String>,
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
    #[serde(default)]
    pub when: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlineFile {
    pub path: String,
    pub content: String,
    /// Expand `{var}` templates in `content`.
    #[serde(default)]
    pub template: bool,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub when: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Symlink {
    pub path: String,
    pub target: String,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub when: Option<String>,
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
    #[serde(default)]
    pub when: Option<String>,
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
        let v = &self.versions;
        let sources = [
            v.github.is_some(),
            v.github_tags.is_some(),
            v.gitlab.is_some(),
            v.hashicorp.is_some(),
            v.index.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources != 1
            || v.index.is_some() != v.pattern.is_some()
            || v.pattern
                .as_deref()
                .is_some_and(|p| !p.contains("{version}"))
        {
            return Err(
                "[versions]: give one of github, github_tags, gitlab (HOST/ID), hashicorp, or index = URL with pattern = '...{version}...'".into(),
            );
        }
        for w in self.conds() {
            Cond::parse(w)?;
        }
        if let Some(b) = &self.build {
            if b.flix.is_empty() == b.flatwrap.is_empty() {
                return Err("[build]: give flix = [...] or flatwrap = [...]".into());
            }
        }
        for x in &self.substitutes {
            check_dest(&x.path)?;
            if x.from.is_empty() {
                return Err(format!("substitute in {}: from is empty", x.path));
            }
        }
        for x in &self.exclude {
            check_dest(x)?;
        }
        Ok(())
    }

    fn conds(&self) -> Vec<&str> {
        let mut w: Vec<&Option<String>> = Vec::new();
        for d in &self.downloads {
            w.push(&d.when);
            w.extend(d.install.iter().map(|i| &i.when));
        }
        w.extend(self.files.iter().map(|f| &f.when));
        w.extend(self.symlinks.iter().map(|f| &f.when));
        w.extend(self.upholds.iter().map(|f| &f.when));
        w.extend(self.substitutes.iter().map(|f| &f.when));
        w.into_iter().flatten().map(String::as_str).collect()
    }

    /// The version as the bakery spells it: the recipe's prefix added when missing.
    pub fn spell(&self, version: &str) -> String {
        match self.versions.prefix.as_deref() {
            Some(p) if !version.starts_with(p) => format!("{p}{version}"),
            _ => version.to_owned(),
        }
    }

    /// The recipe for one build: items whose `when` does not hold dropped.
    pub fn resolve(&self, vars: &BTreeMap<String, String>) -> Result<Recipe, RecipeError> {
        let bad = |e: String| RecipeError::Invalid(self.name.clone(), e);
        let holds = |w: &Option<String>| -> Result<bool, RecipeError> {
            match w {
                None => Ok(true),
                Some(w) => Ok(Cond::parse(w).map_err(bad)?.holds(vars)),
            }
        };
        let mut r = self.clone();
        let mut downloads = Vec::new();
        for mut d in keep_when(r.downloads, &holds)? {
            d.install = keep_when(d.install, &holds)?;
            if !d.install.is_empty() {
                downloads.push(d);
            }
        }
        r.downloads = downloads;
        r.files = keep_when(r.files, &holds)?;
        r.symlinks = keep_when(r.symlinks, &holds)?;
        r.upholds = keep_when(r.upholds, &holds)?;
        r.substitutes = keep_when(r.substitutes, &holds)?;
        Ok(r)
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
        let version = self.spell(version);
        let bare = match self.versions.prefix.as_deref() {
            Some(p) => version.strip_prefix(p).unwrap_or(&version).to_owned(),
            None => version.clone(),
        };
        v.insert("minor".into(), versions::minor(&bare));
        v.insert("bare_version".into(), bare);
        v.insert("version".into(), version);
        v.insert("name".into(), self.name.clone());
        v.insert("systemd_arch".into(), arch.systemd_name().to_owned());
        Ok(v)
    }
}

/// A `when` condition: clauses joined by `,`, all of which must hold. A clause compares
/// the version (`>= 0.14.0`, `< v0.15.0`, `== 1.2`, `!= 1.2`; a leading `v` is ignored) or
/// asks for a variable (`set with_cni`, `unset with_cni`; empty counts as unset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond(Vec<Clause>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Clause {
    Version(String, String),
    Set(String, bool),
}

impl Cond {
    pub fn parse(w: &str) -> Result<Cond, String> {
        let mut out = Vec::new();
        for c in w.split(',').map(str::trim) {
            if let Some(v) = c.strip_prefix("unset ") {
                out.push(Clause::Set(v.trim().to_owned(), false));
            } else if let Some(v) = c.strip_prefix("set ") {
                out.push(Clause::Set(v.trim().to_owned(), true));
            } else {
                let op = ["<=", ">=", "==", "!=", "<", ">"]
                    .into_iter()
                    .find(|o| c.starts_with(o))
                    .ok_or_else(|| {
                        format!("when '{w}': expected '>= VERSION', '< VERSION', 'set VAR' ... joined by ','")
                    })?;
                let v = c[op.len()..].trim();
                if v.is_empty() {
                    return Err(format!("when '{w}': no version after {op}"));
                }
                out.push(Clause::Version(op.to_owned(), v.to_owned()));
            }
        }
        Ok(Cond(out))
    }

    pub fn holds(&self, vars: &BTreeMap<String, String>) -> bool {
        use std::cmp::Ordering::*;
        let version = vars.get("version").map(String::as_str).unwrap_or("");
        self.0.iter().all(|c| match c {
            Clause::Set(k, want) => vars.get(k).is_some_and(|v| !v.is_empty()) == *want,
            Clause::Version(op, v) => {
                let o = version_cmp(version, v);
                match op.as_str() {
                    "<" => o == Less,
                    "<=" => o != Greater,
                    ">" => o == Greater,
                    ">=" => o != Less,
                    "==" => o == Equal,
                    _ => o != Equal,
                }
            }
        })
    }
}

fn parse_mode(m: &str) -> Result<u32, String> {
    u32::from_str_radix(m, 8)
        .ok()
        .filter(|v| *v <= 0o7777)
        .ok_or_else(|| format!("mode '{m}' is not octal like \"0755\""))
}

/// A destination inside the sysext: relative, under `usr/` or `opt/` (or one of them
/// itself, as `usr/`, for a directory's content), no `..`.
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
            if pack::MERGED_TOPS.iter().any(|m| t == *m)
                && (path.components().count() > 1 || p.ends_with('/')) =>
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
/// A recipe's static tree is `NAME/files/` beside its TOML file.
pub fn load(name_or_path: &str, dir: Option<&Path>) -> Result<Recipe, RecipeError> {
    let as_path = Path::new(name_or_path);
    if name_or_path.ends_with(".toml") {
        let text = crate::input::read_text(as_path, crate::input::TEXT_CAP).map_err(io(as_path))?;
        let mut r = Recipe::parse(&text, name_or_path)?;
        let stem = as_path.with_extension("");
        r.tree = read_tree(&stem.join("files"))?;
        return Ok(r);
    }
    if let Some(d) = dir {
        let p = d.join(format!("{name_or_path}.toml"));
        if p.is_file() {
            let text = crate::input::read_text(&p, crate::input::TEXT_CAP).map_err(io(&p))?;
            let mut r = Recipe::parse(&text, &p.display().to_string())?;
            r.tree = read_tree(&d.join(name_or_path).join("files"))?;
            return Ok(r);
        }
    }
    match BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
        Some((n, text)) => {
            let mut r = Recipe::parse(text, n)?;
            r.tree = RECIPE_TREES
                .iter()
                .filter(|(rn, ..)| rn == n)
                .map(|(_, p, c, m)| ((*p).to_owned(), c.to_vec(), *m))
                .collect();
            Ok(r)
        }
        None => Err(RecipeError::Unknown(
            name_or_path.to_owned(),
            names(dir).join(", "),
        )),
    }
}

/// Files under a recipe's `files/` directory (none when it does not exist); only regular
/// files, at most 1000, each at most 1 MiB, paths under usr/ or opt/.
fn read_tree(root: &Path) -> Result<Vec<(String, Vec<u8>, u32)>, RecipeError> {
    let mut out = Vec::new();
    if !root.is_dir() {
        return Ok(out);
    }
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(io(&d))? {
            let e = e.map_err(io(&d))?;
            let p = e.path();
            let ft = e.file_type().map_err(io(&p))?;
            if ft.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p
                .strip_prefix(root)
                .map(|r| r.display().to_string())
                .unwrap_or_default();
            if !ft.is_file() || out.len() >= 1000 {
                return Err(RecipeError::Invalid(
                    root.display().to_string(),
                    format!("{rel}: only up to 1000 regular files belong in files/"),
                ));
            }
            check_dest(&rel).map_err(|e| RecipeError::Invalid(root.display().to_string(), e))?;
            let data = crate::input::read_text(&p, 1 << 20)
                .map(String::into_bytes)
                .map_err(io(&p))?;
            let mode = if e.metadata().map_err(io(&p))?.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            out.push((rel, data, mode));
        }
    }
    out.sort();
    Ok(out)
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
    /// `--set KEY=VALUE`: variables given on the command line.
    pub set: &'a [(String, String)],
    /// The OCI image (or with the flag, an extracted tree) of a `[build]` recipe.
    pub rootfs: Option<(&'a Path, bool)>,
}

/// Template variables of one build: the recipe's, then `--set`, then lookups.
pub fn build_vars(
    r: &Recipe,
    o: &CreateOptions<'_>,
) -> Result<BTreeMap<String, String>, RecipeError> {
    let bad = |what: String| RecipeError::Invalid(r.name.clone(), what);
    let mut vars = r.vars(o.version, o.arch)?;
    for (k, v) in o.set {
        if !r.vars.contains_key(k) && !r.lookup.contains_key(k) && !r.conds_mention(k) {
            return Err(bad(format!(
                "--set {k}: the recipe has no variable {k} (it has {})",
                r.settable().join(", ")
            )));
        }
        if !is_token(v) {
            return Err(bad(format!(
                "--set {k}={v}: a value is letters, digits and . _ + - (under 100 characters)"
            )));
        }
        vars.insert(k.clone(), v.clone());
    }
    for (k, l) in &r.lookup {
        if o.set.iter().any(|(s, _)| s == k) {
            continue;
        }
        let url = expand(&l.url, &vars).map_err(bad)?;
        let text = o.fetcher.text(&url)?;
        let value = match &l.json {
            Some(key) => serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|j| j.get(key).and_then(|v| v.as_str()).map(str::to_owned)),
            None => text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_owned),
        };
        let value = value
            .filter(|v| {
                !v.is_empty()
                    && v.len() < 100
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
            })
            .ok_or_else(|| {
                bad(format!(
                    "{}: no usable value for {{{k}}}; pass --set {k}=VALUE",
                    o.fetcher.resolve(&url)
                ))
            })?;
        (o.log)(&format!("{k} = {value} (from {})", o.fetcher.resolve(&url)));
        vars.insert(k.clone(), value);
    }
    Ok(vars)
}

/// A variable's value as it may go into URLs and file names.
fn is_token(v: &str) -> bool {
    !v.is_empty()
        && v.len() < 100
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
}

impl Recipe {
    fn conds_mention(&self, k: &str) -> bool {
        self.conds()
            .iter()
            .any(|w| w.split(',').any(|c| c.split_whitespace().nth(1) == Some(k)))
    }

    /// Variables `--set` may give.
    pub fn settable(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .vars
            .keys()
            .chain(self.lookup.keys())
            .cloned()
            .collect();
        for w in self.conds() {
            for c in w.split(',') {
                let mut it = c.split_whitespace();
                if let (Some("set" | "unset"), Some(k)) = (it.next(), it.next()) {
                    v.push(k.to_owned());
                }
            }
        }
        v.sort();
        v.dedup();
        v
    }
}

/// Download, verify, stage and pack.
pub fn create(r: &Recipe, o: &CreateOptions<'_>) -> Result<PackReport, RecipeError> {
    let bad = |what: String| RecipeError::Invalid(r.name.clone(), what);
    pack::validate(&o.pack)?;
    if r.build.is_none() && o.rootfs.is_some() {
        return Err(bad(
            "downloads its programs: --rootfs applies only to recipes built from an OCI image"
                .into(),
        ));
    }
    if r.build.is_some() && o.rootfs.is_none() {
        return Err(bad(format!(
            "builds from an OCI image ({}): pass --rootfs IMAGE",
            r.build.as_ref().map(|b| b.image.as_str()).unwrap_or("")
        )));
    }
    let vars = build_vars(r, o)?;
    let r = &r.resolve(&vars)?;
    let work = crate::cleanup::temp_dir(o.work_dir, "recipe-").map_err(io(o.work_dir))?;
    let root = work.path().join("root");
    std::fs::create_dir(&root).map_err(io(&root))?;
    for (path, data, mode) in &r.tree {
        let p = root.join(path);
        mkparent(&p)?;
        std::fs::write(&p, data).map_err(io(&p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).map_err(io(&p))?;
    }
    if let (Some(b), Some((rootfs, from_dir))) = (&r.build, o.rootfs) {
        build_from_image(r, b, rootfs, from_dir, &root, work.path(), o)?;
    }
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
                        inside(x, &sd).map_err(&bad)?;
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
                        inside(x, &sd).map_err(&bad)?;
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
                        inside(x, &s).map_err(&bad)?;
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
        let content = if f.template {
            expand(&f.content, &vars).map_err(bad)?
        } else {
            f.content.clone()
        };
        std::fs::write(&p, content).map_err(io(&p))?;
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
    for x in &r.exclude {
        let x = expand(x, &vars).map_err(bad)?;
        exclude(&root, &x).map_err(bad)?;
    }
    for x in &r.substitutes {
        let path = expand(&x.path, &vars).map_err(bad)?;
        let p = root.join(&path);
        let text =
            std::fs::read_to_string(&p).map_err(|e| bad(format!("substitute: {path}: {e}")))?;
        let from = expand(&x.from, &vars).map_err(bad)?;
        if !text.contains(&from) {
            return Err(bad(format!(
                "substitute: {path} has no '{from}' (upstream changed it: the recipe needs updating)"
            )));
        }
        let to = expand(&x.to, &vars).map_err(bad)?;
        std::fs::write(&p, text.replace(&from, &to)).map_err(io(&p))?;
    }
    super::fix_dir_modes(&root).map_err(io(&root))?;
    (o.log)(&format!("packing {}", o.output.display()));
    Ok(pack::pack(&root, o.output, &o.pack)?)
}

/// `path` (which may not exist) does not lead out of the unpacked archive `root` through
/// a symlink the archive holds (`bin -> /etc`, then `from = "bin/*"`).
fn inside(root: &Path, path: &Path) -> Result<(), String> {
    let (Ok(r), Ok(p)) = (root.canonicalize(), path.canonicalize()) else {
        return Ok(()); // a missing path is reported by the copy that needs it
    };
    if p.starts_with(&r) {
        Ok(())
    } else {
        Err(format!(
            "{}: leads out of the archive (a symlink to {})",
            path.strip_prefix(root).unwrap_or(path).display(),
            p.display()
        ))
    }
}

/// Remove `pattern` (a staged path; `*` in its last part) from the tree; matching nothing
/// is an error, so a recipe notices when upstream moved a file.
fn exclude(root: &Path, pattern: &str) -> Result<(), String> {
    let p = Path::new(pattern);
    let (dir, last) = match (p.parent(), p.file_name().and_then(|f| f.to_str())) {
        (Some(d), Some(l)) => (root.join(d), l),
        _ => return Err(format!("exclude '{pattern}': not a path")),
    };
    let mut hit = false;
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            if e.file_name().to_str().is_some_and(|n| glob_match(last, n)) {
                let path = e.path();
                let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                r.map_err(|err| format!("exclude {}: {err}", path.display()))?;
                hit = true;
            }
        }
    }
    if !hit {
        return Err(format!(
            "exclude '{pattern}': nothing matches (upstream changed its layout: the recipe needs updating)"
        ));
    }
    Ok(())
}

/// `[build]`: extract the OCI image (or take the tree) and bundle its programs into `root`.
fn build_from_image(
    r: &Recipe,
    b: &Build,
    rootfs: &Path,
    from_dir: bool,
    root: &Path,
    work: &Path,
    o: &CreateOptions<'_>,
) -> Result<(), RecipeError> {
    let bad = |what: String| RecipeError::Invalid(r.name.clone(), what);
    let (fs_dir, ours) = if from_dir {
        (rootfs.to_owned(), false)
    } else {
        let x = work.join("rootfs");
        (o.log)(&format!("extracting {}", rootfs.display()));
        super::oci::extract(rootfs, &x, work).map_err(|e| bad(e.to_string()))?;
        (x, true)
    };
    let specs = |v: &[String]| -> Result<Vec<super::flix::BinSpec>, RecipeError> {
        v.iter()
            .map(|s| {
                s.parse::<super::flix::BinSpec>()
                    .map_err(|e| bad(format!("[build] {s}: {e}")))
            })
            .collect()
    };
    // the image must be for the architecture the extension is labelled with
    let progs: Vec<&String> = b.flix.iter().chain(&b.flatwrap).collect();
    for spec in progs {
        let src = spec.split(':').next().unwrap_or(spec);
        let path = super::flix::resolve_in(&fs_dir, src)
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                bad(format!(
                    "[build] {src}: not in the image {}",
                    rootfs.display()
                ))
            })?;
        let mut head = [0u8; 20];
        let got = std::fs::File::open(&path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .ok()
            .filter(|_| head[..4] == *b"\x7fELF")
            .map(|_| u16::from_le_bytes([head[18], head[19]]));
        let want = match o.arch {
            Arch::X86_64 => 62,
            Arch::Arm64 => 183,
        };
        match got {
            Some(m) if m == want => {}
            Some(m) => {
                return Err(bad(format!(
                    "[build] {src} in {} is for another architecture (ELF machine {m}), not {}: pass --arch or an image for {}",
                    rootfs.display(),
                    o.arch,
                    o.arch
                )))
            }
            None => {
                return Err(bad(format!(
                    "[build] {src} in {} is not an ELF program",
                    rootfs.display()
                )))
            }
        }
    }
    if !b.flix.is_empty() {
        let f = super::flix::flix(&fs_dir, &r.name, &specs(&b.flix)?, root)
            .map_err(|e| bad(e.to_string()))?;
        (o.log)(&format!(
            "flixed {} into {}",
            f.binaries.join(", "),
            f.prefix
        ));
        for res in &b.resources {
            let src = super::flix::resolve_in(&fs_dir, res)
                .filter(|p| p.exists())
                .ok_or_else(|| bad(format!("[build] resource {res}: not in the image")))?;
            let dst = root.join(res.trim_start_matches('/'));
            if src.is_dir() {
                copy_tree(&src, &dst, None)?;
            } else {
                copy_file(&src, &dst, None)?;
            }
        }
    } else {
        let w = super::flatwrap::flatwrap(
            &fs_dir,
            ours,
            &super::flatwrap::Options {
                name: r.name.clone(),
                entries: specs(&b.flatwrap)?,
                etc: super::flatwrap::Map::Host,
                var: super::flatwrap::Map::Host,
                home: super::flatwrap::Map::Host,
            },
            root,
        )
        .map_err(|e| bad(e.to_string()))?;
        (o.log)(&format!(
            "wrapped {} around {}/rootfs",
            w.wrappers.join(", "),
            w.prefix
        ));
    }
    Ok(())
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

/// A recipe item that applies only when its `when` condition holds.
trait Conditional {
    fn when(&self) -> &Option<String>;
}

macro_rules! conditional {
    ($($t:ty),*) => {$(
        impl Conditional for $t {
            fn when(&self) -> &Option<String> {
                &self.when
            }
        }
    )*};
}
conditional!(Download, Install, InlineFile, Symlink, Upholds, Substitute);

/// The `items` whose `when` holds, in order.
fn keep_when<T: Conditional>(
    items: Vec<T>,
    holds: &dyn Fn(&Option<String>) -> Result<bool, RecipeError>,
) -> Result<Vec<T>, RecipeError> {
    let mut kept = Vec::new();
    for i in items {
        if holds(i.when())? {
            kept.push(i);
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_recipes_parse() {
        for (n, text) in BUILTIN {
            let r = Recipe::parse(text, n).unwrap_or_else(|e| panic!("{n}: {e}"));
            assert_eq!(&r.name, n);
            assert!(r.arch.len() == 2, "{n}: builds both architectures");
            for a in [Arch::X86_64, Arch::Arm64] {
                let mut vars = r.vars("1.2.3", a).unwrap();
                for k in r.settable() {
                    vars.entry(k).or_insert_with(|| "v9.9.9".into());
                }
                let r = r.resolve(&vars).unwrap();
                for f in r.files.iter().filter(|f| f.template) {
                    expand(&f.content, &vars).unwrap_or_else(|e| panic!("{n}: {e}"));
                }
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
    fn conditions() {
        let mut v = BTreeMap::new();
        v.insert("version".to_owned(), "v0.14.2".to_owned());
        let c = |w: &str| Cond::parse(w).unwrap().holds(&v);
        assert!(c(">= 0.14.0") && c(">=v0.14.0") && !c("< 0.14.0") && c("< 0.15.0"));
        assert!(c(">= 0.14.0, < 0.15.0") && !c(">= 0.14.0, < 0.14.1"));
        assert!(c("== 0.14.2") && c("!= 0.14.1") && c("unset with_cni") && !c("set with_cni"));
        v.insert("with_cni".to_owned(), "v1.6.0".to_owned());
        assert!(Cond::parse("set with_cni").unwrap().holds(&v));
        assert!(Cond::parse("~ 1").is_err() && Cond::parse(">=").is_err());
        // the bakery's spelling: a v added where the recipe's versions carry one
        let k = load("kubernetes", None).unwrap();
        assert_eq!(k.spell("1.32.2"), "v1.32.2");
        assert_eq!(k.spell("v1.32.2"), "v1.32.2");
        let vars = k.vars("1.32.2", Arch::X86_64).unwrap();
        assert_eq!(vars["bare_version"], "1.32.2");
        assert_eq!(vars["minor"], "1.32");
        assert!(
            !k.tree.is_empty(),
            "kubernetes ships its units from recipes/kubernetes/files"
        );
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
