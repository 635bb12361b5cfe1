//! `flatbake sysext check` lints, on crafted trees packed into squashfs and EROFS images
//! and checked against a Flatcar-like disk image (`--target`) whose USR-A holds a C
//! library, a loader, a few units and a `/usr/sbin` symlink: each problem is named as an
//! error or warning with its path, a clean extension passes, and without `--target`
//! what only the base could settle is a warning, not an error.

mod support;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::*;

/// A Flatcar-like image whose /usr has libc, the loader, two units and sbin -> bin.
fn base_image(dir: &Path) -> PathBuf {
    let usr = dir.join("base-usr");
    let libc = std::fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").expect("libc");
    let ld = std::fs::canonicalize("/lib64/ld-linux-x86-64.so.2").expect("ld.so");
    write(
        &usr.join("lib64/libc.so.6"),
        &std::fs::read(libc).expect("read"),
        0o755,
    );
    write(
        &usr.join("lib64/ld-linux-x86-64.so.2"),
        &std::fs::read(ld).expect("read"),
        0o755,
    );
    write(
        &usr.join("lib/systemd/system/multi-user.target"),
        b"[Unit]\nDescription=Multi-User\n",
        0o644,
    );
    write(
        &usr.join("lib/systemd/system/getty@.service"),
        b"[Service]\nExecStart=/usr/bin/true\n",
        0o644,
    );
    symlink("bin", usr.join("sbin")).expect("symlink");
    let img = dir.join("base.bin");
    sh(Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/make-fixture-image.sh"
        ))
        .arg(&img)
        .arg("--usr-tree")
        .arg(&usr));
    img
}

/// An ELF header for `machine` (enough for the machine lint).
fn elf_header(machine: u16) -> Vec<u8> {
    let mut h = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&machine.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    h.resize(128, 0);
    h
}

/// A clean extension: a program needing only libc, its unit, and a drop-in that
/// upholds it from a target Flatcar has.
fn good_tree(dir: &Path) -> PathBuf {
    let t = dir.join("good");
    write(
        &t.join("usr/bin/hello"),
        &std::fs::read("/usr/bin/true").expect("true"),
        0o755,
    );
    write(
        &t.join("usr/lib/systemd/system/hello.service"),
        b"[Service]\nExecStartPre=-/usr/bin/true\nExecStart=/usr/bin/hello --flag\n",
        0o644,
    );
    write(
        &t.join("usr/lib/systemd/system/multi-user.target.d/10-hello.conf"),
        b"[Unit]\nUpholds=hello.service\nWants=getty@tty1.service\n",
        0o644,
    );
    t
}

/// Every problem at once.
fn bad_tree(dir: &Path) -> PathBuf {
    let t = dir.join("bad");
    write(&t.join("usr/bin/armtool"), &elf_header(183), 0o755);
    // needs libselinux (Debian's ls), which the base lacks
    write(
        &t.join("usr/bin/needy"),
        &std::fs::read("/usr/bin/ls").expect("ls"),
        0o755,
    );
    write(&t.join("usr/sbin/tool"), b"#!/bin/sh\n", 0o755);
    write(
        &t.join("usr/lib/systemd/system/bad.service"),
        b"[Service]\nExecStartPre=/usr/bin/prepare\nExecStart=/usr/bin/nothere --x\n",
        0o644,
    );
    write(
        &t.join("usr/lib/systemd/system/multi-user.target.d/10-bad.conf"),
        b"[Unit]\nUpholds=ghost.service\n",
        0o644,
    );
    std::fs::create_dir_all(t.join("usr/lib/systemd/system/multi-user.target.wants"))
        .expect("mkdir");
    symlink(
        "../phantom.service",
        t.join("usr/lib/systemd/system/multi-user.target.wants/phantom.service"),
    )
    .expect("symlink");
    t
}

fn pack(src: &Path, out: &Path, format: &str) {
    let o = flatbake(&[
        "sysext",
        "pack",
        s(src),
        "--name",
        "ext",
        "--version",
        "1",
        "--arch",
        "x86-64",
        "--format",
        format,
        "-o",
        s(out),
    ]);
    assert!(o.status.success(), "pack: {}", stderr(&o));
}

/// `sysext check` against the `target` image, else (no image) for a Flatcar of `arch`.
fn check_for(img: &Path, target: Option<&Path>, arch: &str) -> (Output, String) {
    let mut args = vec!["sysext", "check", s(img), "--name", "ext"];
    match target {
        Some(t) => args.extend_from_slice(&["--target", s(t)]),
        None => args.extend_from_slice(&["--arch", arch]),
    }
    let o = flatbake(&args);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    (o, text)
}

fn check(img: &Path, target: Option<&Path>) -> (Output, String) {
    check_for(img, target, "x86-64")
}

/// The line naming `path` with `severity`, if any.
fn line<'a>(text: &'a str, severity: &str, path: &str) -> Option<&'a str> {
    let want = format!("{severity}: {path}: ");
    text.lines()
        .map(str::trim)
        .find(|l| l.trim_start_matches("- ").starts_with(&want))
}

