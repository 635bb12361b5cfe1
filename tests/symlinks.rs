//! Hostile images: a ROOT whose `/etc -> /` or `/opt/extensions -> /tmp/...` must never
//! make flatbake write on the host, with either backend; it refuses with a clear error.

mod support;

use std::path::Path;
use std::process::Command;
use support::*;

/// A copy of the fixture image with `cmds` applied to ROOT by debugfs.
fn hostile_image(dir: &Path, cmds: &str) -> std::path::PathBuf {
    let img = dir.join("hostile.bin");
    sh(Command::new("cp")
        .arg("--sparse=always")
        .arg(fixtures().join("current.bin"))
        .arg(&img));
    let (off, _) = part(&img, ROOT);
    let script = dir.join("cmds");
    std::fs::write(&script, cmds).expect("w");
    sh(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&script)
        .arg(format!("{}?offset={off}", img.display())));
    img
}

#[test]
fn symlinks_out_of_the_image_are_never_followed() {
    let escape = std::env::temp_dir().join(format!("flatbake-escape-{}", std::process::id()));
    let cases = [
        ("symlink /etc /\n".to_owned(), "/etc"),
        (
            format!("mkdir /opt\nsymlink /opt/extensions {}\n", escape.display()),
            "/opt/extensions",
        ),
    ];
    for backend in ["rootless", "mount"] {
        for (cmds, culprit) in &cases {
            let dir = tempfile::tempdir().expect("tmp");
            let img = hostile_image(dir.path(), cmds);
            let out = dir.path().join("out.bin");
            let o = flatbake(&[
                "--backend",
                backend,
                "--image",
                img.to_str().expect("p"),
                "-o",
                out.to_str().expect("p"),
                &format!(
                    "wasmtime:{}",
                    sysext("wasmtime-v24.0.0-x86-64.raw").display()
                ),
            ]);
            let err = stderr(&o);
            assert!(!o.status.success(), "{backend} {culprit}: accepted");
            assert!(
                err.contains(culprit) && err.contains("symlink"),
                "{backend} {culprit}: {err}"
            );
            assert!(!out.exists());
            assert!(
                leftovers(dir.path()).is_empty(),
                "{:?}",
                leftovers(dir.path())
            );
            assert!(
                !escape.exists(),
                "{backend}: wrote on the host at {}",
                escape.display()
            );
            assert!(
                !Path::new("/extensions").exists(),
                "{backend}: wrote on the host at /extensions"
            );
        }
    }
}
