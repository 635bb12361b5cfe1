//! Stage 2 of a bake, the plan: from the request and the facts read from the image,
//! every edit the bake will make — extension images, links and sysupdate configs
//! (`place`), sysupdate units (`autoupdate`), built-in masks and official extensions
//! (`builtin`), the Ignition config and kernel arguments — checked together before
//! anything is written. Every input is staged once into the private work directory and
//! the staged copy is what is checked, planned and later verified; nothing outside the
//! work directory is written here. All problems are returned at once.

use super::facts::{ImageFacts, RootFacts};
use super::place::{self, Extension, PlanInput};
use super::{autoupdate, builtin, collide, BakeRequest};
use crate::arch::Arch;
use crate::fs::{btrfs, Edits, Op};
use crate::sysext::compat::TargetOs;
use crate::util::human;
use std::path::{Path, PathBuf};

/// Everything a bake will write, in order, per filesystem.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The architecture the image is for (the request's, else the ESP's).
    pub arch: Option<Arch>,
    /// The extensions baked, placed and checked.
    pub extensions: Vec<Extension>,
    /// ROOT (ext4) edits, applied in order.
    pub root: Edits,
    /// OEM (btrfs) edits, applied in order.
    pub oem: Edits,
    /// Lines for the user: defaults taken and old files kept.
    pub notes: Vec<String>,
    /// ROOT's journal needs replaying into the output before it is edited.
    pub replay_journal: bool,
}

/// Plan the bake of `req` into the image `facts` describes. Staged inputs and generated
/// files go to `stage` (a fresh directory in the run's work dir); `problems` already
/// holds what the caller found (the output path).
pub fn plan(
    req: &BakeRequest,
    facts: &ImageFacts,
    stage: Option<&Path>,
    mut problems: Vec<String>,
) -> Result<Plan, Vec<String>> {
    let arch = arch(req, facts, &mut problems);
    let target = target_os(req, facts, arch, stage, &mut problems);
    let exts = place::check_extensions(&PlanInput {
        extensions: &req.extensions,
        install_to: &req.install_to,
        sysupdate_confs: &req.sysupdate_confs,
        arch,
        target: &target,
        stage,
    })
    .unwrap_or_else(|ps| {
        problems.extend(ps);
        Vec::new()
    });
    let root = match &facts.root {
        Ok(r) => r,
        Err(p) => {
            problems.push(p.clone());
            return Err(problems);
        }
    };
    let lookup = |p: &str| collide::root_lookup(&root.fs, p);
    let root_state = collide::RootState {
        lookup: &lookup,
        links: root.links.clone(),
    };
    let (mut root_edits, mut oem_edits, kept) = place::edits(&exts, &root_state);
    let names: Vec<&str> = exts.iter().map(|e| e.name.as_str()).collect();
    let builtins = builtin::plan(&req.builtins, &names).unwrap_or_else(|ps| {
        problems.extend(ps);
        builtin::BuiltinPlan::default()
    });
    let updated: Vec<&str> = exts
        .iter()
        .filter(|e| e.conf.is_some())
        .map(|e| e.name.as_str())
        .collect();
    if req.sysupdate && updated.is_empty() {
        problems.push("--sysupdate: no extension being baked has a sysupdate config (NAME.conf beside FILE or --sysupdate-conf)".into());
    }
    oem_edits
        .ops
        .extend(boot_edits(req, facts, stage, &mut problems));
    // Generated ROOT files are staged now, so the plan holds every edit.
    let later = generated_in(req, &updated, &builtins, root, stage).unwrap_or_else(|p| {
        problems.push(p);
        Vec::new()
    });
    problems.extend(collide::collisions(&exts, &later, &root_state));
    root_edits.ops.extend(later);
    problems.extend(space(facts, root, &root_edits, &oem_edits));
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Plan {
        arch,
        extensions: exts,
        root: root_edits,
        oem: oem_edits,
        notes: builtins.notes.into_iter().chain(kept).collect(),
        replay_journal: root.sb.needs_recovery,
    })
}

/// `--arch`, judged against the image's own architecture (it names what the image is,
/// it cannot change it); the architecture the rest is judged against.
fn arch(req: &BakeRequest, facts: &ImageFacts, problems: &mut Vec<String>) -> Option<Arch> {
    match (req.arch, facts.image.arch) {
        (Some(want), Some(found)) if want != found => {
            problems.push(format!(
                "{}: is a {found} image, not {want}; drop --arch {want} (it names the image's architecture, it cannot change it)",
                facts.path().display()
            ));
            // the rest is judged against what the image is, not against the mistake
            Some(found)
        }
        (want, found) => want.or(found),
    }
}

