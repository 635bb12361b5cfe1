//! Stage 3 of a bake, apply: copy the input image sparse into a temporary file beside
//! the output, replay ROOT's journal into the copy when the plan says so, and let the
//! chosen backend (`fs::apply_oem`, `fs::apply_root`: debugfs and the rootless btrfs
//! rebuild, or kernel mounts) make the plan's edits. The temporary file is registered
//! with cleanup; it becomes the output only after `verify`.

use super::facts::ImageFacts;
use super::plan::Plan;
use super::{log, BakeError, BakeRequest};
use crate::disk::sparse;
use std::path::Path;

/// The edited image, not yet in place: removed when dropped or on a signal.
pub struct Applied {
    pub file: tempfile::NamedTempFile,
    /// The input's permission bits, given to the output as it is renamed into place.
    mode: u32,
    _registered: crate::cleanup::Registered,
}

impl Applied {
    /// Rename the image to `output` (it is no longer removed on a signal after that).
    pub fn persist(self, output: &Path) -> Result<(), BakeError> {
        use std::os::unix::fs::PermissionsExt;
        let Applied {
            file,
            mode,
            _registered,
        } = self;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|source| BakeError::Io {
                path: output.to_owned(),
                source,
            })?;
        file.persist(output).map_err(|e| BakeError::Io {
            path: output.to_owned(),
            source: e.error,
        })?;
        if let Ok(d) = std::fs::File::open(crate::input::parent_dir(output)) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// Write the planned image into a new temporary file in `out_dir`.
pub fn apply(
    req: &BakeRequest,
    facts: &ImageFacts,
    plan: &Plan,
    out_dir: &Path,
    work: &Path,
) -> Result<Applied, BakeError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| BakeError::Io { path, source }
    };
    let (tmp, registered) = crate::cleanup::temp_file(out_dir, "", ".partial")
        .map_err(io(out_dir))?
        .split();
    // the owner must be able to write the copy while editing it (debugfs -w, btrfs
    // tools open it by name): an input without write permission (a 0444 release
    // image) gets its own mode back only when renamed into place
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(facts.mode | 0o600))
        .map_err(io(&req.output))?;
    let phase = crate::out::Phase::start(format!("copying {} (sparse)", facts.path().display()));
    sparse::clone_file(&facts.file, tmp.as_file()).map_err(io(&req.output))?;
    phase.done();
    if facts.layout.gpt.backup_problem.is_some() {
        // the primary is sound (only then is an image read): the output's backup is
        // rebuilt from it, as sgdisk or parted would, so the output is a sound disk
        let disk = tmp.as_file().metadata().map_err(io(&req.output))?.len() / 512;
        crate::disk::grow::write_gpt(tmp.path(), tmp.as_file(), &facts.layout.gpt, disk).map_err(
            |e| BakeError::Io {
                path: req.output.clone(),
                source: std::io::Error::other(format!("rebuilding the backup GPT: {e}")),
            },
        )?;
    }
    crate::cleanup::pause_point("copied");
    let backend = req.backend.resolve();
    if plan.replay_journal {
        log("ROOT's journal needs recovery (the image was not shut down cleanly): replaying it into the output first");
    }
    // replays only when the copy's journal needs it, then checks the result
    crate::fs::ext4_super::replay(tmp.path(), &facts.layout.root, backend, work)?;
    if backend == crate::fs::Backend::Mount {
        log("backend: mount (loop device and kernel mounts in a private mount namespace)");
    }
    if !plan.oem.is_empty() {
        let phase = crate::out::Phase::start("editing OEM (btrfs rebuild, check)");
        let oem_work = work.join("oem");
        std::fs::create_dir(&oem_work).map_err(io(&oem_work))?;
        crate::fs::apply_oem(
            req.backend,
            tmp.path(),
            tmp.as_file(),
            &facts.layout.oem,
            &plan.oem,
            &oem_work,
        )?;
        phase.done();
        crate::cleanup::pause_point("oem");
    }
    let phase = crate::out::Phase::start("editing ROOT (ext4 edit, e2fsck)");
    let root_work = work.join("root");
    std::fs::create_dir(&root_work).map_err(io(&root_work))?;
    crate::fs::apply_root(
        req.backend,
        tmp.path(),
        &facts.layout.root,
        &plan.root,
        &root_work,
    )?;
    tmp.as_file().sync_all().map_err(io(&req.output))?;
    phase.done();
    Ok(Applied {
        file: tmp,
        mode: facts.mode,
        _registered: registered,
    })
}
