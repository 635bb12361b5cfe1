//! Leaving nothing behind, and nobody else's things touched.
//!
//! Temporary files and directories are named `.flatbake-<tag>-...`, where the tag is
//! `<pid>-<random>` (unique even across PID namespaces and hosts sharing a directory).
//! In every directory where a run creates one, it first creates `.flatbake-<tag>.lock`
//! and holds an exclusive `flock` on it until it exits. Temporary paths are registered
//! here while they exist, and removed on success, on error (their owners' `Drop`), on
//! panic (unwinding runs the same `Drop`s) and on SIGINT/SIGTERM/SIGHUP.
//!
//! On a signal, a thread: stops new child processes from starting, kills every process
//! this run started (the outside tools, their helpers such as fakeroot's daemon, and
//! flatbake's own workers: found by a marker in their environment, so even a daemon that
//! left the process tree is found) and waits until they are gone, waits for loop devices
//! on its files to detach, removes everything registered and its lock files, then exits
//! 128+signal.
//!
//! A SIGKILL leaves debris behind. The next run sweeping that directory removes
//! another run's `.flatbake-<tag>-*` entries only when it can take that run's lock, that
//! is when the run is provably gone; a pid is never trusted (another namespace's or
//! host's live run may have any pid).
//!
//! `FLATBAKE_PAUSE_AT=<stage>` makes a run stop at a named stage until it is killed;
//! `FLATBAKE_PAUSE_AT=tool:<name>` stops it while the tool `<name>` has been started and
//! is held stopped. The fault-injection tests use them to interrupt a run at a known point.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn registry() -> &'static Mutex<Vec<(u64, PathBuf)>> {
    static R: OnceLock<Mutex<Vec<(u64, PathBuf)>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Vec::new()))
}

/// This run's tag: `<pid>-<8 hex digits of randomness>`.
pub fn tag() -> &'static str {
    static T: OnceLock<String> = OnceLock::new();
    T.get_or_init(|| {
        let mut b = [0u8; 4];
        let random = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
        if random.is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
                .unwrap_or(0);
            b = t.to_le_bytes();
        }
        format!("{}-{}", std::process::id(), crate::util::hex(&b))
    })
}

/// The environment variable that marks every process this run starts (inherited by
/// their children, including daemons that leave the process tree).
pub fn child_marker() -> String {
    format!("FLATBAKE_CHILD_OF_{}", tag().replace('-', "_"))
}

/// Lock files this run holds, by directory.
fn locks() -> &'static Mutex<HashMap<PathBuf, (PathBuf, File)>> {
    static L: OnceLock<Mutex<HashMap<PathBuf, (PathBuf, File)>>> = OnceLock::new();
    L.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Prefix of this run's temporary names; a name in a directory needs [`prefix_in`]
/// (the lock) first.
pub fn prefix() -> String {
    format!(".flatbake-{}-", tag())
}

/// Prefix of this run's temporary names in `dir`: takes this run's lock in `dir` first
/// (and, the first time, sweeps `dir` of the debris of runs that are provably gone).
pub fn prefix_in(dir: &Path) -> std::io::Result<String> {
    let key = std::path::absolute(dir)?;
    let mut held = lock(locks());
    if !held.contains_key(&key) {
        let path = key.join(format!(".flatbake-{}.lock", tag()));
        let file = take_lock(&path)?;
        held.insert(key.clone(), (path, file));
        drop(held);
        sweep_stale(&key);
    }
    Ok(prefix())
}

/// Create `path` and hold its lock. A sweeper may unlink a lock file between its
/// creation and our `flock` (it took the lock first, thinking its run gone): then the
/// lock we hold is on a file no longer there, so create it again.
fn take_lock(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::MetadataExt;
    for _ in 0..100 {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)?;
        let (a, b) = (f.metadata()?, std::fs::metadata(path));
        if matches!(&b, Ok(b) if a.dev() == b.dev() && a.ino() == b.ino()) {
            return Ok(f);
        }
    }
    Err(std::io::Error::other(format!(
        "{}: cannot hold this lock file",
        path.display()
    )))
}

/// Remove this run's lock files (at exit: the run's temporary files are gone by then).
pub fn release_locks() {
    let mut held = lock(locks());
    for (_, (path, _file)) in held.drain() {
        let _ = std::fs::remove_file(path);
    }
}

/// Releases this run's lock files when dropped (at the end of `main`, also by a panic).
pub struct LocksGuard;

