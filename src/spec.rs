//! The build spec (`flatbake build SPEC.toml`): a declarative file naming the input
//! image, extensions, settings and output, expanded into named variants (a matrix of
//! architectures x vendors x extension sets, and/or an explicit list). Each variant
//! becomes the very [`BakeArgs`] the command line builds, so a spec can do exactly what
//! flags can and nothing else. Every problem is reported as `SPEC:LINE:COLUMN: ...`.
//!
//! Paths in a spec are relative to the spec file's directory.

use crate::arch::Arch;
use crate::bake::place::{InstallRule, InstallTo};
use crate::cli::BakeArgs;
use crate::suggest;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The vendor name for the plain disk image (`flatcar_production_image.bin`).
pub const GENERIC: &str = "generic";
/// The plain image's file name in a variant's output directory.
pub const GENERIC_IMAGE: &str = "flatcar_production_image.bin";
/// Largest spec file read.
const SPEC_CAP: u64 = 1 << 20;
/// Most variants one spec may expand to.
const MAX_VARIANTS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{file}:{line}:{column}: {message}")]
    At {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    File { file: String, message: String },
}

// ---- the file as written -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: Option<Spanned<i64>>,
    input: Spanned<RawInput>,
    #[serde(default)]
    output: RawOutput,
    bake: Option<Spanned<Settings>>,
    #[serde(default)]
    extensions: BTreeMap<String, Spanned<RawExt>>,
    matrix: Option<Spanned<RawMatrix>>,
    #[serde(default)]
    variant: Vec<Spanned<Settings>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    release: Option<Spanned<String>>,
    image: Option<Spanned<String>>,
    release_dir: Option<String>,
    flatcar_version: Option<String>,
    signing_key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    dir: Option<String>,
    name: Option<Spanned<String>>,
    vendors_dir: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExt {
    bakery: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
    install_to: Option<Spanned<String>>,
    sysupdate_conf: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatrix {
    arch: Option<Vec<Spanned<String>>>,
    vendor: Option<Vec<Spanned<String>>>,
    extensions: Option<BTreeMap<String, Vec<Spanned<String>>>>,
}

/// Settings of `[bake]`, overridden key by key in each `[[variant]]`.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct Settings {
    name: Option<Spanned<String>>,
    arch: Option<Spanned<String>>,
    vendors: Option<Vec<Spanned<String>>>,
    extensions: Option<Vec<Spanned<String>>>,
    sysupdate: Option<bool>,
    sysupdate_action: Option<Spanned<String>>,
    ignition: Option<String>,
    kernel_args: Option<Vec<String>>,
    replace_builtin: Option<Vec<String>>,
    keep_builtin: Option<bool>,
    enable_official: Option<Vec<String>>,
    torcx_era: Option<bool>,
    backend: Option<Spanned<String>>,
    threads: Option<usize>,
}

impl Settings {
    /// `self` with every key `over` sets replaced.
    fn overlay(&self, over: &Settings) -> Settings {
        macro_rules! pick {
            ($($f:ident),*) => { Settings { $($f: over.$f.clone().or_else(|| self.$f.clone())),* } };
        }
        pick!(
            name,
            arch,
            vendors,
            extensions,
            sysupdate,
            sysupdate_action,
            ignition,
            kernel_args,
            replace_builtin,
            keep_builtin,
            enable_official,
            torcx_era,
            backend,
            threads
        )
    }
}

// ---- the resolved model --------------------------------------------------------------

/// Where the input image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A Flatcar release to fetch and verify: channel, X.Y.Z or lts-YYYY.
    Release(String),
    /// A local image file.
    Image(PathBuf),
}

/// Where an extension comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A sysext file on this machine.
    Local(PathBuf),
    /// A file of the sysext bakery, checked against its SHA256SUMS.
    Bakery(String),
}

/// One extension as a variant bakes it.
#[derive(Clone, Debug)]
pub struct ExtUse {
    pub name: String,
    pub source: Source,
    pub install_to: Option<InstallTo>,
    pub sysupdate_conf: Option<PathBuf>,
}

