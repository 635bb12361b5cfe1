//! What goes where (part of the plan stage): turning `NAME:FILE` arguments,
//! `--install-to` and sysupdate configs into checked, placed extensions — each input
//! staged once as a private copy, and that copy checked — and into their ROOT and OEM
//! edits. All problems are collected and reported together.

use super::collide::owned;
pub use super::collide::{collisions, Existing, RootState};
use crate::arch::Arch;
use crate::fs::{check_path, Edits, Op};
use crate::input::{self, Staged};
use crate::sysext::compat::TargetOs;
use crate::sysext::image::{self, SysextImage};
use crate::sysext::{check, name_problem, sysupdate};
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// Which filesystem of the image a sysext is installed into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Root,
    Oem,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Root => "ROOT",
            Target::Oem => "OEM",
        })
    }
}

/// `--install-to PART:DIR`; `{name}` in DIR stands for the extension name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallTo {
    pub target: Target,
    pub dir: String,
}

/// Where systemd-sysupdate's bakery config expects the images (the default).
pub const DEFAULT_INSTALL_TO: &str = "root:/opt/extensions/{name}";

impl std::str::FromStr for InstallTo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (part, dir) = s
            .split_once(':')
            .ok_or_else(|| format!("'{s}': expected root:DIR or oem:DIR"))?;
        let target = match part {
            "root" | "ROOT" => Target::Root,
            "oem" | "OEM" => Target::Oem,
            _ => {
                return Err(format!(
                    "'{s}': unknown partition '{part}' (use root or oem)"
                ))
            }
        };
        let dir = dir.trim_end_matches('/');
        let dir = if dir.is_empty() {
            "/".to_owned()
        } else {
            dir.to_owned()
        };
        if !dir.starts_with('/') {
            return Err(format!("'{s}': the directory must be absolute"));
        }
        check_path("install", &dir.replace("{name}", "x")).map_err(|e| format!("'{s}': {e}"))?;
        Ok(InstallTo { target, dir })
    }
}

impl InstallTo {
    /// Path of `file` for extension `name`, inside the target filesystem.
    pub fn path_for(&self, name: &str, file: &str) -> String {
        let dir = self.dir.replace("{name}", name);
        if dir == "/" {
            format!("/{file}")
        } else {
            format!("{dir}/{file}")
        }
    }
}

/// One sysext, checked and placed.
#[derive(Clone, Debug)]
pub struct Extension {
    pub name: String,
    pub src: PathBuf,
    pub image: SysextImage,
    pub target: Target,
    /// Path inside the target filesystem.
    pub path: String,
    /// Where `/etc/extensions/NAME.raw` points, in the booted system.
    pub link_target: String,
    /// The sysupdate transfer file to install, if any (its checked private copy).
    pub conf: Option<PathBuf>,
    /// The checked private copy of `src` that is baked, with its hash.
    pub staged: Option<Staged>,
}

impl Extension {
    pub fn symlink(&self) -> String {
        format!("/etc/extensions/{}.raw", self.name)
    }
    pub fn conf_path(&self) -> String {
        format!("/etc/sysupdate.{0}.d/{0}.conf", self.name)
    }
    /// The bytes to bake: the staged copy that was checked.
    pub fn data(&self) -> &Path {
        self.staged.as_ref().map_or(&self.src, |s| &s.path)
    }
}

/// Where the OEM partition is mounted in a booted Flatcar.
pub const OEM_MOUNT: &str = "/oem";

/// `--install-to [NAME=]PART:DIR`: for one extension, or (without NAME) for all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallRule {
    pub name: Option<String>,
    pub to: InstallTo,
}

impl std::str::FromStr for InstallRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((name, spec)) if !name.contains(':') => Ok(InstallRule {
                name: Some(name.to_owned()),
                to: spec.parse()?,
            }),
            _ => Ok(InstallRule {
                name: None,
                to: s.parse()?,
            }),
        }
    }
}