impl Drop for LocksGuard {
    fn drop(&mut self) {
        release_locks();
    }
}

/// While alive, `path` is removed if the process is interrupted by a signal.
pub struct Registered(u64);

impl Drop for Registered {
    fn drop(&mut self) {
        lock(registry()).retain(|(id, _)| *id != self.0);
    }
}

/// Register a temporary path for removal on SIGINT/SIGTERM/SIGHUP.
pub fn register(path: &Path) -> Registered {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    lock(registry()).push((id, path));
    Registered(id)
}

/// A registered temporary (directory or file): removed when dropped, and on a signal.
pub struct Temp<T> {
    inner: T,
    reg: Registered,
}

impl<T> std::ops::Deref for Temp<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> Temp<T> {
    /// The temporary and its registration, for a caller that consumes the temporary
    /// (e.g. renames it into place) and drops the registration after.
    pub fn split(self) -> (T, Registered) {
        (self.inner, self.reg)
    }
}

/// A fresh registered directory `.flatbake-<tag>-<what>XXXXXX` in `parent`.
pub fn temp_dir(parent: &Path, what: &str) -> std::io::Result<Temp<tempfile::TempDir>> {
    let prefix = format!("{}{what}", prefix_in(parent)?);
    let inner = tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir_in(parent)?;
    let reg = register(inner.path());
    Ok(Temp { inner, reg })
}

/// A fresh registered file `.flatbake-<tag>-<what>XXXXXX<suffix>` in `parent`.
pub fn temp_file(
    parent: &Path,
    what: &str,
    suffix: &str,
) -> std::io::Result<Temp<tempfile::NamedTempFile>> {
    let prefix = format!("{}{what}", prefix_in(parent)?);
    let inner = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(suffix)
        .tempfile_in(parent)?;
    let reg = register(inner.path());
    Ok(Temp { inner, reg })
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

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether a signal is being handled: the process is about to exit.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Block this thread for good: the signal thread is cleaning up and will exit.
pub fn park_if_interrupted() {
    if interrupted() {
        loop {
            std::thread::park();
        }
    }
}

/// Held while a child process is started, so that a signal never races a spawn.
pub fn spawn_lock() -> MutexGuard<'static, ()> {
    static S: Mutex<()> = Mutex::new(());
    lock(&S)
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
                INTERRUPTED.store(true, Ordering::SeqCst);
                // no child starts from here on; hold the registry so nothing registers
                let _spawning = spawn_lock();
                let r = lock(registry());
                kill_children();
                let paths: Vec<&Path> = r.iter().map(|(_, p)| p.as_path()).collect();
                wait_loop_devices(&paths);
                // newest first: a file inside a registered directory goes before it
                for p in paths.iter().rev() {
                    remove(p);
                }
                release_locks();
                eprintln!("flatbake: interrupted (signal {sig}); temporary files removed, nothing written");
                std::process::exit(128 + sig);
            }
        });
    });
}

/// Live (not zombie) processes whose environment carries this run's marker.
fn marked_processes() -> Vec<i32> {
    let needle = format!("{}=", child_marker());
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me && !is_zombie(pid))
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|&b| b == 0)
                    .any(|v| v.starts_with(needle.as_bytes()))
            })
        })
        .collect()
}

/// Whether `pid` is gone or a zombie (or dying: its memory is released).
fn is_zombie(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // the state follows the command name, which is in parentheses
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('Z' | 'X'))),
        Err(_) => true,
    }
}

/// Kill every live process this run started, and wait until they are gone.
fn kill_children() {
    use rustix::process::{kill_process, waitpid, Pid, Signal, WaitOptions};
    for _ in 0..500 {
        let live = marked_processes();
        if live.is_empty() {
            break;
        }
        for pid in &live {
            if let Some(p) = Pid::from_raw(*pid) {
                let _ = kill_process(p, Signal::KILL);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // reap our own children (a thread waiting on one of them then parks)
    while let Ok(Some(_)) = waitpid(None, WaitOptions::NOHANG) {}
}

/// Loop devices whose backing file is one of `paths` or inside one of them.
pub fn loop_devices_on(paths: &[&Path]) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let backing = std::fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            let backing = backing.trim().trim_end_matches(" (deleted)");
            paths
                .iter()
                .any(|p| Path::new(backing).starts_with(p))
                .then_some(name)
        })
        .collect()
}

