//! Fault injection: a run stopped at a known stage (FLATBAKE_PAUSE_AT) and killed with
//! SIGTERM/SIGINT leaves no output and no temporary files; after SIGKILL the next run
//! sweeps the debris and succeeds. The input is never touched.

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
            sysext("wasmtime-24.0.0-x86-64.raw").display()
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