/// The install location for `name`: its own rule, else the last general one, else the
/// default.
pub fn install_for(rules: &[InstallRule], name: &str) -> InstallTo {
    rules
        .iter()
        .rev()
        .find(|r| r.name.as_deref() == Some(name))
        .or_else(|| rules.iter().rev().find(|r| r.name.is_none()))
        .map(|r| r.to.clone())
        .unwrap_or_else(|| InstallTo {
            target: Target::Root,
            dir: "/opt/extensions/{name}".into(),
        })
}

/// Inputs to planning, besides the image itself.
pub struct PlanInput<'a> {
    pub extensions: &'a [String],
    pub install_to: &'a [InstallRule],
    pub sysupdate_confs: &'a [String],
    pub arch: Option<Arch>,
    /// The OS of the image being baked (its own os-release), that every extension must
    /// match as systemd-sysext will check it.
    pub target: &'a TargetOs,
    /// A private directory for the copies that are checked and then baked (None only
    /// when the run is refused anyway: the originals are then checked in place).
    pub stage: Option<&'a Path>,
}

/// Parse and check every extension argument. Returns the extensions or every problem.
pub fn check_extensions(input: &PlanInput<'_>) -> Result<Vec<Extension>, Vec<String>> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let confs = parse_confs(input.sysupdate_confs, &mut problems);
    for arg in input.extensions {
        let (name, file) = match parse_extension_arg(arg) {
            Ok(nf) => nf,
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        if !seen.insert(name.to_owned()) {
            problems.push(format!("'{arg}': extension {name} is given more than once"));
            continue;
        }
        match extension(name, PathBuf::from(file), input, &confs) {
            Ok((ext, ps)) => {
                problems.extend(ps);
                out.push(ext);
            }
            Err(p) => problems.push(p),
        }
    }
    unused_rules(input, &confs, &seen, &mut problems);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// `--sysupdate-conf NAME=PATH` arguments; malformed ones are problems.
fn parse_confs(args: &[String], problems: &mut Vec<String>) -> Vec<(String, PathBuf)> {
    let mut confs = Vec::new();
    for c in args {
        match c.split_once('=') {
            Some((n, p)) if !n.is_empty() && !p.is_empty() => {
                confs.push((n.to_owned(), PathBuf::from(p)))
            }
            _ => problems.push(format!("--sysupdate-conf '{c}': expected NAME=PATH")),
        }
    }
    confs
}

/// One `NAME:FILE` argument, split and checked (a valid name, a file, no control
/// characters).
fn parse_extension_arg(arg: &str) -> Result<(&str, &str), String> {
    let Some((name, file)) = arg.split_once(':') else {
        return Err(format!(
            "'{arg}': expected NAME:FILE (e.g. wasmtime:wasmtime-v24.0.0-x86-64.raw)"
        ));
    };
    if let Some(p) = name_problem(name) {
        return Err(format!("'{arg}': {p}"));
    }
    if file.is_empty() {
        return Err(format!("'{arg}': no FILE after NAME:"));
    }
    // printed as is, such a name would break the one-line-per-problem report
    if file.chars().any(char::is_control) {
        return Err(format!(
            "{file:?}: contains a control character; rename the file"
        ));
    }
    Ok((name, file))
}

/// Extension `name` from `src`: the sysext checked, where it is installed and linked
/// from, and its sysupdate config (named with --sysupdate-conf, or `NAME.conf` beside
/// the file). Err stops further checks of it; the problems beside Ok are reported with
/// every other.
fn extension(
    name: &str,
    src: PathBuf,
    input: &PlanInput<'_>,
    confs: &[(String, PathBuf)],
) -> Result<(Extension, Vec<String>), String> {
    let (image, staged, mut ps) = check_one(name, &src, input)?;
    let file_name = src
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let install = install_for(input.install_to, name);
    let path = install.path_for(name, &file_name);
    if let Err(e) = check_path("install", &path) {
        ps.push(format!(
            "{}: cannot be installed under that name: {e}",
            src.display()
        ));
    }
    let link_target = match install.target {
        Target::Root => path.clone(),
        Target::Oem => format!("{OEM_MOUNT}{path}"),
    };
    let conf = match confs.iter().find(|(n, _)| n == name) {
        Some((_, p)) => Some(p.clone()),
        None => {
            let beside = src.with_file_name(format!("{name}.conf"));
            std::fs::metadata(&beside).is_ok().then_some(beside)
        }
    };
    let conf = conf.and_then(|c| {
        match check_conf(&c, input.stage.map(|d| d.join(format!("{name}.conf")))) {
            Ok(staged) => Some(staged),
            Err(p) => {
                ps.extend(p);
                None
            }
        }
    });
    let ext = Extension {
        name: name.to_owned(),
        src,
        image,
        target: install.target,
        path,
        link_target,
        conf,
        staged,
    };
    Ok((ext, ps))
}

/// `--install-to NAME=...` and `--sysupdate-conf NAME=...` naming no extension baked.
fn unused_rules(
    input: &PlanInput<'_>,
    confs: &[(String, PathBuf)],
    seen: &HashSet<String>,
    problems: &mut Vec<String>,
) {
    for r in input.install_to {
        if let Some(n) = &r.name {
            if !seen.contains(n) {
                problems.push(format!(
                    "--install-to {n}=...: no extension named {n} is being baked"
                ));
            }
        }
    }
    for (n, p) in confs {
        if !seen.contains(n) {
            problems.push(format!(
                "--sysupdate-conf {n}={}: no extension named {n} is being baked",
                p.display()
            ));
        }
    }
}

/// Check one sysext file; Err is a problem that stops further checks of it. With a
/// stage directory the file is read once into a private copy, and that copy is checked.
fn check_one(
    name: &str,
    src: &Path,
    input: &PlanInput<'_>,
) -> Result<(SysextImage, Option<Staged>, Vec<String>), String> {
    let shown = |e: std::io::Error| format!("{}: {e}", src.display());
    let staged = match input.stage {
        Some(dir) => Some(input::stage_file(src, &dir.join(format!("{name}.raw"))).map_err(shown)?),
        None => {
            input::open_regular(src).map_err(shown)?;
            None
        }
    };
    let data = staged.as_ref().map_or(src, |s| &s.path);
    // messages name the user's file, not the private copy
    let named = |m: String| m.replace(&data.display().to_string(), &src.display().to_string());
    let mut img = image::open(data, name).map_err(|e| named(e.to_string()))?;
    img.path = src.to_owned();
    let mut ps: Vec<String> = check::release_problems(&img, name, input.target)
        .into_iter()
        .map(|p| format!("{}: {p}", src.display()))
        .collect();
    match check::content_problems(data, img.format) {
        Ok(found) => ps.extend(found.into_iter().map(|p| format!("{}: {p}", src.display()))),
        Err(e) => ps.push(named(e.to_string())),
    }
    Ok((img, staged, ps))
}

/// Check a sysupdate config, read once; returns the path to install from (the private
/// copy in `stage` when given).
fn check_conf(path: &Path, stage: Option<PathBuf>) -> Result<PathBuf, Vec<String>> {
    let shown = |e: std::io::Error| format!("{}: {e}", path.display());
    let bytes = input::read_bytes(path, input::TEXT_CAP).map_err(|e| vec![shown(e)])?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| vec![format!("{}: not a text file", path.display())])?;
    let ps = sysupdate::problems(text);
    if !ps.is_empty() {
        return Err(ps
            .iter()
            .map(|p| format!("{}: not a sysupdate transfer file: {p}", path.display()))
            .collect());
    }
    match stage {
        Some(dest) => Ok(input::stage_bytes(&bytes, &dest)
            .map_err(|e| vec![shown(e)])?
            .path),
        None => Ok(path.to_owned()),
    }
}

/// The edits to ROOT and OEM that install `exts`, and notes on what was kept. A
/// replaced extension's old image is removed only when flatbake owns it ([`owned`]).
pub fn edits(exts: &[Extension], root: &RootState<'_>) -> (Edits, Edits, Vec<String>) {
    let mut out = (Edits::default(), Edits::default(), Vec::new());
    for e in exts {
        let old = root
            .links
            .iter()
            .find(|(n, _)| *n == e.name)
            .map(|(_, t)| t.as_str());
        if let Some(old) = old.filter(|o| *o != e.link_target && *o != "/dev/null") {
            let written = exts.iter().any(|x| x.link_target == old);
            match owned(e, old, root) {
                Ok(Some(_)) if written => {}
                Ok(Some((Target::Root, p))) => out.0.push(Op::Remove(p.to_owned())),
                Ok(Some((Target::Oem, p))) => out.1.push(Op::Remove(p.to_owned())),
                Ok(None) => {}
                Err(why) => out.2.push(format!(
                    "kept {old:?}, the old target of {}: {why}",
                    e.symlink()
                )),
            }
        }
        let write = Op::Write {
            path: e.path.clone(),
            src: e.data().to_owned(),
            mode: 0o644,
        };
        match e.target {
            Target::Root => out.0.push(write),
            Target::Oem => out.1.push(write),
        }
        out.0.push(Op::Symlink {
            path: e.symlink(),
            target: e.link_target.clone(),
        });
        if let Some(c) = &e.conf {
            out.0.push(Op::Write {
                path: e.conf_path(),
                src: c.clone(),
                mode: 0o644,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_to_parses() {
        let d: InstallTo = DEFAULT_INSTALL_TO.parse().unwrap();
        assert_eq!(d.target, Target::Root);
        assert_eq!(d.path_for("w", "w-1.raw"), "/opt/extensions/w/w-1.raw");
        let o: InstallTo = "oem:/sysext/".parse().unwrap();
        assert_eq!(o.target, Target::Oem);
        assert_eq!(o.path_for("w", "w-1.raw"), "/sysext/w-1.raw");
        let r: InstallTo = "oem:/".parse().unwrap();
        assert_eq!(r.path_for("w", "w.raw"), "/w.raw");
        assert!("usr:/x".parse::<InstallTo>().is_err());
        assert!("root:relative".parse::<InstallTo>().is_err());
        assert!("root:/a/../b".parse::<InstallTo>().is_err());
        assert!("nocolon".parse::<InstallTo>().is_err());
        let rules: Vec<InstallRule> = vec![
            "oem:/sysext".parse().unwrap(),
            "w=root:/opt/w".parse().unwrap(),
        ];
        assert_eq!(rules[1].name.as_deref(), Some("w"));
        assert_eq!(install_for(&rules, "w").path_for("w", "f"), "/opt/w/f");
        assert_eq!(install_for(&rules, "x").target, Target::Oem);
        assert_eq!(
            install_for(&[], "x").path_for("x", "f"),
            "/opt/extensions/x/f"
        );
    }

    #[test]
    fn argument_problems_are_all_reported() {
        let install: Vec<InstallRule> = vec![];
        let exts = vec![
            "nocolon".to_owned(),
            "../x:/dev/null".to_owned(),
            ".hid:/dev/null".to_owned(),
            "a:/nonexistent/a.raw".to_owned(),
            "b:/dev/null".to_owned(),
            "c:".to_owned(),
            "d:/tmp/new\nline.raw".to_owned(),
        ];
        let confs = vec!["zzz=/tmp/x.conf".to_owned(), "bad".to_owned()];
        let input = PlanInput {
            extensions: &exts,
            install_to: &install,
            sysupdate_confs: &confs,
            arch: None,
            target: &TargetOs::any_flatcar(None),
            stage: None,
        };
        let ps = check_extensions(&input).unwrap_err();
        let all = ps.join("\n");
        assert!(all.contains("'nocolon': expected NAME:FILE"), "{all}");
        assert!(all.contains("'../x:/dev/null'"), "{all}");
        assert!(all.contains("starts with '.'"), "{all}");
        assert!(all.contains("/nonexistent/a.raw: No such file"), "{all}");
        assert!(
            all.contains("/dev/null: a character device, not a regular file"),
            "{all}"
        );
        assert!(all.contains("'c:': no FILE after NAME:"), "{all}");
        assert!(
            all.contains("\"/tmp/new\\nline.raw\": contains a control character"),
            "{all}"
        );
        assert!(all.contains("--sysupdate-conf 'bad'"), "{all}");
        assert!(all.contains("no extension named zzz"), "{all}");
    }
}
