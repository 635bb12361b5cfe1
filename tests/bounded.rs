//! No input can hang flatbake: FIFOs, /dev/zero, directories and symlinks to them, given
//! as any input (or found beside one), are refused with one line and a non-zero exit,
//! and nothing is written. A watchdog turns a hang into a failure instead of blocking CI
//! (a generous bound, not a speed limit).

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// Run flatbake; kill it and fail if it has not ended after a generous bound.
fn run_bounded(args: &[String]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("flatbake hung on {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn mkfifo(p: &Path) {
    sh(Command::new("mkfifo").arg(p));
}

fn refused(args: &[String], out: &Path, needle: &str) {
    let o = run_bounded(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{args:?} succeeded: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
    assert!(!out.exists(), "output written");
    assert!(
        leftovers(out.parent().expect("dir")).is_empty(),
        "temp files left"
    );
}

#[test]
fn special_files_as_inputs_are_refused_not_read() {
    let d = tempfile::tempdir().expect("tmp");
    let out = d.path().join("out.bin");
    let fifo = d.path().join("fifo");
    mkfifo(&fifo);
    let dev_link = d.path().join("zero.raw");
    std::os::unix::fs::symlink("/dev/zero", &dev_link).expect("symlink");
    let image = fixtures().join("current.bin");
    let wasm = format!(
        "wasmtime:{}",
        sysext("wasmtime-v24.0.0-x86-64.raw").display()
    );
    let base = |extra: &[String]| -> Vec<String> {
        let mut v = vec![
            "--image".to_owned(),
            image.display().to_string(),
            "-o".into(),
            out.display().to_string(),
        ];
        v.extend_from_slice(extra);
        v
    };
    let fifo_s = fifo.display().to_string();
    // --image a FIFO, /dev/zero, a directory
    for (img, what) in [
        (fifo_s.clone(), "a FIFO"),
        ("/dev/zero".into(), "a character device"),
        (d.path().display().to_string(), "a directory"),
    ] {
        let args = vec![
            "--image".to_owned(),
            img,
            "-o".into(),
            out.display().to_string(),
            wasm.clone(),
        ];
        refused(&args, &out, what);
    }
    // a sysext that is a FIFO or a symlink to /dev/zero
    refused(
        &base(&[format!("w:{fifo_s}")]),
        &out,
        "a FIFO, not a regular file",
    );
    refused(
        &base(&[format!("w:{}", dev_link.display())]),
        &out,
        "a character device",
    );
    // --sysupdate-conf and --ignition
    refused(
        &base(&[
            wasm.clone(),
            "--sysupdate-conf".into(),
            format!("wasmtime={fifo_s}"),
        ]),
        &out,
        "a FIFO",
    );
    refused(
        &base(&[wasm.clone(), "--ignition".into(), "/dev/zero".into()]),
        &out,
        "a character device",
    );
    refused(
        &base(&[wasm.clone(), "--ignition".into(), fifo_s.clone()]),
        &out,
        "a FIFO",
    );
    // a NAME.conf beside the sysext that the user never named
    let side = d.path().join("side");
    std::fs::create_dir(&side).expect("mkdir");
    std::fs::copy(
        sysext("wasmtime-v24.0.0-x86-64.raw"),
        side.join("wasmtime-v24.0.0-x86-64.raw"),
    )
    .expect("copy");
    mkfifo(&side.join("wasmtime.conf"));
    refused(
        &base(&[format!(
            "wasmtime:{}",
            side.join("wasmtime-v24.0.0-x86-64.raw").display()
        )]),
        &out,
        "wasmtime.conf: a FIFO",
    );
}

#[test]
fn what_is_baked_is_the_checked_copy() {
    let d = tempfile::tempdir().expect("tmp");
    let out = d.path().join("out.bin");
    let src = sysext("wasmtime-v24.0.0-x86-64.raw");
    let o = flatbake(&[
        "--image",
        s(&fixtures().join("current.bin")),
        "-o",
        s(&out),
        &format!("wasmtime:{}", src.display()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let baked = root_file(&out, "/opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw");
    let want = sha256_file(&src);
    use sha2::Digest;
    assert_eq!(
        format!("{:x}", sha2::Sha256::digest(&baked)),
        want,
        "baked bytes differ from the checked file"
    );
}

/// The sysext subcommands that read a file the user names (`check` of an image or a
/// target, `convert-torcx` of an archive) refuse a FIFO or a device in one line instead
/// of blocking on it or reading without end.
#[test]
fn sysext_commands_refuse_special_files() {
    let d = tempfile::tempdir().expect("tmp");
    let fifo = d.path().join("fifo");
    mkfifo(&fifo);
    let f = fifo.display().to_string();
    let w = sysext("wasmtime-v24.0.0-x86-64.raw").display().to_string();
    for special in [f.as_str(), "/dev/zero"] {
        for args in [
            vec!["sysext", "check", special],
            vec!["sysext", "check", "--target", special, w.as_str()],
            vec![
                "sysext",
                "check",
                "--target-os-release",
                special,
                w.as_str(),
            ],
            vec![
                "sysext",
                "convert-torcx",
                "--arch",
                "x86-64",
                "--version",
                "1",
                special,
                "docker",
            ],
        ] {
            let o = flatbake(&args);
            // check reports an image's problems on stdout, a refusal goes to stderr
            let err = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
            assert!(!o.status.success(), "{args:?} succeeded: {err}");
            assert!(
                err.contains("not a regular file; give a regular file"),
                "{args:?}: {err}"
            );
        }
    }
    assert!(leftovers(d.path()).is_empty(), "temp files left");
}