/// OEM edits for the next boot: the Ignition config and `--kernel-arg`s.
fn boot_edits(
    req: &BakeRequest,
    facts: &ImageFacts,
    stage: Option<&Path>,
    problems: &mut Vec<String>,
) -> Vec<Op> {
    let mut ops: Vec<Op> = ignition(req, facts, stage, problems).into_iter().collect();
    problems.extend(crate::platform::oem::kernel_arg_problems(&req.kernel_args));
    if !req.kernel_args.is_empty() {
        ops.push(Op::Append {
            path: "/grub.cfg".into(),
            header: crate::platform::oem::GRUB_HEADER.into(),
            text: crate::platform::oem::kernel_args_line(&req.kernel_args),
        });
    }
    ops
}

/// [`generated`] in `stage`; without one (the output or its work directory is unusable,
/// so the bake is refused) in a scratch directory, only so that their collisions and
/// space are reported with the rest.
fn generated_in(
    req: &BakeRequest,
    updated: &[&str],
    builtins: &builtin::BuiltinPlan,
    root: &RootFacts,
    stage: Option<&Path>,
) -> Result<Vec<Op>, String> {
    if let Some(dir) = stage {
        return generated(req, updated, builtins, root, dir);
    }
    let tmp = std::env::temp_dir();
    let scratch =
        crate::cleanup::temp_dir(&tmp, "plan-").map_err(|e| format!("{}: {e}", tmp.display()))?;
    generated(req, updated, builtins, root, scratch.path())
}

/// The OS every extension must match, as systemd-sysext will check it: the image's own
/// os-release (in USR-A; a scratch directory beside `stage` for `btrfs restore`, should
/// the in-place reader not decode it).
fn target_os(
    req: &BakeRequest,
    facts: &ImageFacts,
    arch: Option<Arch>,
    stage: Option<&Path>,
    problems: &mut Vec<String>,
) -> TargetOs {
    let any = || TargetOs::any_flatcar(arch.map(Arch::systemd_name));
    let Some(dir) = stage.filter(|_| !req.extensions.is_empty()) else {
        return any();
    };
    let dir = dir.with_file_name("target");
    let t = std::fs::create_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
        .and_then(|()| crate::sysext::target::from_facts(&facts.image, &dir, arch));
    let _ = std::fs::remove_dir_all(&dir);
    t.unwrap_or_else(|p| {
        problems.push(p);
        any()
    })
}

/// The sysupdate units and built-in edits, their files staged in `stage/generated`.
fn generated(
    req: &BakeRequest,
    updated: &[&str],
    builtins: &builtin::BuiltinPlan,
    root: &RootFacts,
    stage: &Path,
) -> Result<Vec<Op>, String> {
    let dir = stage.join("generated");
    let failed = |e: std::io::Error| format!("{}: {e}", dir.display());
    std::fs::create_dir(&dir).map_err(failed)?;
    let mut ops = Vec::new();
    if req.sysupdate {
        ops.extend(
            autoupdate::edits(updated, req.sysupdate_action, &dir)
                .map_err(failed)?
                .ops,
        );
    }
    let conf = match (&root.enabled_conf, builtins.enable.is_empty()) {
        (_, true) => None,
        (Ok(c), false) => c.as_deref(),
        (Err(p), false) => return Err(p.clone()),
    };
    ops.extend(builtin::edits(builtins, conf, &dir).map_err(failed)?.ops);
    Ok(ops)
}

/// `--ignition`: the config, read once, checked, staged; the ESP must still trigger
/// Ignition on first boot.
fn ignition(
    req: &BakeRequest,
    facts: &ImageFacts,
    stage: Option<&Path>,
    problems: &mut Vec<String>,
) -> Option<Op> {
    let ign = req.ignition.as_ref()?;
    let checked =
        crate::ignition::read(ign).and_then(|b| crate::ignition::check_bytes(&b, ign).map(|_| b));
    let src: PathBuf = match (checked, stage) {
        (Err(p), _) => {
            problems.push(p);
            ign.clone()
        }
        (Ok(b), Some(d)) => {
            let dest = d.join("config.ign");
            match crate::input::stage_bytes(&b, &dest) {
                Ok(s) => s.path,
                Err(e) => {
                    problems.push(format!("{}: {e}", dest.display()));
                    ign.clone()
                }
            }
        }
        (Ok(_), None) => ign.clone(),
    };
    match facts.image.first_boot {
        Some(true) => {}
        Some(false) => problems.push(format!(
            "{}: the ESP has no /flatcar/first_boot flag, so Ignition would not run on first boot (was this image booted already?)",
            facts.path().display()
        )),
        None => problems.push(format!(
            "{}: cannot read the ESP to check for /flatcar/first_boot",
            facts.path().display()
        )),
    }
    Some(Op::Write {
        path: "/config.ign".into(),
        src,
        mode: 0o600,
    })
}

