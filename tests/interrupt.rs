//! Fault injection: a run stopped at a known stage (FLATBAKE_PAUSE_AT) and killed with
//! SIGTERM/SIGINT/SIGHUP leaves no output, no temporary file, no child process, no loop
//! device and no mount; after SIGKILL the next run sweeps the debris and succeeds, but
//! never the files of a live run (in another PID namespace too). The input is never
//! touched.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use support::*;

fn stamp(p: &Path) -> (u64, i64, i64) {
    let m = std::fs::metadata(p).expect("meta");
    (m.len(), m.mtime_nsec(), m.ctime_nsec())
}

/// Start flatbake paused at `stage`, kill it with `signal`, return its exit status.
fn kill_at(stage: &str, signal: &str, args: &[String]) -> std::process::ExitStatus {
    let mut child = Command::new(BIN)
        .args(args)
        .env("FLATBAKE_PAUSE_AT", stage)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(l)) => {
                let paused = l.contains(&format!("paused at {stage}"));
                seen.push(l);
                if paused {
                    break;
                }
            }
            _ => panic!("flatbake ended before reaching {stage}: {seen:?}"),
        }
    }
    sh(Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string()));
    let status = child.wait().expect("wait");
    for l in lines.map_while(Result::ok) {
        seen.push(l);
    }
    status
}

fn bake_args(out: &Path) -> Vec<String> {
    vec![
        "--image".into(),
        fixtures().join("current.bin").display().to_string(),
        "-o".into(),
        out.display().to_string(),
        "--install-to".into(),
        "myext=oem:/sysext".into(),
        format!(
            "wasmtime:{}",
            sysext("wasmtime-v24.0.0-x86-64.raw").display()
        ),
        format!("myext:{}", sysext("myext-1.0-x86-64.raw").display()),
    ]
}

#[test]
fn sigterm_and_sigint_at_every_stage_leave_nothing() {
    let input = fixtures().join("current.bin");
    let before = stamp(&input);
    for (stage, sig, code) in [
        ("copied", "TERM", 143),
        ("oem", "INT", 130),
        ("before-rename", "TERM", 143),
    ] {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("out.bin");
        let st = kill_at(stage, sig, &bake_args(&out));
        assert_eq!(st.code(), Some(code), "{stage}");
        assert!(!out.exists(), "{stage}: output written");
        assert!(
            leftovers(dir.path()).is_empty(),
            "{stage}: left {:?}",
            leftovers(dir.path())
        );
    }
    // vendor run interrupted after its first vendor
    let dir = tempfile::tempdir().expect("tmp");
    let args: Vec<String> = vec![
        "--image".into(),
        input.display().to_string(),
        "--release-dir".into(),
        fixtures().join("release").display().to_string(),
        "--output-dir".into(),
        dir.path().display().to_string(),
        "--vendor".into(),
        "hetzner,xen".into(),
    ];
    let st = kill_at("vendor-hetzner", "TERM", &args);
    assert_eq!(st.code(), Some(143));
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
    assert!(left.is_empty(), "left {left:?}");
    assert_eq!(stamp(&input), before, "input modified");
}

#[test]
fn after_sigkill_the_next_run_cleans_up_and_succeeds() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out.bin");
    let st = kill_at("oem", "KILL", &bake_args(&out));
    assert_eq!(st.code(), None);
    assert!(!out.exists());
    assert!(
        !leftovers(dir.path()).is_empty(),
        "SIGKILL cannot clean up: expected debris"
    );
    let refs: Vec<String> = bake_args(&out);
    let o = Command::new(BIN).args(&refs).output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("left by an interrupted run"),
        "{}",
        stderr(&o)
    );
    assert!(
        leftovers(dir.path()).is_empty(),
        "left {:?}",
        leftovers(dir.path())
    );
    e2fsck_root(&out);
}

#[test]
fn full_disk_gives_a_clear_error_and_no_partial_output() {
    let dir = tempfile::tempdir().expect("tmp");
    let small = dir.path().join("small");
    std::fs::create_dir(&small).expect("mkdir");
    let out = small.join("out.bin");
    let mut cmd = format!(
        "mount -t tmpfs -o size=640k tmpfs {0} && {BIN}",
        small.display()
    );
    for a in bake_args(&out) {
        cmd.push_str(&format!(" '{a}'"));
    }
    cmd.push_str(&format!("; rc=$?; ls -A {}; exit $rc", small.display()));
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &cmd])
        .output()
        .expect("unshare");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("out.bin") && err.contains("No space left on device"),
        "{err}"
    );
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    assert!(
        String::from_utf8_lossy(&o.stdout).trim().is_empty(),
        "left in the full filesystem: {}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// Loop devices backed by `dir`'s files, per losetup.
fn loops_on(dir: &Path) -> Vec<String> {
    let o = sh(Command::new("losetup").arg("-a"));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.contains(&dir.display().to_string()))
        .map(str::to_owned)
        .collect()
}