/// The kernel detaches an autoclear loop device when its last user (a killed worker's
/// mount) goes: wait for that, so that nothing is left when we exit.
fn wait_loop_devices(paths: &[&Path]) {
    for _ in 0..500 {
        if loop_devices_on(paths).is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Remove, in `dir`, the `.flatbake-<tag>-*` entries and lock of every run that is
/// provably gone: its lock file exists and we can take its lock. Entries of a run whose
/// lock is held, or that has no lock file we can open, are left alone.
pub fn sweep_stale(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut by_tag: HashMap<String, Vec<PathBuf>> = HashMap::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(t) = tag_of(&name) {
            if t != tag() {
                by_tag.entry(t.to_owned()).or_default().push(e.path());
            }
        }
    }
    for (t, entries) in by_tag {
        let lock_path = dir.join(format!(".flatbake-{t}.lock"));
        let Ok(f) = File::open(&lock_path) else {
            continue;
        };
        if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        for p in entries.iter().filter(|p| **p != lock_path) {
            eprintln!(
                "flatbake: removing {} left by an interrupted run",
                p.display()
            );
            remove(p);
        }
        // unlink the lock while holding it: a late owner sees its lock file gone
        let _ = std::fs::remove_file(&lock_path);
    }
}

/// The run tag in a temporary name: `.flatbake-<pid>-<8 hex>` followed by `-` or `.lock`.
fn tag_of(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(".flatbake-")?;
    let pid_len = rest.find('-')?;
    rest[..pid_len].parse::<u32>().ok()?;
    let nonce = rest.get(pid_len + 1..pid_len + 9)?;
    if !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let after = &rest[pid_len + 9..];
    (after.starts_with('-') || after == ".lock").then(|| &rest[..pid_len + 9])
}

/// Fault injection: stop at `stage` if FLATBAKE_PAUSE_AT names it.
pub fn pause_point(stage: &str) {
    if pausing_at(stage) {
        eprintln!("flatbake: paused at {stage}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// Whether FLATBAKE_PAUSE_AT names `stage`.
pub fn pausing_at(stage: &str) -> bool {
    std::env::var("FLATBAKE_PAUSE_AT").ok().as_deref() == Some(stage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse() {
        assert_eq!(tag_of(".flatbake-12-0a1b2c3d-work-x"), Some("12-0a1b2c3d"));
        assert_eq!(tag_of(".flatbake-12-0a1b2c3d.lock"), Some("12-0a1b2c3d"));
        assert_eq!(tag_of(".flatbake-12-work-x"), None);
        assert_eq!(tag_of(".flatbake-pack.partial"), None);
        assert_eq!(tag_of(".flatbake-12-0a1b2c3d"), None);
        assert_eq!(tag_of(&format!(".flatbake-{}.lock", tag())), Some(tag()));
    }

    #[test]
    fn sweeps_only_runs_whose_lock_is_free() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        // a dead run: its lock file exists, nobody holds it
        std::fs::write(p.join(".flatbake-7-deadbeef.lock"), b"").unwrap();
        std::fs::write(p.join(".flatbake-7-deadbeef-x.partial"), b"x").unwrap();
        std::fs::create_dir(p.join(".flatbake-7-deadbeef-work-1")).unwrap();
        // a live run (another namespace may give it any pid): its lock is held
        let live = p.join(".flatbake-7-0badf00d.lock");
        let held = File::create(&live).unwrap();
        rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
        std::fs::write(p.join(".flatbake-7-0badf00d-x.partial"), b"x").unwrap();
        // no lock file: not provably gone
        std::fs::write(p.join(".flatbake-9-00000000-y.partial"), b"y").unwrap();
        std::fs::write(p.join("keep.bin"), b"k").unwrap();
        let mine = format!("{}x.partial", prefix_in(p).unwrap());
        std::fs::write(p.join(&mine), b"m").unwrap();
        sweep_stale(p);
        let mut left: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = vec![
            ".flatbake-7-0badf00d-x.partial".to_owned(),
            ".flatbake-7-0badf00d.lock".to_owned(),
            ".flatbake-9-00000000-y.partial".to_owned(),
            "keep.bin".to_owned(),
            mine,
            format!(".flatbake-{}.lock", tag()),
        ];
        want.sort();
        assert_eq!(left, want);
        drop(held);
        sweep_stale(p);
        assert!(!p.join(".flatbake-7-0badf00d-x.partial").exists());
        assert!(!live.exists());
    }
}
