//! Leaving nothing behind: temporary files and directories are named
//! `.flatbake-<pid>-...`, registered here while they exist, and removed on success, on
//! error (their owners' `Drop`), on panic (unwinding runs the same `Drop`s) and on
//! SIGINT/SIGTERM/SIGHUP (a signal thread removes everything registered, then exits
//! 128+signal). After a SIGKILL, the next run sweeps entries whose pid is gone.
//!
//! `FLATBAKE_PAUSE_AT=<stage>` makes a run stop at a named stage until it is killed;
//! the fault-injection tests use it to interrupt a run at a known point.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

fn registry() -> &'static Mutex<Vec<(u64, PathBuf)>> {
    static R: OnceLock<Mutex<Vec<(u64, PathBuf)>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Vec::new()))
}

/// Prefix of every temporary name of this process.
pub fn prefix() -> String {
    format!(".flatbake-{}-", std::process::id())
}

/// While alive, `path` is removed if the process is interrupted by a signal.
pub struct Registered(u64);

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut r) = registry().lock() {
            r.retain(|(id, _)| *id != self.0);
        }
    }
}

/// Register a temporary path for removal on SIGINT/SIGTERM/SIGHUP.
pub fn register(path: &Path) -> Registered {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Ok(mut r) = registry().lock() {
        r.push((id, path.to_owned()));
    }
    Registered(id)
}

fn remove(p: &Path) {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(p);
        }
        Err(_) => {}
    }
}

/// Start the signal thread (once).
pub fn install_signal_handlers() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                // hold the lock so nothing registers meanwhile; remove newest first
                if let Ok(r) = registry().lock() {
                    for (_, p) in r.iter().rev() {
                        remove(p);
                    }
                }
                eprintln!("flatbake: interrupted (signal {sig}); temporary files removed, nothing written");
                std::process::exit(128 + sig);
            }
        });
    });
}

/// Remove `.flatbake-<pid>-*` entries in `dir` left by processes that no longer exist.
pub fn sweep_stale(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(".flatbake-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid as u32 == std::process::id() || pid_alive(pid) {
            continue;
        }
        eprintln!(
            "flatbake: removing {} left by an interrupted run (pid {pid})",
            e.path().display()
        );
        remove(&e.path());
    }
}

fn pid_alive(pid: i32) -> bool {
    match rustix::process::Pid::from_raw(pid) {
        Some(p) => !matches!(
            rustix::process::test_kill_process(p),
            Err(rustix::io::Errno::SRCH)
        ),
        None => false,
    }
}

/// Fault injection: stop at `stage` if FLATBAKE_PAUSE_AT names it.
pub fn pause_point(stage: &str) {
    if std::env::var("FLATBAKE_PAUSE_AT").ok().as_deref() == Some(stage) {
        eprintln!("flatbake: paused at {stage}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_only_dead_pids() {
        let d = tempfile::tempdir().unwrap();
        // pid 2^22+1 exceeds pid_max on Linux: never alive
        let dead = d.path().join(".flatbake-4194305-x.partial");
        let mine = d.path().join(format!("{}x.partial", prefix()));
        let other = d.path().join("keep.bin");
        for p in [&dead, &mine, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        std::fs::create_dir(d.path().join(".flatbake-4194305-work")).unwrap();
        sweep_stale(d.path());
        assert!(!dead.exists());
        assert!(!d.path().join(".flatbake-4194305-work").exists());
        assert!(mine.exists() && other.exists());
    }
}