#[test]
fn killing_the_mount_backend_leaves_no_mount_or_loop_device() {
    for sig in ["TERM", "KILL"] {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("out.bin");
        let mut args = vec!["--backend".to_owned(), "mount".to_owned()];
        args.extend(bake_args(&out));
        let st = kill_at("mounted", sig, &args);
        assert_ne!(st.code(), Some(0));
        // the worker dies with its parent (PDEATHSIG), its namespace and mount with it,
        // and the autoclear loop device detaches; wait for the kernel to finish that
        let mut left = loops_on(dir.path());
        for _ in 0..100 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            left = loops_on(dir.path());
        }
        assert!(
            left.is_empty(),
            "loop devices left after SIG{sig}: {left:?}"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(
            !mounts.contains(&dir.path().display().to_string()),
            "mount left after SIG{sig}"
        );
        assert!(!out.exists());
        if sig == "TERM" {
            assert!(
                leftovers(dir.path()).is_empty(),
                "left {:?}",
                leftovers(dir.path())
            );
        }
    }
}

/// Live processes (not zombies) whose environment carries `FLATBAKE_TEST_RUN=<id>`:
/// everything a run started inherits it, even a daemon that left its process tree.
fn processes_of(id: &str) -> Vec<String> {
    let needle = format!("FLATBAKE_TEST_RUN={id}");
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .map(|(_, r)| r.trim_start().to_owned());
        if state
            .as_deref()
            .is_none_or(|s| s.starts_with('Z') || s.starts_with('X'))
        {
            continue;
        }
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if env.split(|&b| b == 0).any(|v| v == needle.as_bytes()) {
            found.push(format!("{pid} {}", stat.trim()));
        }
    }
    found
}

/// Start `cmd` marked with `id`, wait until it is paused at `stage` (its stderr says so)
/// or until one of its processes is `tool` held stopped (a worker's stderr is its
/// parent's business), then send `signal` to `pid_of(child)`; return the exit status
/// and stderr.
fn interrupt_marked(
    mut cmd: Command,
    id: &str,
    stage: &str,
    signal: &str,
    target: impl Fn(&std::process::Child) -> u32,
) -> (std::process::ExitStatus, String) {
    let mut child = cmd
        .env("FLATBAKE_TEST_RUN", id)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut s = seen.lock().expect("lock");
                s.push_str(&l);
                s.push('\n');
            }
        })
    };
    let tool = stage.strip_prefix("tool:");
    loop {
        if seen
            .lock()
            .expect("lock")
            .contains(&format!("paused at {stage}"))
        {
            break;
        }
        if let Some(t) = tool {
            let stopped = processes_of(id)
                .iter()
                .any(|p| p.contains(&format!("({t}) T")));
            if stopped {
                break;
            }
        }
        if let Some(st) = child.try_wait().expect("wait") {
            panic!(
                "ended ({st}) before reaching {stage}: {}",
                seen.lock().expect("lock")
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    sh(Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(target(&child).to_string()));
    let status = child.wait().expect("wait");
    reader.join().expect("reader");
    let err = seen.lock().expect("lock").clone();
    (status, err)
}

#[test]
fn a_signal_kills_and_waits_for_every_child_tool() {
    // debugfs: a direct child; mkfs.btrfs: inside the OEM worker, under fakeroot, whose
    // daemon leaves the process tree; mounted: the mount backend's worker, holding a
    // loop device and a mount
    // (and the rootless default as an unprivileged user: fakeroot without a namespace)
    for (i, (stage, sig, code, backend, nobody)) in [
        ("tool:debugfs", "TERM", 143, "rootless", false),
        ("tool:mkfs.btrfs", "INT", 130, "rootless", false),
        ("tool:mkfs.btrfs", "TERM", 143, "rootless", true),
        ("tool:e2fsck", "HUP", 129, "mount", false),
        ("mounted", "TERM", 143, "mount", false),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("out.bin");
        let id = format!("{}-{i}", std::process::id());
        let mut cmd = if nobody {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("chmod");
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                BIN,
            ]);
            c
        } else {
            Command::new(BIN)
        };
        cmd.args(["--backend", backend])
            .args(bake_args(&out))
            .env("FLATBAKE_PAUSE_AT", stage);
        let (st, err) = interrupt_marked(cmd, &id, stage, sig, |c| c.id());
        assert_eq!(st.code(), Some(code), "{stage}: {err}");
        assert!(err.contains("temporary files removed"), "{stage}: {err}");
        // flatbake has exited: whatever it started must be gone already
        let alive = processes_of(&id);
        assert!(alive.is_empty(), "{stage}: still running: {alive:?}");
        assert!(
            loops_on(dir.path()).is_empty(),
            "{stage}: loop devices left: {:?}",
            loops_on(dir.path())
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(
            !mounts.contains(&dir.path().display().to_string()),
            "{stage}: mount left"
        );
        assert!(!out.exists(), "{stage}: output written");
        assert!(
            leftovers(dir.path()).is_empty(),
            "{stage}: left {:?}",
            leftovers(dir.path())
        );
    }
}

/// The pid of the only child of `pid` (the command `unshare --fork` runs).
fn only_child(pid: u32) -> u32 {
    let kids =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).expect("children");
    let kids: Vec<u32> = kids
        .split_whitespace()
        .map(|k| k.parse().expect("pid"))
        .collect();
    assert_eq!(kids.len(), 1, "{kids:?}");
    kids[0]
}

