//! The bake pipeline: check everything, copy the input image (sparse), edit ROOT and
//! OEM, and rename the result into place only when every step and check succeeded.
//! The input image is opened read-only and never modified.

pub mod autoupdate;
pub mod builtin;
pub mod collide;
pub mod plan;

use crate::arch::Arch;
use crate::disk::gpt::Gpt;
use crate::disk::layout::FlatcarLayout;
use crate::disk::sparse;
use crate::fs::{btrfs, ext4, Op};
use plan::{Extension, InstallRule, PlanInput, Target};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
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
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Problems as one message: a single line, or a count and one line each.
pub fn problem_list(ps: &[String]) -> String {
    if ps.len() == 1 {
        return ps[0].clone();
    }
    let mut s = format!("{} problems, nothing was written:", ps.len());
    for p in ps {
        s.push_str("\n  - ");
        s.push_str(p);
    }
    s
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
}

/// Check, then bake. On error nothing exists at `req.output` that was not there before.
pub fn bake(req: &BakeRequest) -> Result<BakeReport, BakeError> {
    let input = crate::input::open_regular(&req.image).map_err(io(&req.image))?;
    let meta = input.metadata().map_err(io(&req.image))?;
    if !meta.is_file() {
        return Err(BakeError::Preflight(vec![format!(
            "{}: not a regular file",
            req.image.display()
        )]));
    }
    let gpt = Gpt::read_from(&input, meta.len(), &req.image)?;
    if let Some(p) = &gpt.backup_problem {
        log(&format!(
            "warning: {}: {p}; the output keeps it (repair the input with `sgdisk -e`)",
            req.image.display()
        ));
    }
    let layout = FlatcarLayout::find(gpt, &req.image)?;
    let arch = req
        .arch
        .or_else(|| crate::fs::fat::detect_arch(&input, &layout.esp));

    let mut problems = Vec::new();
    let out_dir = crate::input::parent_dir(&req.output);
    if let Err(p) = check_output(&req.image, &req.output, &out_dir, req.force) {
        problems.push(p);
    }
    // The work dir holds the private copies of the inputs that are checked and baked.
    let prefix = crate::cleanup::prefix();
    let work_parent = req.work_dir.clone().unwrap_or_else(|| out_dir.clone());
    let work = match problems.is_empty() {
        true => match tempfile::Builder::new()
            .prefix(&format!("{prefix}work-"))
            .tempdir_in(&work_parent)
        {
            Ok(w) => Some(w),
            Err(e) => {
                problems.push(format!(
                    "{}: cannot create a work directory: {e}",
                    work_parent.display()
                ));
                None
            }
        },
        false => None,
    };
    let _work_guard = work.as_ref().map(|w| crate::cleanup::register(w.path()));
    let stage = work.as_ref().map(|w| w.path().join("stage"));
    if let Some(d) = &stage {
        std::fs::create_dir(d).map_err(io(d))?;
    }
    let exts = match plan::check_extensions(&PlanInput {
        extensions: &req.extensions,
        install_to: &req.install_to,
        sysupdate_confs: &req.sysupdate_confs,
        arch,
        stage: stage.as_deref(),
    }) {
        Ok(e) => e,
        Err(ps) => {
            problems.extend(ps);
            Vec::new()
        }
    };
    // ROOT must be sane ext4 that is safe to edit (and OEM btrfs if used), with room.
    let sb =
        match crate::fs::ext4_super::check(&input, &req.image, &layout.root, req.backend.resolve())
        {
            Ok(sb) => sb,
            Err(p) => {
                problems.push(p);
                return Err(BakeError::Preflight(problems));
            }
        };
    let rootfs = ext4::open(&req.image, &layout.root)?;
    let lookup = |p: &str| collide::root_lookup(&rootfs, p);
    let root_state = plan::RootState {
        lookup: &lookup,
        links: collide::extension_links(&rootfs),
    };
    let (mut root_edits, mut oem_edits, kept) = plan::edits(&exts, &root_state);
    let baked_names: Vec<&str> = req
        .extensions
        .iter()
        .filter_map(|a| a.split_once(':').map(|(n, _)| n))
        .collect();
    let builtins = match builtin::plan(&req.builtins, &baked_names) {
        Ok(p) => p,
        Err(ps) => {
            problems.extend(ps);
            builtin::BuiltinPlan::default()
        }
    };
    let enabled_conf: Option<String> = if builtins.enable.is_empty() {
        None
    } else {
        match rootfs.read(builtin::ENABLED_CONF) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(t) => Some(t),
                Err(_) => {
                    problems.push(format!(
                        "{}: ROOT's {} is not text",
                        req.image.display(),
                        builtin::ENABLED_CONF
                    ));
                    None
                }
            },
            Err(_) => None,
        }
    };
    let updated: Vec<&str> = exts
        .iter()
        .filter(|e| e.conf.is_some())
        .map(|e| e.name.as_str())
        .collect();
    if req.sysupdate && updated.is_empty() {
        problems.push("--sysupdate: no extension being baked has a sysupdate config (NAME.conf beside FILE or --sysupdate-conf)".into());
    }
    if let Some(ign) = &req.ignition {
        // read once: the bytes checked are the bytes installed
        let checked = crate::ignition::read(ign)
            .and_then(|b| crate::ignition::check_bytes(&b, ign).map(|_| b));
        let src = match (checked, &stage) {
            (Err(p), _) => {
                problems.push(p);
                ign.clone()
            }
            (Ok(b), Some(d)) => {
                let dest = d.join("config.ign");
                crate::input::stage_bytes(&b, &dest)
                    .map_err(io(&dest))?
                    .path
            }
            (Ok(_), None) => ign.clone(),
        };
        match crate::fs::fat::has_first_boot(&input, &layout.esp) {
            Some(true) => {}
            Some(false) => problems.push(format!(
                "{}: the ESP has no /flatcar/first_boot flag, so Ignition would not run on first boot (was this image booted already?)",
                req.image.display()
            )),
            None => problems.push(format!("{}: cannot read the ESP to check for /flatcar/first_boot", req.image.display())),
        }
        oem_edits.push(Op::Write {
            path: "/config.ign".into(),
            src,
            mode: 0o600,
        });
    }
    problems.extend(crate::vendor::oem::kernel_arg_problems(&req.kernel_args));
    if !req.kernel_args.is_empty() {
        oem_edits.push(Op::Append {
            path: "/grub.cfg".into(),
            header: crate::vendor::oem::GRUB_HEADER.into(),
            text: crate::vendor::oem::kernel_args_line(&req.kernel_args),
        });
    }
    let need = |edits: &crate::fs::Edits, per_file: &dyn Fn(u64) -> u64| -> u64 {
        edits
            .ops
            .iter()
            .map(|op| match op {
                Op::Write { src, .. } => std::fs::metadata(src)
                    .map(|m| per_file(m.len()))
                    .unwrap_or(0),
                _ => 0,
            })
            .sum()
    };
    let later = collide::later_root_ops(req.sysupdate, &updated, &builtins);
    problems.extend(plan::collisions(&exts, &later, &root_state));
    let all_root: Vec<Op> = root_edits.ops.iter().chain(&later).cloned().collect();
    let (blocks, inodes) = sb.need(&all_root, &mut |d| rootfs.symlink_metadata(d).is_err());
    if blocks * sb.block_size > sb.available() || inodes > sb.free_inodes {
        problems.push(format!(
            "{}: ROOT has {} and {} inodes free but the extensions need {} and {} inodes, counting directories and metadata",
            req.image.display(),
            human(sb.available()),
            sb.free_inodes,
            human(blocks * sb.block_size),
            inodes
        ));
    }
    if !oem_edits.is_empty() {
        let sup = btrfs::read_super(&input, &req.image, &layout.oem)?;
        let oem_need = need(&oem_edits, &btrfs::footprint) + sup.bytes_used + btrfs::OVERHEAD;
        if oem_need > layout.oem.size() {
            problems.push(format!(
                "{}: OEM is {} with {} used, too small for {} more",
                req.image.display(),
                human(layout.oem.size()),
                human(sup.bytes_used),
                human(need(&oem_edits, &btrfs::footprint))
            ));
        }
    }
    drop(rootfs);
    if !problems.is_empty() {
        return Err(BakeError::Preflight(problems));
    }
    for n in builtins.notes.iter().chain(&kept) {
        log(n);
    }
    if sb.needs_recovery {
        log("ROOT's journal needs recovery (the image was not shut down cleanly): replaying it into the output first");
    }
    let Some(work) = work else {
        return Err(BakeError::Preflight(vec!["no work directory".into()]));
    };
    // from here on the inputs may change: only their checked copies are read
    crate::cleanup::pause_point("checked");

    // Everything checked: write.
    crate::cleanup::sweep_stale(&out_dir);
    let tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".partial")
        .tempfile_in(&out_dir)
        .map_err(io(&out_dir))?;
    let _tmp_guard = crate::cleanup::register(tmp.path());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io(&req.output))?;
    }
    let phase = crate::out::Phase::start(format!("copying {} (sparse)", req.image.display()));
    sparse::clone_file(&input, tmp.as_file()).map_err(io(&req.output))?;
    phase.done();
    crate::cleanup::pause_point("copied");
    crate::fs::ext4_super::replay(tmp.path(), &layout.root, req.backend.resolve(), work.path())?;
    if req.backend.resolve() == crate::fs::Backend::Mount {
        log("backend: mount (loop device and kernel mounts in a private mount namespace)");
    }
    if !oem_edits.is_empty() {
        let phase = crate::out::Phase::start("editing OEM (btrfs rebuild, check)");
        let oem_work = work.path().join("oem");
        std::fs::create_dir(&oem_work).map_err(io(&oem_work))?;
        crate::fs::apply_oem(
            req.backend,
            tmp.path(),
            tmp.as_file(),
            &layout.oem,
            &oem_edits,
            &oem_work,
        )?;
        phase.done();
        crate::cleanup::pause_point("oem");
    }
    let phase = crate::out::Phase::start("editing ROOT (ext4 edit, e2fsck)");
    let root_work = work.path().join("root");
    std::fs::create_dir(&root_work).map_err(io(&root_work))?;
    if req.sysupdate {
        root_edits.ops.extend(
            autoupdate::edits(&updated, req.sysupdate_action, &root_work)
                .map_err(io(&root_work))?
                .ops,
        );
    }
    root_edits.ops.extend(
        builtin::edits(&builtins, enabled_conf.as_deref(), &root_work)
            .map_err(io(&root_work))?
            .ops,
    );
    crate::fs::apply_root(
        req.backend,
        tmp.path(),
        &layout.root,
        &root_edits,
        &root_work,
    )?;
    tmp.as_file().sync_all().map_err(io(&req.output))?;
    phase.done();
    crate::cleanup::pause_point("before-rename");
    let report = BakeReport {
        output: req.output.clone(),
        arch,
        extensions: report(&exts)?,
    };
    tmp.persist(&req.output).map_err(|e| BakeError::Io {
        path: req.output.clone(),
        source: e.error,
    })?;
    if let Ok(d) = File::open(&out_dir) {
        let _ = d.sync_all();
    }
    Ok(report)
}

fn report(exts: &[Extension]) -> Result<Vec<Baked>, BakeError> {
    exts.iter()
        .map(|e| {
            let (sha256, size) = match &e.staged {
                Some(s) => (s.sha256.clone(), s.size),
                None => sha256_file(e.data())?,
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

/// Hex sha256 and length of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<(String, u64), BakeError> {
    let mut f = File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io(path))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((format!("{:x}", h.finalize()), n))
}

fn check_output(image: &Path, output: &Path, dir: &Path, force: bool) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if !dir.is_dir() {
        return Err(format!(
            "{}: output directory does not exist",
            dir.display()
        ));
    }
    if let (Ok(a), Ok(b)) = (std::fs::metadata(image), std::fs::metadata(output)) {
        if a.dev() == b.dev() && a.ino() == b.ino() {
            return Err(format!(
                "{}: the output is the input image; choose another --output",
                output.display()
            ));
        }
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

/// Sizes for people: `1.5 MiB`.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
