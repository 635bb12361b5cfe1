//! Flatcar's own extensions, as ROOT edits of the bake plan: masking the built-in
//! `docker-flatcar` and `containerd-flatcar` sysexts (`/etc/extensions/NAME.raw` as a
//! symlink to `/dev/null`, which systemd-sysext skips) so a custom Docker or containerd
//! takes their place, masking the Torcx generator on releases that still have Torcx
//! (an empty `/etc/systemd/system-generators/torcx-generator`; systemd treats an empty
//! generator as masked), and enabling Flatcar's optional extensions (zfs, podman, ...)
//! through `/etc/flatcar/enabled-sysext.conf`, one name per line.
//!
//! Baking an extension named `docker` masks both built-ins (the bakery's docker sysext
//! ships its own containerd, and Flatcar's docker-flatcar is useless without
//! containerd-flatcar); one named `containerd` masks containerd-flatcar. `--keep-builtin`
//! opts out of that default.

use crate::fs::{Edits, Op};
use crate::sysext::name_problem;
use std::path::Path;

/// The built-ins that can be replaced, by the short name `--replace-builtin` takes.
pub const BUILTINS: [(&str, &str); 2] = [
    ("docker", "docker-flatcar"),
    ("containerd", "containerd-flatcar"),
];

/// Flatcar's optional ("official") extensions, the names /etc/flatcar/enabled-sysext.conf
/// takes: every EXTRA_SYSEXTS entry of flatcar/scripts' build_library/extra_sysexts.sh
/// across releases (the nvidia ones exist for amd64 only).
pub const OFFICIAL: &[&str] = &[
    "incus",
    "nvidia-drivers-535",
    "nvidia-drivers-535-open",
    "nvidia-drivers-550",
    "nvidia-drivers-550-open",
    "nvidia-drivers-570",
    "nvidia-drivers-570-open",
    "overlaybd",
    "podman",
    "python",
    "selinux",
    "zfs",
];

/// Where Flatcar reads the optional extensions to activate at boot.
pub const ENABLED_CONF: &str = "/etc/flatcar/enabled-sysext.conf";

/// The generator that ran Torcx at boot, masked by an empty file of the same name in /etc.
pub const TORCX_GENERATOR: &str = "/etc/systemd/system-generators/torcx-generator";

/// The last Flatcar major version that shipped Torcx (3794 replaced it with sysexts).
pub const LAST_TORCX_MAJOR: u32 = 3760;

/// What the command line asked for.
#[derive(Clone, Debug, Default)]
pub struct BuiltinRequest {
    /// `--replace-builtin`: short names from [`BUILTINS`].
    pub replace: Vec<String>,
    /// `--keep-builtin`: do not mask built-ins because of the names of baked extensions.
    pub keep: bool,
    /// `--torcx-era`: the image still has Torcx; also mask its generator.
    pub torcx: bool,
    /// `--enable-official`: Flatcar's optional extensions to activate.
    pub enable_official: Vec<String>,
    /// The image's Flatcar version, when known; a Torcx-era version implies `torcx`.
    pub flatcar_version: Option<String>,
}

/// What will be written, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuiltinPlan {
    /// Built-in extension names (`docker-flatcar`, ...) to mask.
    pub mask: Vec<String>,
    pub torcx: bool,
    pub enable: Vec<String>,
    /// Lines for the user: what happens by default and why.
    pub notes: Vec<String>,
}

impl BuiltinPlan {
    pub fn is_empty(&self) -> bool {
        self.mask.is_empty() && self.enable.is_empty() && !self.torcx
    }
}

/// Whether `version` (`X.Y.Z`) is a release that still ships Torcx.
pub fn is_torcx_era(version: &str) -> bool {
    version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|m| m <= LAST_TORCX_MAJOR)
}

