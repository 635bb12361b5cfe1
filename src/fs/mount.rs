//! The mount backend (`--backend mount`): ROOT and OEM edited through a loop device and
//! the kernel's own filesystem code, for those who prefer it (it also keeps OEM's btrfs
//! properties, which the rootless rebuild cannot).
//!
//! The mounting happens in a child `flatbake __mount-apply JOB` started under
//! `unshare --mount --propagation private`: its mounts exist only in its own mount
//! namespace and vanish with it, and its loop device is attached with autoclear, so it
//! detaches when the mount goes. Whatever ends the child — success, error, panic, a
//! signal, its parent dying (it has PR_SET_PDEATHSIG) — no mount or loop device
//! outlives it. Writes go through [`super::tree`], which never follows a symlink.

use super::{Edits, FsError};
use crate::disk::gpt::Partition;
use crate::tools;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the child does: attach `image` at `offset`/`size`, mount it as `fstype`, apply.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Job {
    pub part: String,
    pub image: PathBuf,
    pub offset: u64,
    pub size: u64,
    pub fstype: String,
    pub edits: Edits,
    pub mountpoint: PathBuf,
}

/// Whether this process could use the mount backend.
pub fn available() -> bool {
    rustix::process::geteuid().is_root() && Path::new("/dev/loop-control").exists()
}

fn part_name(part: &str) -> &'static str {
    match part {
        "ROOT" => "ROOT",
        "OEM" => "OEM",
        _ => "partition",
    }
}

/// Apply `edits` to the `fstype` filesystem in `part` of `image` through a mount.
pub fn apply(
    image: &Path,
    part: &Partition,
    label: &'static str,
    fstype: &str,
    edits: &Edits,
    work: &Path,
) -> Result<(), FsError> {
    if edits.is_empty() {
        return Ok(());
    }
    if !available() {
        return Err(FsError::Invalid {
            part: label,
            what: "the mount backend needs root and /dev/loop-control; use --backend rootless"
                .into(),
        });
    }
    let job = Job {
        part: label.to_owned(),
        image: std::path::absolute(image).map_err(FsError::io(image))?,
        offset: part.offset(),
        size: part.size(),
        fstype: fstype.to_owned(),
        edits: edits.clone(),
        mountpoint: work.join(format!("mnt-{label}")),
    };
    std::fs::create_dir_all(&job.mountpoint).map_err(FsError::io(&job.mountpoint))?;
    let path = work.join(format!("mount-job-{label}.json"));
    let text = serde_json::to_vec(&job).map_err(|e| FsError::Invalid {
        part: label,
        what: e.to_string(),
    })?;
    std::fs::write(&path, text).map_err(FsError::io(&path))?;
    let exe = std::env::current_exe().map_err(FsError::io("/proc/self/exe"))?;
    let err_file = path.with_extension("error");
    // the child reports its error in `err_file` only (its stderr carries its progress):
    // the error is printed once, by whoever prints ours
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--"])
        .arg(exe)
        .arg("__mount-apply")
        .arg(&path)
        .stdin(std::process::Stdio::null());
    let status = tools::spawn(&mut cmd)?.wait();
    crate::cleanup::park_if_interrupted();
    let status = status.map_err(|source| {
        FsError::Tool(tools::ToolError::Spawn {
            tool: "unshare".into(),
            source,
        })
    })?;
    if !status.success() {
        // the child's message already names the partition: name it once
        let own = format!("{label} partition: ");
        let msg = std::fs::read_to_string(&err_file)
            .ok()
            .map(|m| m.trim().trim_start_matches(own.as_str()).to_owned())
            .filter(|m| !m.is_empty());
        return Err(FsError::Invalid {
            part: label,
            what: msg.unwrap_or_else(|| format!("mount backend failed ({status})")),
        });
    }
    Ok(())
}

/// The child's entry point: run the job, leave any error beside it for the parent.
pub fn run_job(path: &Path) -> Result<(), FsError> {
    let r = run_job_inner(path);
    if let Err(e) = &r {
        let _ = std::fs::write(path.with_extension("error"), e.to_string());
    }
    r
}

/// The child's side: runs inside the private mount namespace.
fn run_job_inner(path: &Path) -> Result<(), FsError> {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let text = std::fs::read(path).map_err(FsError::io(path))?;
    let job: Job = serde_json::from_slice(&text).map_err(|e| FsError::Invalid {
        part: "partition",
        what: format!("{}: {e}", path.display()),
    })?;
    let label = part_name(&job.part);
    let invalid = |what: String| FsError::Invalid { part: label, what };
    // belt and braces: nothing mounted here propagates to the parent namespace
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC,
    )
    .map_err(|e| invalid(format!("making mounts private: {e}")))?;
    let ctl = loopdev::LoopControl::open().map_err(FsError::io("/dev/loop-control"))?;
    let mut attached = None;
    for _ in 0..20 {
        let dev = ctl.next_free().map_err(FsError::io("/dev/loop-control"))?;
        match dev
            .with()
            .offset(job.offset)
            .size_limit(job.size)
            .autoclear(true)
            .attach(&job.image)
        {
            Ok(()) => {
                attached = Some(dev);
                break;
            }
            // another process took that device first: try the next one
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => continue,
            Err(e) => return Err(FsError::io(&job.image)(e)),
        }
    }
    let dev = attached.ok_or_else(|| invalid("no free loop device".into()))?;
    let dev_path = dev
        .path()
        .ok_or_else(|| invalid("loop device has no path".into()))?;
    let mount = sys_mount::Mount::builder()
        .fstype(job.fstype.as_str())
        .mount(&dev_path, &job.mountpoint)
        .map_err(|e| {
            invalid(format!(
                "mounting {} ({}) on {}: {e}",
                dev_path.display(),
                job.fstype,
                job.mountpoint.display()
            ))
        })?;
    crate::cleanup::pause_point("mounted");
    let result = super::tree::apply(label, &job.mountpoint, &job.edits, true);
    let unmounted = sys_mount::Unmount::unmount(&mount, sys_mount::UnmountFlags::empty());
    drop(dev);
    result?;
    unmounted.map_err(|e| invalid(format!("unmounting {}: {e}", job.mountpoint.display())))?;
    Ok(())
}