#[test]
fn a_run_in_another_pid_namespace_keeps_its_files() {
    let dir = tempfile::tempdir().expect("tmp");
    let a_out = dir.path().join("a.bin");
    let b_out = dir.path().join("b.bin");
    let id = format!("{}-ns", std::process::id());
    // run A (here) pauses with its temporaries in the shared output directory
    let mut a = Command::new(BIN)
        .args(bake_args(&a_out))
        .env("FLATBAKE_PAUSE_AT", "copied")
        .env("FLATBAKE_TEST_RUN", &id)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(a.stderr.take().expect("stderr")).lines();
    for l in lines.by_ref() {
        if l.expect("line").contains("paused at copied") {
            break;
        }
    }
    let a_files = leftovers(dir.path());
    assert!(a_files.len() >= 2, "{a_files:?}");
    // run B bakes into the same directory, first from a PID namespace of its own
    // (where A's pid means nothing, or is B's own), then from A's
    for ns in [true, false] {
        let mut cmd = if ns {
            let mut c = Command::new("unshare");
            c.args(["-p", "-f", "--mount-proc", BIN]);
            c
        } else {
            Command::new(BIN)
        };
        let _ = std::fs::remove_file(&b_out);
        let o = cmd.args(bake_args(&b_out)).output().expect("run B");
        assert!(o.status.success(), "ns={ns}: {}", stderr(&o));
        assert!(
            !stderr(&o).contains("left by an interrupted run"),
            "ns={ns}: B swept A's live files: {}",
            stderr(&o)
        );
        let mut left = leftovers(dir.path());
        left.sort();
        let mut want = a_files.clone();
        want.sort();
        assert_eq!(left, want, "ns={ns}: A's files changed");
        e2fsck_root(&b_out);
    }
    // A, still alive, cleans up after itself
    sh(Command::new("kill").arg("-TERM").arg(a.id().to_string()));
    assert_eq!(a.wait().expect("wait").code(), Some(143));
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
    assert!(processes_of(&id).is_empty());

    // and the other way round: A in its own PID namespace, interrupted there
    let mut cmd = Command::new("unshare");
    cmd.args(["-p", "-f", "--mount-proc", BIN])
        .args(bake_args(&a_out))
        .env("FLATBAKE_PAUSE_AT", "copied");
    let id = format!("{}-ns2", std::process::id());
    let mut child = cmd
        .env("FLATBAKE_TEST_RUN", &id)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    for l in lines.by_ref() {
        if l.expect("line").contains("paused at copied") {
            break;
        }
    }
    let a_files = leftovers(dir.path());
    let _ = std::fs::remove_file(&b_out);
    let o = Command::new(BIN)
        .args(bake_args(&b_out))
        .output()
        .expect("run B");
    assert!(o.status.success(), "{}", stderr(&o));
    let (mut left, mut a_files) = (leftovers(dir.path()), a_files);
    left.sort();
    a_files.sort();
    assert_eq!(left, a_files, "B swept A's live files");
    sh(Command::new("kill")
        .arg("-TERM")
        .arg(only_child(child.id()).to_string()));
    let _ = child.wait();
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
    assert!(processes_of(&id).is_empty());
}