/// Room on ROOT (data, directories, metadata and inodes) and on OEM.
fn space(facts: &ImageFacts, root: &RootFacts, root_edits: &Edits, oem: &Edits) -> Vec<String> {
    let mut ps = Vec::new();
    let sb = &root.sb;
    let (blocks, inodes) = sb.need(&root_edits.ops, &mut |d| {
        root.fs.symlink_metadata(d).is_err()
    });
    if blocks * sb.block_size > sb.available() || inodes > sb.free_inodes {
        ps.push(format!(
            "{}: ROOT has {} and {} inodes free but the extensions need {} and {} inodes, counting directories and metadata",
            facts.path().display(),
            human(sb.available()),
            sb.free_inodes,
            human(blocks * sb.block_size),
            inodes
        ));
    }
    if oem.is_empty() {
        return ps;
    }
    let added: u64 = oem
        .ops
        .iter()
        .map(|op| match op {
            Op::Write { src, .. } => std::fs::metadata(src)
                .map(|m| btrfs::footprint(m.len()))
                .unwrap_or(0),
            _ => 0,
        })
        .sum();
    match facts.oem_super() {
        Ok(sup) if added + sup.bytes_used + btrfs::OVERHEAD > facts.layout.oem.size() => {
            ps.push(format!(
                "{}: OEM is {} with {} used, too small for {} more",
                facts.path().display(),
                human(facts.layout.oem.size()),
                human(sup.bytes_used),
                human(added)
            ))
        }
        Ok(_) => {}
        Err(e) => ps.push(e.to_string()),
    }
    ps
}

impl Plan {
    /// The plan for people: one line per edit, per filesystem.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (part, edits) in [("ROOT", &self.root), ("OEM", &self.oem)] {
            for op in &edits.ops {
                s.push_str(&format!("{part:<4} {}\n", describe(op)));
            }
        }
        if self.replay_journal {
            s.insert_str(0, "ROOT replay the ext4 journal first\n");
        }
        s
    }

    /// The plan as data: the edits per filesystem, with the sha256 of every file written.
    pub fn to_json(&self) -> serde_json::Value {
        let edits = |e: &Edits| -> Vec<serde_json::Value> {
            e.ops
                .iter()
                .map(|op| match op {
                    Op::MkdirP(p) => serde_json::json!({"op": "mkdir", "path": p}),
                    Op::Write { path, src, mode } => serde_json::json!({
                        "op": "write", "path": path, "mode": format!("{mode:04o}"),
                        "size": std::fs::metadata(src).map(|m| m.len()).ok(),
                        "sha256": crate::util::sha256_file(src).ok().map(|(h, _)| h),
                    }),
                    Op::Symlink { path, target } => {
                        serde_json::json!({"op": "symlink", "path": path, "target": target})
                    }
                    Op::Remove(p) => serde_json::json!({"op": "remove", "path": p}),
                    Op::Append { path, text, .. } => {
                        serde_json::json!({"op": "append", "path": path, "text": text})
                    }
                })
                .collect()
        };
        serde_json::json!({
            "arch": self.arch.map(|a| a.systemd_name()),
            "extensions": self.extensions.iter().map(|e| e.name.clone()).collect::<Vec<_>>(),
            "replay_journal": self.replay_journal,
            "root": edits(&self.root),
            "oem": edits(&self.oem),
        })
    }
}

fn describe(op: &Op) -> String {
    match op {
        Op::MkdirP(p) => format!("mkdir   {p}"),
        Op::Write { path, src, mode } => {
            let size = std::fs::metadata(src)
                .map(|m| human(m.len()))
                .unwrap_or_default();
            format!("write   {path} (mode {mode:04o}, {size})")
        }
        Op::Symlink { path, target } => format!("symlink {path} -> {target}"),
        Op::Remove(p) => format!("remove  {p}"),
        Op::Append { path, text, .. } => format!("append  {path}: {}", text.trim_end()),
    }
}
