//! Running the outside programs flatbake trusts to write filesystems (e2fsprogs,
//! btrfs-progs, fakeroot): one place that turns "not installed", a non-zero exit and
//! stderr noise into one-line errors naming the tool, and the package to install.
//! Every child flatbake starts goes through [`spawn`]: it carries this run's marker (so a
//! signal finds and kills it and whatever it starts, see [`crate::cleanup`]), runs in
//! its own process group (a terminal's Ctrl-C reaches flatbake, which stops its children
//! itself) and is killed by the kernel if flatbake dies first.

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{tool} is not installed (Debian package {package})")]
    Missing { tool: String, package: &'static str },
    #[error("{tool} could not start: {source}")]
    Spawn {
        tool: String,
        source: std::io::Error,
    },
    #[error("{tool} failed ({status}) while {doing}: {message}")]
    Failed {
        tool: String,
        status: String,
        doing: String,
        message: String,
    },
}

/// Which Debian package provides a tool, for the "not installed" message.
pub fn package_of(tool: &str) -> &'static str {
    match tool {
        "debugfs" | "e2fsck" | "mkfs.ext4" | "resize2fs" => "e2fsprogs",
        "btrfs" | "mkfs.btrfs" => "btrfs-progs",
        "fakeroot" => "fakeroot",
        "mksquashfs" | "unsquashfs" => "squashfs-tools",
        "mkfs.erofs" | "fsck.erofs" => "erofs-utils",
        "patchelf" => "patchelf",
        "qemu-img" => "qemu-utils",
        "unshare" | "mount" => "util-linux",
        "tar" => "tar",
        _ => "unknown",
    }
}

/// Whether `tool` is an executable file in a directory of `$PATH`.
pub fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|d| {
        std::fs::metadata(d.join(tool))
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// Every tool of `tools` that is not installed, as one problem each naming the Debian
/// package; checked before any work starts, so a missing tool never ends a long run.
pub fn missing(tools: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in tools {
        if !on_path(t) {
            let m = ToolError::Missing {
                tool: (*t).to_owned(),
                package: package_of(t),
            }
            .to_string();
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    out
}

/// Run `cmd` to completion, capturing its output. `doing` says what for, in errors.
pub fn run(cmd: &mut Command, doing: &str) -> Result<Output, ToolError> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let tool_name = if tool == "fakeroot" {
        // name the real tool, not the wrapper
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .find(|a| !a.starts_with('-') && !a.contains('/'))
            .unwrap_or(tool.clone())
    } else {
        tool.clone()
    };
    if crate::out::verbose() {
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        eprintln!("flatbake: running {tool} {}", args.join(" "));
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = spawn(cmd)?;
    let pause = format!("tool:{tool_name}");
    if crate::cleanup::pausing_at(&pause) {
        // hold the tool stopped while it is alive, for the fault-injection tests
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::STOP);
        }
        crate::cleanup::pause_point(&pause);
    }
    let out = child.wait_with_output();
    // on a signal the cleanup thread kills and reaps children: stay out of its way
    crate::cleanup::park_if_interrupted();
    let out = out.map_err(|source| ToolError::Spawn {
        tool: tool.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(ToolError::Failed {
            tool: tool_name,
            status: out.status.to_string(),
            doing: doing.to_owned(),
            message: summary(&out),
        });
    }
    Ok(out)
}

/// Start `cmd` as a child of this run (see the module doc). A signal being handled
/// parks the calling thread instead: the process is exiting.
pub fn spawn(cmd: &mut Command) -> Result<std::process::Child, ToolError> {
    use std::os::unix::process::CommandExt;
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let parent = rustix::process::getpid();
    cmd.env(crate::cleanup::child_marker(), "1")
        .process_group(0);
    // SAFETY: the closure runs between fork and exec and only makes two system calls
    // (prctl, getppid), which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::Error::other("flatbake exited"));
            }
            Ok(())
        });
    }
    let spawning = crate::cleanup::spawn_lock();
    if crate::cleanup::interrupted() {
        // the signal thread needs the lock to proceed
        drop(spawning);
        crate::cleanup::park_if_interrupted();
    }
    cmd.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ToolError::Missing {
                tool: tool.clone(),
                package: package_of(&tool),
            }
        } else {
            ToolError::Spawn {
                tool: tool.clone(),
                source,
            }
        }
    })
}

/// The most telling lines of a failed tool's output, joined on one line.
pub fn summary(out: &Output) -> String {
    let text = if out.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
        &out.stderr
    } else {
        &out.stdout
    };
    let text = String::from_utf8_lossy(text);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    tail.join(" | ")
}

/// A command, wrapped in `fakeroot` (sharing `state`) when we are not root, so that
/// ownership written by one tool is seen by the next as it would be by root.
pub fn as_root<S: AsRef<OsStr>>(program: S, state: &std::path::Path) -> Command {
    if rustix::process::geteuid().is_root() {
        Command::new(program)
    } else {
        let mut c = Command::new("fakeroot");
        if state.exists() {
            c.arg("-i").arg(state);
        }
        c.arg("-s").arg(state).arg("--").arg(program);
        c
    }
}