/// One named build: everything needed to produce its [`BakeArgs`].
#[derive(Clone, Debug)]
pub struct Variant {
    pub name: String,
    pub input: Input,
    pub release_dir: Option<PathBuf>,
    pub flatcar_version: Option<String>,
    /// OpenPGP key trusted instead of the embedded Flatcar image signing key.
    pub signing_key: Option<PathBuf>,
    pub arch: Option<Arch>,
    /// Vendor images to emit; [`GENERIC`] is the plain disk image.
    pub vendors: Vec<String>,
    pub extensions: Vec<ExtUse>,
    pub output_dir: PathBuf,
    pub vendors_dir: Option<PathBuf>,
    pub sysupdate: bool,
    pub sysupdate_action: crate::bake::autoupdate::Action,
    pub ignition: Option<PathBuf>,
    pub kernel_args: Vec<String>,
    pub replace_builtin: Vec<String>,
    pub keep_builtin: bool,
    pub enable_official: Vec<String>,
    pub torcx_era: bool,
    pub backend: crate::fs::Backend,
    pub threads: Option<usize>,
}

/// A loaded, checked spec.
#[derive(Clone, Debug)]
pub struct Spec {
    pub path: PathBuf,
    pub variants: Vec<Variant>,
}

impl Variant {
    /// The output files this variant writes (vendor disk images and the plain image),
    /// as absolute-or-spec-relative paths.
    pub fn disk_outputs(&self, reg: &crate::platform::registry::Registry) -> Vec<PathBuf> {
        self.vendors
            .iter()
            .map(|v| match reg.get(v) {
                Some(def) if v != GENERIC => self.output_dir.join(def.disk_name()),
                _ => self.output_dir.join(GENERIC_IMAGE),
            })
            .collect()
    }

    /// The same request the command line builds: `base` (clap's defaults and
    /// environment) with this variant's settings. Bakery extensions are named as
    /// `NAME:FILE` in `bakery`, to be fetched by the caller (a spec may mix local and
    /// bakery extensions, which one `--fetch` cannot).
    pub fn bake_args(&self, mut base: BakeArgs) -> (BakeArgs, Vec<String>) {
        let mut bakery = Vec::new();
        base.image = None;
        base.release.release = None;
        match &self.input {
            Input::Release(r) => base.release.release = Some(r.clone()),
            Input::Image(p) => base.image = Some(p.clone()),
        }
        base.fetch = false;
        base.output = None;
        base.release.arch = self.arch;
        base.release_dir = self.release_dir.clone();
        base.flatcar_version = self.flatcar_version.clone();
        if let Some(k) = &self.signing_key {
            base.release.signing_key = Some(k.clone());
        }
        base.vendors_dir = self.vendors_dir.clone();
        base.vendor = self.vendors.clone();
        base.output_dir = self.output_dir.clone();
        base.extensions.clear();
        base.install_to.clear();
        base.sysupdate_conf.clear();
        for e in &self.extensions {
            match &e.source {
                Source::Local(p) => base.extensions.push(format!("{}:{}", e.name, p.display())),
                Source::Bakery(f) => bakery.push(format!("{}:{f}", e.name)),
            }
            if let Some(to) = &e.install_to {
                base.install_to.push(InstallRule {
                    name: Some(e.name.clone()),
                    to: to.clone(),
                });
            }
            if let Some(c) = &e.sysupdate_conf {
                base.sysupdate_conf
                    .push(format!("{}={}", e.name, c.display()));
            }
        }
        base.sysupdate = self.sysupdate;
        base.sysupdate_action = self.sysupdate_action;
        base.ignition = self.ignition.clone();
        base.kernel_args = self.kernel_args.clone();
        base.replace_builtin = self.replace_builtin.clone();
        base.keep_builtin = self.keep_builtin;
        base.enable_official = self.enable_official.clone();
        base.torcx_era = self.torcx_era;
        base.backend = self.backend;
        base.threads = self.threads.or(base.threads);
        (base, bakery)
    }
}

// ---- loading -------------------------------------------------------------------------

struct Ctx<'a> {
    file: String,
    text: &'a str,
    dir: PathBuf,
}

impl Ctx<'_> {
    fn at(&self, span: Range<usize>, message: impl Into<String>) -> SpecError {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rfind('\n')
            .map_or(before.chars().count(), |i| before[i + 1..].chars().count())
            + 1;
        SpecError::At {
            file: self.file.clone(),
            line,
            column,
            message: message.into(),
        }
    }
    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.dir.join(p)
        }
    }
}