#[test]
fn lints_against_a_target_image() {
    let d = tempfile::tempdir().expect("tmp");
    let base = base_image(d.path());
    let good = good_tree(d.path());
    let bad = bad_tree(d.path());
    for format in ["squashfs", "erofs"] {
        let gi = d.path().join(format!("good-{format}.raw"));
        pack(&good, &gi, format);
        let (o, text) = check(&gi, Some(&base));
        assert!(o.status.success(), "{format}: {text}");
        assert!(!text.contains("error:"), "{format}: {text}");
        assert!(!text.contains("warning:"), "{format}: {text}");

        let bi = d.path().join(format!("bad-{format}.raw"));
        pack(&bad, &bi, format);
        let (o, text) = check(&bi, Some(&base));
        assert!(!o.status.success(), "{format}: {text}");
        let e = |p: &str| {
            line(&text, "error", p).unwrap_or_else(|| panic!("{format}: no error for {p}: {text}"))
        };
        assert!(e("/usr/bin/armtool").contains("ELF built for arm64"));
        assert!(e("/usr/bin/needy").contains("libselinux.so.1"));
        assert!(e("/usr/bin/needy").contains("flatbake sysext flix"));
        assert!(!e("/usr/bin/needy").contains("libc.so.6"), "{text}");
        let unit = "/usr/lib/systemd/system/bad.service";
        assert!(
            text.contains(&format!("error: {unit}: ExecStart=/usr/bin/nothere")),
            "{text}"
        );
        assert!(
            text.contains(&format!("error: {unit}: ExecStartPre=/usr/bin/prepare")),
            "{text}"
        );
        assert!(
            e("/usr/lib/systemd/system/multi-user.target.d/10-bad.conf").contains("ghost.service")
        );
        assert!(
            e("/usr/lib/systemd/system/multi-user.target.wants/phantom.service")
                .contains("phantom.service")
        );
        assert!(e("/usr/sbin").contains("a directory where Flatcar has a symlink"));
    }
}

#[test]
fn without_a_target_what_the_base_settles_is_a_warning() {
    let d = tempfile::tempdir().expect("tmp");
    let good = good_tree(d.path());
    let gi = d.path().join("good.raw");
    pack(&good, &gi, "squashfs");
    let (o, text) = check(&gi, None);
    assert!(o.status.success(), "{text}");
    assert!(!text.contains("error:"), "{text}");
    let w = line(
        &text,
        "warning",
        "/usr/lib/systemd/system/multi-user.target.d/10-hello.conf",
    )
    .unwrap_or_else(|| panic!("{text}"));
    assert!(
        w.contains("getty@tty1.service") && w.contains("--target"),
        "{w}"
    );

    let bad = bad_tree(d.path());
    let bi = d.path().join("bad.raw");
    pack(&bad, &bi, "erofs");
    let (o, text) = check(&bi, None);
    // the architecture is known without a base: still an error
    assert!(!o.status.success(), "{text}");
    assert!(line(&text, "error", "/usr/bin/armtool").is_some(), "{text}");
    for p in [
        "/usr/bin/needy",
        "/usr/lib/systemd/system/bad.service",
        "/usr/lib/systemd/system/multi-user.target.d/10-bad.conf",
    ] {
        let w = line(&text, "warning", p).unwrap_or_else(|| panic!("no warning for {p}: {text}"));
        assert!(w.contains("cannot tell"), "{w}");
        assert!(line(&text, "error", p).is_none(), "{text}");
    }
}

#[test]
fn an_arm64_image_flags_x86_binaries() {
    let d = tempfile::tempdir().expect("tmp");
    let t = d.path().join("t");
    write(&t.join("opt/x/bin/tool"), &elf_header(62), 0o755);
    write(&t.join("opt/x/bin/ok"), &elf_header(183), 0o755);
    let img = d.path().join("arm.raw");
    let o = flatbake(&[
        "sysext",
        "pack",
        s(&t),
        "--name",
        "ext",
        "--version",
        "1",
        "--arch",
        "arm64",
        "-o",
        s(&img),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (o, text) = check_for(&img, None, "arm64");
    assert!(!o.status.success(), "{text}");
    let l = line(&text, "error", "/opt/x/bin/tool").unwrap_or_else(|| panic!("{text}"));
    assert!(
        l.contains("ELF built for x86-64") && l.contains("ARCHITECTURE=arm64"),
        "{l}"
    );
    assert!(line(&text, "error", "/opt/x/bin/ok").is_none(), "{text}");
}

#[test]
fn systemd_agrees_the_missing_program_fails() {
    // systemd-analyze verify, on the merged tree, finds the same missing ExecStart=
    let d = tempfile::tempdir().expect("tmp");
    let t = d.path().join("t");
    write(
        &t.join("usr/lib/systemd/system/bad.service"),
        b"[Service]\nExecStart=/usr/bin/nothere\n",
        0o644,
    );
    let img = d.path().join("ext.raw");
    pack(&t, &img, "squashfs");
    let out = sysext_merge(
        &[("ext", &img)],
        "systemd-analyze verify ROOT/usr/lib/systemd/system/bad.service 2>&1 || true",
    );
    assert!(out.contains("nothere"), "{out}");
    let (o, text) = check(&img, None);
    assert!(o.status.success(), "{text}");
    assert!(
        line(&text, "warning", "/usr/lib/systemd/system/bad.service").is_some(),
        "{text}"
    );
}