/// Check the request against the names of the extensions being baked.
pub fn plan(req: &BuiltinRequest, baked: &[&str]) -> Result<BuiltinPlan, Vec<String>> {
    let mut problems = Vec::new();
    let mut out = BuiltinPlan::default();
    let known = || {
        BUILTINS
            .iter()
            .map(|(s, _)| *s)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if req.keep && !req.replace.is_empty() {
        problems.push("--keep-builtin and --replace-builtin exclude each other".to_owned());
    }
    for r in &req.replace {
        match BUILTINS.iter().find(|(s, f)| s == r || f == r) {
            Some((_, full)) => add_mask(full, &mut out),
            None => problems.push(format!(
                "--replace-builtin {r}: not a Flatcar built-in extension (known: {})",
                known()
            )),
        }
    }
    if !req.keep {
        mask_implied(baked, &mut out);
    }
    for m in &out.mask {
        if baked.contains(&m.as_str()) {
            problems.push(format!(
                "extension {m} is being baked and masked at once; bake it under another name"
            ));
        }
    }
    out.torcx = req.torcx
        || (!out.mask.is_empty() && req.flatcar_version.as_deref().is_some_and(is_torcx_era));
    if out.torcx && !req.torcx {
        out.notes.push(format!(
            "Flatcar {} still has Torcx: masking its generator ({TORCX_GENERATOR})",
            req.flatcar_version.as_deref().unwrap_or_default()
        ));
    }
    enable_official(req, &mut out, &mut problems);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Mask `full` (once).
fn add_mask(full: &str, out: &mut BuiltinPlan) {
    if !out.mask.iter().any(|m| m == full) {
        out.mask.push(full.to_owned());
    }
}

/// Baking docker masks Flatcar's docker-flatcar and containerd-flatcar, baking
/// containerd masks containerd-flatcar (unless --keep-builtin), saying so.
fn mask_implied(baked: &[&str], out: &mut BuiltinPlan) {
    let (why, implied): (&str, &[&str]) = if baked.contains(&"docker") {
        ("docker", &["docker-flatcar", "containerd-flatcar"])
    } else if baked.contains(&"containerd") {
        ("containerd", &["containerd-flatcar"])
    } else {
        return;
    };
    let new: Vec<&str> = implied
        .iter()
        .copied()
        .filter(|f| !out.mask.iter().any(|m| m == f))
        .collect();
    if new.is_empty() {
        return;
    }
    out.notes.push(format!(
        "baking {why}: masking Flatcar's built-in {} (/etc/extensions/NAME.raw -> /dev/null); --keep-builtin keeps {}",
        new.join(" and "),
        if new.len() == 1 { "it" } else { "them" }
    ));
    for f in new {
        add_mask(f, out);
    }
}

/// `--enable-official NAME`: one of Flatcar's optional extensions, once.
fn enable_official(req: &BuiltinRequest, out: &mut BuiltinPlan, problems: &mut Vec<String>) {
    for n in &req.enable_official {
        if let Some(p) = name_problem(n) {
            problems.push(format!("--enable-official {n}: {p}"));
        } else if BUILTINS.iter().any(|(s, f)| s == n || f == n) {
            problems.push(format!(
                "--enable-official {n}: docker and containerd are always active unless masked"
            ));
        } else if !OFFICIAL.contains(&n.as_str()) {
            problems.push(format!(
                "--enable-official {n}: not one of Flatcar's optional extensions ({})",
                OFFICIAL.join(", ")
            ));
        } else if !out.enable.contains(n) {
            out.enable.push(n.clone());
        }
    }
}

/// The text of enabled-sysext.conf: the lines already there, then each new name.
pub fn enabled_conf(existing: Option<&str>, enable: &[String]) -> String {
    let mut text = existing.unwrap_or_default().to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    for n in enable {
        if !text.lines().any(|l| l.trim() == n) {
            text.push_str(n);
            text.push('\n');
        }
    }
    text
}

/// ROOT edits carrying out `plan`; generated files are staged in `work`.
/// `existing_conf` is the image's enabled-sysext.conf, if it has one.
pub fn edits(
    plan: &BuiltinPlan,
    existing_conf: Option<&str>,
    work: &Path,
) -> std::io::Result<Edits> {
    let mut e = Edits::default();
    for m in &plan.mask {
        e.push(Op::Symlink {
            path: format!("/etc/extensions/{m}.raw"),
            target: "/dev/null".into(),
        });
    }
    if plan.torcx {
        let p = work.join("torcx-generator");
        std::fs::write(&p, "")?;
        e.push(Op::Write {
            path: TORCX_GENERATOR.into(),
            src: p,
            mode: 0o644,
        });
    }
    if !plan.enable.is_empty() {
        let p = work.join("enabled-sysext.conf");
        std::fs::write(&p, enabled_conf(existing_conf, &plan.enable))?;
        e.push(Op::Write {
            path: ENABLED_CONF.into(),
            src: p,
            mode: 0o644,
        });
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> BuiltinRequest {
        BuiltinRequest::default()
    }

    #[test]
    fn docker_masks_both_by_default_and_keep_opts_out() {
        let p = plan(&req(), &["docker", "wasmtime"]).unwrap();
        assert_eq!(p.mask, vec!["docker-flatcar", "containerd-flatcar"]);
        assert!(p.notes[0].contains(
            "baking docker: masking Flatcar's built-in docker-flatcar and containerd-flatcar"
        ));
        let p = plan(&req(), &["containerd"]).unwrap();
        assert_eq!(p.mask, vec!["containerd-flatcar"]);
        let p = plan(
            &BuiltinRequest {
                keep: true,
                ..req()
            },
            &["docker"],
        )
        .unwrap();
        assert!(p.is_empty(), "{p:?}");
        assert!(plan(&req(), &["wasmtime"]).unwrap().is_empty());
    }

    #[test]
    fn explicit_replace_and_problems() {
        let p = plan(
            &BuiltinRequest {
                replace: vec!["containerd".into()],
                ..req()
            },
            &[],
        )
        .unwrap();
        assert_eq!(p.mask, vec!["containerd-flatcar"]);
        assert!(p.notes.is_empty());
        let ps = plan(
            &BuiltinRequest {
                replace: vec!["podman".into()],
                keep: true,
                enable_official: vec!["a/b".into(), "docker".into()],
                ..req()
            },
            &[],
        )
        .unwrap_err()
        .join("\n");
        assert!(ps.contains("--replace-builtin podman: not a Flatcar built-in extension (known: docker, containerd)"), "{ps}");
        assert!(ps.contains("exclude each other"), "{ps}");
        assert!(ps.contains("--enable-official a/b"), "{ps}");
        assert!(ps.contains("--enable-official docker"), "{ps}");
        let ps = plan(
            &BuiltinRequest {
                enable_official: vec!["zsf".into(), "zfs".into(), "nvidia-drivers-570-open".into()],
                ..req()
            },
            &[],
        )
        .unwrap_err()
        .join("\n");
        assert!(
            ps.contains("--enable-official zsf: not one of Flatcar's optional extensions (incus, "),
            "{ps}"
        );
        assert!(!ps.contains("--enable-official zfs"), "{ps}");
        assert!(!ps.contains("nvidia-drivers-570-open:"), "{ps}");
        let ps = plan(
            &BuiltinRequest {
                replace: vec!["docker".into()],
                ..req()
            },
            &["docker-flatcar"],
        )
        .unwrap_err();
        assert!(ps[0].contains("baked and masked at once"), "{ps:?}");
    }

    #[test]
    fn torcx_from_flag_or_version() {
        assert!(is_torcx_era("3760.2.0") && is_torcx_era("3033.3.18") && !is_torcx_era("3815.2.0"));
        assert!(!is_torcx_era("garbage"));
        let p = plan(
            &BuiltinRequest {
                flatcar_version: Some("3510.2.8".into()),
                ..req()
            },
            &["docker"],
        )
        .unwrap();
        assert!(
            p.torcx && p.notes.iter().any(|n| n.contains("still has Torcx")),
            "{p:?}"
        );
        let p = plan(
            &BuiltinRequest {
                flatcar_version: Some("4081.2.0".into()),
                ..req()
            },
            &["docker"],
        )
        .unwrap();
        assert!(!p.torcx);
        // nothing masked: an old version alone does not touch Torcx
        let p = plan(
            &BuiltinRequest {
                flatcar_version: Some("3510.2.8".into()),
                ..req()
            },
            &[],
        )
        .unwrap();
        assert!(p.is_empty());
        let p = plan(
            &BuiltinRequest {
                torcx: true,
                ..req()
            },
            &[],
        )
        .unwrap();
        assert!(p.torcx && !p.is_empty());
    }

    #[test]
    fn enabled_conf_keeps_what_is_there() {
        assert_eq!(
            enabled_conf(None, &["zfs".into(), "podman".into()]),
            "zfs\npodman\n"
        );
        assert_eq!(
            enabled_conf(Some("zfs"), &["zfs".into(), "podman".into()]),
            "zfs\npodman\n"
        );
        let d = tempfile::tempdir().unwrap();
        let p = BuiltinPlan {
            mask: vec!["docker-flatcar".into()],
            torcx: true,
            enable: vec!["zfs".into()],
            notes: vec![],
        };
        let e = edits(&p, None, d.path()).unwrap();
        assert_eq!(
            e.ops[0],
            Op::Symlink {
                path: "/etc/extensions/docker-flatcar.raw".into(),
                target: "/dev/null".into()
            }
        );
        assert_eq!(
            std::fs::read(d.path().join("torcx-generator")).unwrap(),
            b""
        );
        assert_eq!(
            std::fs::read_to_string(d.path().join("enabled-sysext.conf")).unwrap(),
            "zfs\n"
        );
        assert_eq!(e.ops.len(), 3);
    }
}