#[test]
fn a_mount_backend_error_is_printed_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let img = dir.path().join("hostile.bin");
    sh(Command::new("cp")
        .arg("--sparse=always")
        .arg(fixtures().join("current.bin"))
        .arg(&img));
    let (off, _) = part(&img, ROOT);
    let script = dir.path().join("cmds");
    std::fs::write(&script, "symlink /etc /\n").expect("w");
    sh(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&script)
        .arg(format!("{}?offset={off}", img.display())));
    let out = dir.path().join("out.bin");
    let o = flatbake(&[
        "--backend",
        "mount",
        "--image",
        s(&img),
        "-o",
        s(&out),
        &format!(
            "wasmtime:{}",
            sysext("wasmtime-v24.0.0-x86-64.raw").display()
        ),
    ]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    assert_eq!(err.matches("symlink").count(), 1, "{err}");
    assert_eq!(err.matches("ROOT partition").count(), 1, "{err}");
    assert!(!out.exists());
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

#[test]
fn a_signal_during_sysext_commands_leaves_nothing() {
    let src = tempfile::tempdir().expect("tmp");
    let tree = src.path().join("tree");
    write(
        &tree.join("usr/bin/hello"),
        b"#!/bin/sh\necho hello\n",
        0o755,
    );
    // a Torcx archive
    let torcx = src.path().join("torcx");
    write(
        &torcx.join(".torcx/manifest.json"),
        br#"{"kind":"image-manifest-v0","value":{"bin":["/bin/hello"],"network":[],"units":[]}}"#,
        0o644,
    );
    write(&torcx.join("bin/hello"), b"#!/bin/sh\necho hello\n", 0o755);
    let archive = src.path().join("hello:1.0.torcx.tgz");
    sh(Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&torcx)
        .arg("."));
    // a one-download recipe served from loopback
    let mirror = src.path().join("mirror");
    let payload = b"#!/bin/sh\necho tiny 1.0\n";
    write(&mirror.join("example.com/tiny-1.0"), payload, 0o644);
    let server = support::http::Server::serve(&mirror);
    let recipe = src.path().join("tiny.toml");
    write(
        &recipe,
        br#"name = "tiny"
description = "test"
[versions]
index = "https://example.com/"
pattern = "tiny-{version}"
[arch.x86-64]
arch = "amd64"
[[download]]
url = "https://example.com/tiny-{version}"
checksum = { unpublished = "test" }
install = [{ to = "usr/bin/tiny", mode = "0755" }]
"#,
        0o644,
    );
    let sha = {
        use sha2::{Digest, Sha256};
        format!("{:x}", Sha256::digest(payload))
    };
    for (i, (what, stage, sig, code)) in [
        ("pack", "pack-written", "TERM", 143),
        ("pack-erofs", "tool:mkfs.erofs", "INT", 130),
        ("create", "pack-written", "HUP", 129),
        ("convert-torcx", "pack-written", "TERM", 143),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("x-1.0-x86-64.raw");
        let mut cmd = Command::new(BIN);
        cmd.arg("sysext").env("FLATBAKE_PAUSE_AT", stage);
        match what {
            "pack" | "pack-erofs" => {
                cmd.args(["pack", s(&tree), "--name", "x", "--version", "1.0"]);
                cmd.args(["--arch", "x86-64", "-o", s(&out)]);
                if what == "pack-erofs" {
                    cmd.args(["--format", "erofs"]);
                }
            }
            "create" => {
                cmd.args(["create", s(&recipe), "1.0", "--arch", "x86-64"]);
                cmd.args(["--sha256", &sha, "--mirror", &server.url, "-o", s(&out)]);
            }
            _ => {
                cmd.args(["convert-torcx", s(&archive), "hello", "--arch", "x86-64"]);
                cmd.args(["-o", s(&out)]);
            }
        }
        let id = format!("{}-sysext-{i}", std::process::id());
        let (st, err) = interrupt_marked(cmd, &id, stage, sig, |c| c.id());
        assert_eq!(st.code(), Some(code), "{what}: {err}");
        assert!(
            processes_of(&id).is_empty(),
            "{what}: {:?}",
            processes_of(&id)
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("e").file_name())
            .collect();
        assert!(left.is_empty(), "{what}: left {left:?}");
    }
}