/// Read and check the spec at `path`. `output_dir` replaces the spec's `[output] dir`.
pub fn load(path: &Path, output_dir: Option<&Path>) -> Result<Spec, SpecError> {
    let file = path.display().to_string();
    let text = crate::input::read_text(path, SPEC_CAP).map_err(|e| SpecError::File {
        file: file.clone(),
        message: e.to_string(),
    })?;
    let dir = crate::input::parent_dir(path);
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    // absolute, so plans, summaries and JSON name files the same from any directory
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    parse(&text, &file, &dir, output_dir).map(|variants| Spec {
        path: path.to_owned(),
        variants,
    })
}

/// Parse spec `text` (named `file` in errors; paths relative to `dir`).
pub fn parse(
    text: &str,
    file: &str,
    dir: &Path,
    output_dir: Option<&Path>,
) -> Result<Vec<Variant>, SpecError> {
    let cx = Ctx {
        file: file.to_owned(),
        text,
        dir: dir.to_owned(),
    };
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().to_owned();
        match e.span() {
            Some(s) => cx.at(s, msg),
            None => SpecError::File {
                file: file.to_owned(),
                message: msg,
            },
        }
    })?;
    if let Some(v) = &raw.version {
        if *v.get_ref() != 1 {
            return Err(cx.at(
                v.span(),
                "unknown spec version (this flatbake reads version = 1)",
            ));
        }
    }
    let vendors_dir = raw.output.vendors_dir.as_deref().map(|d| cx.path(d));
    let registry =
        crate::platform::registry::Registry::load(vendors_dir.as_deref()).map_err(|e| {
            SpecError::File {
                file: file.to_owned(),
                message: e.to_string(),
            }
        })?;

    // input
    let inp = raw.input.get_ref();
    let input =
        match (&inp.release, &inp.image) {
            (Some(r), None) => {
                r.get_ref()
                    .parse::<crate::release::channel::ReleaseSpec>()
                    .map_err(|e| {
                        let known = ["alpha", "beta", "stable", "lts", "current"];
                        cx.at(
                            r.span(),
                            format!("{e}{}", suggest::hint(r.get_ref(), known)),
                        )
                    })?;
                Input::Release(r.get_ref().clone())
            }
            (None, Some(i)) => Input::Image(cx.path(i.get_ref())),
            (Some(_), Some(i)) => return Err(cx.at(
                i.span(),
                "[input] takes release or image, not both: fetch a release, or bake a local image",
            )),
            (None, None) => return Err(cx.at(
                raw.input.span(),
                "[input] needs release = \"stable\" (or a version, lts-YYYY) or image = \"FILE\"",
            )),
        };

    // extensions
    let mut exts: BTreeMap<String, (Spanned<RawExt>, Option<InstallTo>)> = BTreeMap::new();
    for (name, e) in raw.extensions {
        if let Some(p) = crate::sysext::name_problem(&name) {
            return Err(cx.at(e.span(), format!("extension '{name}': {p}")));
        }
        let r = e.get_ref();
        match (&r.bakery, &r.file) {
            (Some(_), None) | (None, Some(_)) => {}
            (Some(_), Some(f)) => {
                return Err(cx.at(
                    f.span(),
                    format!("extension '{name}': give bakery = \"FILE\" or file = \"PATH\", not both"),
                ))
            }
            (None, None) => {
                return Err(cx.at(
                    e.span(),
                    format!("extension '{name}': needs bakery = \"FILE\" (from the sysext bakery) or file = \"PATH\""),
                ))
            }
        }
        let to = match &r.install_to {
            Some(t) => Some(
                t.get_ref()
                    .parse::<InstallTo>()
                    .map_err(|m| cx.at(t.span(), format!("install_to {m}")))?,
            ),
            None => None,
        };
        exts.insert(name, (e, to));
    }
    let known_exts: Vec<&str> = exts.keys().map(String::as_str).collect();
    let ext_ref = |n: &Spanned<String>| -> Result<String, SpecError> {
        if exts.contains_key(n.get_ref()) {
            Ok(n.get_ref().clone())
        } else {
            Err(cx.at(
                n.span(),
                format!(
                    "no extension '{}' in [extensions]{}",
                    n.get_ref(),
                    suggest::hint(n.get_ref(), known_exts.iter().copied())
                ),
            ))
        }
    };
    let vendor_names: Vec<&str> = registry
        .vendors
        .values()
        .filter(|v| v.unsupported.is_none())
        .map(|v| v.name.as_str())
        .chain([GENERIC])
        .collect();
    let vendor_ref = |n: &Spanned<String>| -> Result<String, SpecError> {
        let canon = canonical_vendor(n.get_ref(), &registry);
        match registry.get(&canon) {
            Some(v) if v.unsupported.is_some() => Err(cx.at(
                n.span(),
                format!(
                    "vendor '{canon}' cannot be made by flatbake: {}",
                    v.unsupported.as_deref().unwrap_or_default()
                ),
            )),
            Some(_) => Ok(canon),
            None if canon == GENERIC => Ok(canon),
            None => Err(cx.at(
                n.span(),
                format!(
                    "unknown vendor '{}'{} (see `flatbake vendors`)",
                    n.get_ref(),
                    suggest::hint(n.get_ref(), vendor_names.iter().copied())
                ),
            )),
        }
    };
    let arch_ref = |a: &Spanned<String>| -> Result<Arch, SpecError> {
        a.get_ref().parse::<Arch>().map_err(|m| cx.at(a.span(), m))
    };

    // the list of (name, settings) variants before resolution
    let base = raw
        .bake
        .as_ref()
        .map(|b| b.get_ref().clone())
        .unwrap_or_default();
    if let Some(b) = &raw.bake {
        if let Some(n) = &b.get_ref().name {
            return Err(cx.at(
                n.span(),
                "[bake] cannot have a name; name variants in [[variant]]",
            ));
        }
    }
    struct Pending {
        name: String,
        span: Range<usize>,
        s: Settings,
    }
    let mut pending: Vec<Pending> = Vec::new();
    if let Some(m) = &raw.matrix {
        let mr = m.get_ref();
        let archs: Vec<Option<Spanned<String>>> = match &mr.arch {
            Some(v) if v.is_empty() => return Err(cx.at(m.span(), "matrix.arch is empty")),
            Some(v) => v.iter().cloned().map(Some).collect(),
            None => vec![None],
        };
        let vendors: Vec<Option<Spanned<String>>> = match &mr.vendor {
            Some(v) if v.is_empty() => return Err(cx.at(m.span(), "matrix.vendor is empty")),
            Some(v) => v.iter().cloned().map(Some).collect(),
            None => vec![None],
        };
        let sets: Vec<Option<(String, Vec<Spanned<String>>)>> = match &mr.extensions {
            Some(v) if v.is_empty() => return Err(cx.at(m.span(), "matrix.extensions has no sets")),
            Some(v) => v
                .iter()
                .map(|(k, l)| Some((k.clone(), l.clone())))
                .collect(),
            None => vec![None],
        };
        for a in &archs {
            for v in &vendors {
                for set in &sets {
                    let mut parts = Vec::new();
                    let mut s = Settings::default();
                    if let Some(a) = a {
                        parts.push(arch_ref(a)?.to_string());
                        s.arch = Some(a.clone());
                    }
                    if let Some(v) = v {
                        parts.push(vendor_ref(v)?);
                        s.vendors = Some(vec![v.clone()]);
                    }
                    if let Some((k, l)) = set {
                        parts.push(k.clone());
                        s.extensions = Some(l.clone());
                    }
                    if pending.len() >= MAX_VARIANTS {
                        return Err(cx.at(m.span(), format!("more than {MAX_VARIANTS} variants")));
                    }
                    pending.push(Pending {
                        name: parts.join("-"),
                        span: m.span(),
                        s: base.overlay(&s),
                    });
                }
            }
        }
        if pending.iter().any(|p| p.name.is_empty()) {
            return Err(cx.at(m.span(), "[matrix] needs arch, vendor or extensions"));
        }
    }
    for v in &raw.variant {
        let Some(n) = &v.get_ref().name else {
            return Err(cx.at(v.span(), "[[variant]] needs name = \"...\""));
        };
        if pending.len() >= MAX_VARIANTS {
            return Err(cx.at(v.span(), format!("more than {MAX_VARIANTS} variants")));
        }
        pending.push(Pending {
            name: n.get_ref().clone(),
            span: n.span(),
            s: base.overlay(v.get_ref()),
        });
    }
    if pending.is_empty() {
        pending.push(Pending {
            name: "default".into(),
            span: 0..0,
            s: base.clone(),
        });
    }

    // resolve each
    let out_base = match output_dir {
        Some(d) => d.to_owned(),
        None => cx.path(raw.output.dir.as_deref().unwrap_or(".")),
    };
    let name_tpl = raw
        .output
        .name
        .clone()
        .unwrap_or_else(|| Spanned::new(0..0, "{variant}".to_owned()));
    let mut variants: Vec<Variant> = Vec::new();
    let mut seen_outputs: BTreeMap<PathBuf, String> = BTreeMap::new();
    for p in pending {
        if p.name.is_empty()
            || p.name.len() > 128
            || !p
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            || p.name.starts_with('.')
        {
            return Err(cx.at(
                p.span,
                format!(
                    "variant name '{}': use letters, digits, '.', '_' and '-'",
                    p.name
                ),
            ));
        }
        if variants.iter().any(|v| v.name == p.name) {
            return Err(cx.at(p.span, format!("variant '{}' is defined twice", p.name)));
        }
        let s = &p.s;
        let arch = s.arch.as_ref().map(&arch_ref).transpose()?;
        let mut vendors = Vec::new();
        for v in s.vendors.iter().flatten() {
            let c = vendor_ref(v)?;
            if vendors.contains(&c) {
                return Err(cx.at(v.span(), format!("vendor '{c}' is given twice")));
            }
            vendors.push(c);
        }
        if vendors.is_empty() {
            vendors.push(GENERIC.to_owned());
        }
        let names: Vec<String> = match &s.extensions {
            Some(l) => l.iter().map(&ext_ref).collect::<Result<_, _>>()?,
            None => exts.keys().cloned().collect(),
        };
        let arch_name = arch.map_or("x86-64", |a| a.systemd_name());
        let mut uses = Vec::new();
        for n in names {
            let (e, to) = &exts[&n];
            let r = e.get_ref();
            let source = match (&r.bakery, &r.file) {
                (Some(b), _) => Source::Bakery(b.get_ref().replace("{arch}", arch_name)),
                (None, Some(f)) => {
                    Source::Local(cx.path(&f.get_ref().replace("{arch}", arch_name)))
                }
                (None, None) => continue,
            };
            uses.push(ExtUse {
                name: n.clone(),
                source,
                install_to: to.clone(),
                sysupdate_conf: r.sysupdate_conf.as_deref().map(|c| cx.path(c)),
            });
        }
        let sysupdate_action = match &s.sysupdate_action {
            Some(a) => clap::ValueEnum::from_str(a.get_ref(), false).map_err(|_| {
                cx.at(
                    a.span(),
                    "sysupdate_action: use restart-sysext or reboot-required",
                )
            })?,
            None => crate::bake::autoupdate::Action::RestartSysext,
        };
        let backend = match &s.backend {
            Some(b) => clap::ValueEnum::from_str(b.get_ref(), false)
                .map_err(|_| cx.at(b.span(), "backend: use rootless, mount or auto"))?,
            None => crate::fs::Backend::Rootless,
        };
        let sub = name_tpl
            .get_ref()
            .replace("{variant}", &p.name)
            .replace("{arch}", arch_name);
        if sub.split('/').any(|c| c == "..") || sub.starts_with('/') {
            return Err(cx.at(
                name_tpl.span(),
                "[output] name must stay inside [output] dir (no '..', not absolute)",
            ));
        }
        let variant = Variant {
            name: p.name.clone(),
            input: input.clone(),
            release_dir: inp.release_dir.as_deref().map(|d| cx.path(d)),
            flatcar_version: inp.flatcar_version.clone(),
            signing_key: inp.signing_key.as_deref().map(|k| cx.path(k)),
            arch,
            vendors,
            extensions: uses,
            output_dir: out_base.join(sub),
            vendors_dir: vendors_dir.clone(),
            sysupdate: s.sysupdate.unwrap_or(false),
            sysupdate_action,
            ignition: s.ignition.as_deref().map(|i| cx.path(i)),
            kernel_args: s.kernel_args.clone().unwrap_or_default(),
            replace_builtin: s.replace_builtin.clone().unwrap_or_default(),
            keep_builtin: s.keep_builtin.unwrap_or(false),
            enable_official: s.enable_official.clone().unwrap_or_default(),
            torcx_era: s.torcx_era.unwrap_or(false),
            backend,
            threads: s.threads,
        };
        for o in variant.disk_outputs(&registry) {
            if let Some(other) = seen_outputs.insert(o.clone(), p.name.clone()) {
                return Err(cx.at(
                    name_tpl.span().start.max(p.span.start)..p.span.end,
                    format!(
                        "variants '{other}' and '{}' would both write {}; put {{variant}} in [output] name",
                        p.name,
                        o.display()
                    ),
                ));
            }
        }
        variants.push(variant);
    }
    Ok(variants)
}

