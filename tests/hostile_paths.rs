//! Hostile paths around a bake, as an unprivileged user (`setpriv --reuid=65534`, the
//! rootless default path) and as root: a read-only input directory and a 0444 input
//! image (the bake works, touches nothing there, and the output gets the input's mode;
//! debugfs could not open the 0444 copy before), an output directory that is not writable, a `--work-dir`
//! and an `--image-cache` that are not writable, an output path under a regular file,
//! an output that is a dangling symlink or a symlink to a directory. Each refusal is
//! one line naming the path, nothing written, no temporary, the input unchanged; each
//! success is judged by sgdisk -v and e2fsck -fn.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use support::refusal::{refused_cleanly, Before};
use support::*;

fn wasm() -> String {
    format!(
        "wasmtime:{}",
        sysext("wasmtime-v24.0.0-x86-64.raw").display()
    )
}

/// Run flatbake as nobody with `args`.
fn as_nobody(args: &[&str], home: &Path) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(BIN)
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CACHE_HOME")
        .output()
        .expect("setpriv")
}

fn chmod(p: &Path, mode: &str) {
    sh(Command::new("chmod").arg(mode).arg(p));
}

#[test]
fn read_only_input_directory_bakes_and_is_untouched() {
    let dir = tempfile::tempdir().expect("tmp");
    chmod(dir.path(), "0755");
    let input_dir = dir.path().join("in");
    std::fs::create_dir(&input_dir).expect("mkdir");
    let image = input_dir.join("base.bin");
    sh(Command::new("cp")
        .arg("--sparse=always")
        .arg(fixtures().join("current.bin"))
        .arg(&image));
    chmod(&image, "0444");
    chmod(&input_dir, "0555");
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    chmod(&out_dir, "0777");
    let out = out_dir.join("baked.bin");
    let before = Before::take(&[&image, &input_dir]);
    let o = as_nobody(&["--image", s(&image), "-o", s(&out), &wasm()], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    before.unchanged("read-only input dir");
    assert_eq!(std::fs::read_dir(&input_dir).expect("ls").count(), 1);
    // the output keeps the input's mode, as a copy does
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out).expect("out").permissions().mode();
    assert_eq!(mode & 0o777, 0o444);
    sgdisk_verify(&out);
    e2fsck_root(&out);
}

#[test]
fn unwritable_places_are_refused_in_one_line() {
    let dir = tempfile::tempdir().expect("tmp");
    chmod(dir.path(), "0755");
    let image = fixtures().join("current.bin");
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).expect("mkdir");
    chmod(&ro, "0555");
    let rw = dir.path().join("rw");
    std::fs::create_dir(&rw).expect("mkdir");
    chmod(&rw, "0777");
    let w = wasm();
    // output in a directory nobody may write
    let out = ro.join("out.bin");
    let before = Before::take(&[&image]);
    let o = as_nobody(&["--image", s(&image), "-o", s(&out), &w], dir.path());
    let err = refused_cleanly(&o, "read-only output dir", &out, &before);
    assert!(err.contains(s(&ro)), "{err}");
    // a work dir nobody may write
    let out = rw.join("out.bin");
    let o = as_nobody(
        &[
            "--image",
            s(&image),
            "-o",
            s(&out),
            "--work-dir",
            s(&ro),
            &w,
        ],
        dir.path(),
    );
    let err = refused_cleanly(&o, "read-only work dir", &out, &before);
    assert!(err.contains(s(&ro)), "{err}");
    // a compressed image whose cache nobody may write
    let bz2 = rw.join("base.bin.bz2");
    sh(Command::new("sh")
        .arg("-c")
        .arg(format!("bzip2 -1 -c < {} > {}", s(&image), s(&bz2))));
    chmod(&bz2, "0444");
    let before_bz2 = Before::take(&[&image, &bz2]);
    let o = as_nobody(
        &[
            "--image",
            s(&bz2),
            "--image-cache",
            s(&ro),
            "-o",
            s(&out),
            &w,
        ],
        dir.path(),
    );
    let err = refused_cleanly(&o, "read-only image cache", &out, &before_bz2);
    assert!(err.contains(s(&ro)), "{err}");
    assert_eq!(std::fs::read_dir(&ro).expect("ls").count(), 0);
}

#[test]
fn odd_output_paths_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let image = fixtures().join("current.bin");
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").expect("write");
    let target_dir = dir.path().join("a-dir");
    std::fs::create_dir(&target_dir).expect("mkdir");
    let dangling = dir.path().join("dangling.bin");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).expect("ln");
    let to_dir = dir.path().join("to-dir.bin");
    std::os::unix::fs::symlink(&target_dir, &to_dir).expect("ln");
    let w = wasm();
    for (what, out) in [
        ("output under a regular file", file.join("out.bin")),
        ("output is a directory", target_dir.clone()),
        ("output is a symlink to a directory", to_dir.clone()),
        ("output is a dangling symlink", dangling.clone()),
    ] {
        let before = Before::take(&[&image, &file, &dangling, &to_dir]);
        let o = flatbake(&["--image", s(&image), "-o", s(&out), &w]);
        let err = support::refusal::one_error(&o, what);
        assert!(
            err.contains(s(&out)) || err.contains(s(&file)),
            "{what}: {err}"
        );
        before.unchanged(what);
        assert_eq!(
            std::fs::read_dir(&target_dir).expect("ls").count(),
            0,
            "{what}"
        );
        assert!(
            leftovers(dir.path()).is_empty(),
            "{what}: {:?}",
            leftovers(dir.path())
        );
        assert!(
            !dir.path().join("nowhere").exists(),
            "{what}: wrote through the dangling symlink"
        );
    }
}
