//! The bake pipeline, in four stages a module each: `facts` reads the input image once,
//! `plan` checks every input and makes every edit into a plan (all problems reported
//! together, nothing written), `apply` copies the image sparse and lets a backend make
//! the edits, `verify` reads the result back and compares it with the plan. Only then is
//! the result renamed into place. The input image is opened read-only and never modified.

pub mod apply;
pub mod autoupdate;
pub mod builtin;
pub mod collide;
pub mod facts;
#[cfg(debug_assertions)]
pub mod fault;
pub mod place;
pub mod plan;
pub mod verify;

use crate::arch::Arch;
pub(crate) use crate::util::problem_list;
use facts::ImageFacts;
use place::{Extension, InstallRule, Target};
use std::path::{Path, PathBuf};

/// Everything a bake run needs, as parsed from the command line.
#[derive(Clone, Debug)]
pub struct BakeRequest {
    pub image: PathBuf,
    pub output: PathBuf,
    /// Replace an existing output; without it an existing output is a pre-flight problem.
    pub force: bool,
    pub extensions: Vec<String>,
    pub install_to: Vec<InstallRule>,
    pub sysupdate_confs: Vec<String>,
    pub arch: Option<Arch>,
    /// Scratch space; defaults to a fresh directory beside the output.
    pub work_dir: Option<PathBuf>,
    /// Enable systemd-sysupdate for extensions that have a sysupdate config.
    pub sysupdate: bool,
    /// What a staged update triggers.
    pub sysupdate_action: autoupdate::Action,
    /// Ignition config to install as OEM `/config.ign`.
    pub ignition: Option<PathBuf>,
    /// Kernel arguments appended to linux_append in OEM `/grub.cfg`.
    pub kernel_args: Vec<String>,
    /// How ROOT and OEM are edited.
    pub backend: crate::fs::Backend,
    /// Masking Flatcar's built-in extensions and enabling its optional ones.
    pub builtins: builtin::BuiltinRequest,
    /// Only plan: check everything, write nothing at the output.
    pub dry_run: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BakeError {
    #[error("{}", problem_list(.0))]
    Preflight(Vec<String>),
    #[error(transparent)]
    Gpt(#[from] crate::disk::gpt::GptError),
    #[error(transparent)]
    Layout(#[from] crate::disk::layout::LayoutError),
    #[error(transparent)]
    Fs(#[from] crate::fs::FsError),
    #[error("the output does not hold what was planned, so it was not written: {}", problem_list(.0))]
    Verify(Vec<String>),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BakeError + '_ {
    move |source| BakeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One installed extension, as reported to the user.
#[derive(Clone, Debug)]
pub struct Baked {
    pub name: String,
    pub target: Target,
    pub path: String,
    pub symlink: String,
    pub link_target: String,
    pub conf: Option<String>,
    pub sha256: String,
    pub size: u64,
}

/// What a bake run produced.
#[derive(Clone, Debug)]
pub struct BakeReport {
    pub output: PathBuf,
    pub arch: Option<Arch>,
    pub extensions: Vec<Baked>,
    /// What was read back from the output and found as planned (not on a dry run).
    pub verified: Option<verify::Verified>,
    /// The plan as text and as data, on a dry run.
    pub plan: Option<(String, serde_json::Value)>,
}

/// Read, plan, apply, verify. On error nothing exists at `req.output` that was not
/// there before; with `req.dry_run` only the plan is made.
pub fn bake(req: &BakeRequest) -> Result<BakeReport, BakeError> {
    let facts = ImageFacts::read(&req.image, req.backend)?;
    let out_dir = crate::input::parent_dir(&req.output);
    let mut problems = Vec::new();
    if let Err(p) = check_output(req, &out_dir, req.force || req.dry_run) {
        problems.push(p);
    }
    let work = match problems.is_empty() {
        true => match work_dir(req, &out_dir) {
            Ok(w) => Some(w),
            Err(p) => {
                problems.push(p);
                None
            }
        },
        false => None,
    };
    let stage = work.as_ref().map(|w| w.path().join("stage"));
    if let Some(d) = &stage {
        std::fs::create_dir(d).map_err(io(d))?;
    }
    let plan = plan::plan(req, &facts, stage.as_deref(), problems).map_err(BakeError::Preflight)?;
    let Some(work) = work else {
        return Err(BakeError::Preflight(vec!["no work directory".into()]));
    };
    if req.dry_run {
        return Ok(BakeReport {
            output: req.output.clone(),
            arch: plan.arch,
            extensions: report(&plan.extensions)?,
            verified: None,
            plan: Some((plan.render(), plan.to_json())),
        });
    }
    for n in &plan.notes {
        log(n);
    }
    // from here on the inputs may change: only their checked copies are read
    crate::cleanup::pause_point("checked");
    let applied = apply::apply(req, &facts, &plan, &out_dir, work.path())?;
    #[cfg(debug_assertions)]
    fault::after_apply(applied.file.path(), &facts.layout, work.path())?;
    let phase = crate::out::Phase::start("verifying the output against the plan");
    let verified = verify::verify(applied.file.path(), &facts.layout, &plan, work.path())?;
    phase.done();
    crate::cleanup::pause_point("before-rename");
    let report = BakeReport {
        output: req.output.clone(),
        arch: plan.arch,
        extensions: report(&plan.extensions)?,
        verified: Some(verified),
        plan: None,
    };
    applied.persist(&req.output)?;
    Ok(report)
}

/// The run's private work directory (staged inputs, scratch), under `--work-dir` or
/// beside the output.
fn work_dir(
    req: &BakeRequest,
    out_dir: &Path,
) -> Result<crate::cleanup::Temp<tempfile::TempDir>, String> {
    let parent = req.work_dir.as_deref().unwrap_or(out_dir);
    crate::cleanup::temp_dir(parent, "work-")
        .map_err(|e| format!("{}: cannot create a work directory: {e}", parent.display()))
}

fn report(exts: &[Extension]) -> Result<Vec<Baked>, BakeError> {
    exts.iter()
        .map(|e| {
            let (sha256, size) = match &e.staged {
                Some(s) => (s.sha256.clone(), s.size),
                None => crate::util::sha256_file(e.data()).map_err(io(e.data()))?,
            };
            Ok(Baked {
                name: e.name.clone(),
                target: e.target,
                path: e.path.clone(),
                symlink: e.symlink(),
                link_target: e.link_target.clone(),
                conf: e.conf.as_ref().map(|_| e.conf_path()),
                sha256,
                size,
            })
        })
        .collect()
}

/// The files the request reads besides the image, each with what it is: sysexts,
/// their sysupdate configs (named, or `NAME.conf` beside the sysext), the Ignition config.
fn other_inputs(req: &BakeRequest) -> Vec<(String, PathBuf)> {
    let mut v = Vec::new();
    for e in &req.extensions {
        if let Some((name, file)) = e.split_once(':') {
            let f = PathBuf::from(file);
            v.push((format!("the sysext of {name}"), f.clone()));
            v.push((
                format!("the sysupdate config of {name}"),
                f.with_file_name(format!("{name}.conf")),
            ));
        }
    }
    for c in &req.sysupdate_confs {
        if let Some((name, file)) = c.split_once('=') {
            v.push((
                format!("the sysupdate config of {name}"),
                PathBuf::from(file),
            ));
        }
    }
    if let Some(i) = &req.ignition {
        v.push(("the Ignition config".to_owned(), i.clone()));
    }
    v
}

/// What input of `req` the existing file `path` is (the same file, through any link),
/// if any: writing there would replace something the bake reads.
pub fn input_at(req: &BakeRequest, path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let out = std::fs::metadata(path).ok()?;
    let same =
        |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.dev() == out.dev() && m.ino() == out.ino());
    if same(&req.image) {
        return Some("the input image".to_owned());
    }
    other_inputs(req)
        .into_iter()
        .find(|(_, p)| same(p))
        .map(|(what, p)| format!("{what} ({})", p.display()))
}

fn check_output(req: &BakeRequest, dir: &Path, force: bool) -> Result<(), String> {
    let output = &req.output;
    if !dir.is_dir() {
        return Err(format!(
            "{}: output directory does not exist",
            dir.display()
        ));
    }
    // replacing an input (--force) would lose a file the user gave
    if let Some(what) = input_at(req, output) {
        return Err(format!(
            "{}: the output is {what}; choose another --output",
            output.display()
        ));
    }
    if output.is_dir() {
        return Err(format!(
            "{}: is a directory; --output names a file",
            output.display()
        ));
    }
    if !force && std::fs::symlink_metadata(output).is_ok() {
        return Err(format!(
            "{}: already exists; pass --force to replace it",
            output.display()
        ));
    }
    Ok(())
}

fn log(msg: &str) {
    crate::out::note(format_args!("{msg}"));
}