/// The registry's spelling of vendor `name`: `qemu-uefi` is `qemu_uefi`, case ignored.
pub fn canonical_vendor(name: &str, reg: &crate::platform::registry::Registry) -> String {
    if reg.get(name).is_some() {
        return name.to_owned();
    }
    let folded = name.to_ascii_lowercase().replace('-', "_");
    if folded == GENERIC || reg.get(&folded).is_some() {
        return folded;
    }
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Vec<Variant> {
        parse(text, "s.toml", Path::new("/spec"), None).unwrap()
    }
    fn parse_err(text: &str) -> String {
        parse(text, "s.toml", Path::new("/spec"), None)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn matrix_expands_in_order_with_names() {
        let v = parse_ok(
            r#"
[input]
release = "stable"
[extensions.wasmtime]
bakery = "wasmtime-v24.0.0-{arch}.raw"
[extensions.mine]
file = "sysexts/mine-{arch}.raw"
install_to = "oem:/sysext"
[matrix]
arch = ["x86-64", "arm64"]
vendor = ["qemu-uefi", "generic"]
extensions = { full = ["wasmtime", "mine"], small = ["wasmtime"] }
"#,
        );
        let names: Vec<&str> = v.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names.len(), 8);
        assert_eq!(names[0], "x86-64-qemu_uefi-full");
        assert_eq!(names[7], "arm64-generic-small");
        assert_eq!(v[0].vendors, ["qemu_uefi"]);
        assert_eq!(v[0].output_dir, Path::new("/spec/x86-64-qemu_uefi-full"));
        let arm = &v[4];
        assert_eq!(arm.arch, Some(Arch::Arm64));
        assert_eq!(
            arm.extensions[0].source,
            Source::Bakery("wasmtime-v24.0.0-arm64.raw".into())
        );
        assert_eq!(
            arm.extensions[1].source,
            Source::Local("/spec/sysexts/mine-arm64.raw".into())
        );
    }

    #[test]
    fn errors_point_at_line_and_column() {
        let e = parse_err("[input]\nrelease = \"stable\"\n[bake]\nvendors = [\"qemu_uefu\"]\n");
        assert!(
            e.starts_with("s.toml:4:12: unknown vendor 'qemu_uefu'"),
            "{e}"
        );
        assert!(e.contains("did you mean 'qemu_uefi'"), "{e}");
        let e = parse_err("[input]\nrelease = \"stabel\"\n");
        assert!(e.starts_with("s.toml:2:11:"), "{e}");
        assert!(e.contains("'stable'"), "{e}");
        let e = parse_err("[input]\nrelease = \"stable\"\n[bake]\nsysupdat = true\n");
        assert!(e.starts_with("s.toml:4:1:"), "{e}");
        let e = parse_err(
            "[input]\nrelease = \"stable\"\n[[variant]]\nname = \"a\"\nextensions = [\"nope\"]\n",
        );
        assert!(e.starts_with("s.toml:5:15: no extension 'nope'"), "{e}");
        let e = parse_err(
            "[input]\nrelease = \"stable\"\n[[variant]]\nname = \"a\"\n[[variant]]\nname = \"a\"\n",
        );
        assert!(
            e.starts_with("s.toml:6:8: variant 'a' is defined twice"),
            "{e}"
        );
    }

    #[test]
    fn colliding_outputs_and_bad_names_are_refused() {
        let e = parse_err(
            "[input]\nrelease = \"stable\"\n[output]\nname = \"same\"\n[matrix]\narch = [\"x86-64\", \"arm64\"]\n",
        );
        assert!(e.contains("would both write"), "{e}");
        let e = parse_err("[input]\nrelease = \"stable\"\n[output]\nname = \"../x\"\n");
        assert!(e.contains("must stay inside"), "{e}");
        let e = parse_err("[input]\nrelease = \"stable\"\n[[variant]]\nname = \"a/b\"\n");
        assert!(e.contains("variant name 'a/b'"), "{e}");
    }
}
