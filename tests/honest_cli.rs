//! Honest flags, driven as a pipeline drives them (no TTY): --arch never overrides what
//! an image is; typos are answered with the closest name; `qemu-uefi` is `qemu_uefi`
//! and `generic` the plain image; old-script spellings still work and say the new one;
//! missing host tools are named with their Debian package before any copy starts.

mod support;

use std::path::Path;
use std::process::Command;
use support::*;

#[test]
fn arch_that_contradicts_the_image_is_refused() {
    let img = fixtures().join("current.bin");
    let d = tempfile::tempdir().expect("tmp");
    let out = d.path().join("out.bin");
    let err = flatbake_refused(&[
        "--image",
        s(&img),
        "--arch",
        "arm64",
        "-o",
        s(&out),
        &wasm(),
    ]);
    one_line(&err);
    assert!(err.contains("is a x86-64 image, not arm64"), "{err}");
    assert!(err.contains("drop --arch arm64"), "{err}");
    assert!(!out.exists());
    assert!(leftovers(d.path()).is_empty());
    // the image's own architecture is fine, however spelled
    let o = flatbake(&[
        "--image",
        s(&img),
        "--arch",
        "amd64",
        "-o",
        s(&out),
        &wasm(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    e2fsck_root(&out);
}

#[test]
fn typos_are_answered_with_the_closest_name() {
    let img = fixtures().join("current.bin");
    let d = tempfile::tempdir().expect("tmp");
    let cases: &[(&[&str], &str)] = &[
        (
            &["inspcet", "x.img"],
            "unknown command 'inspcet' (did you mean 'inspect'?)",
        ),
        (&["biuld", "x.toml"], "(did you mean 'build'?)"),
        (
            &[
                "--image",
                s(&img),
                "--output-dir",
                s(d.path()),
                "--vendor",
                "azrue",
            ],
            "--vendor azrue: unknown vendor 'azrue' (did you mean 'azure'?)",
        ),
        (
            &[
                "--image",
                s(&img),
                "--output-dir",
                s(d.path()),
                "--vendor",
                "qemu_uef",
            ],
            "(did you mean 'qemu_uefi'?)",
        ),
        (
            &["--release", "stabel", "--fetch", "a:b"],
            "--release stabel (did you mean 'stable'?)",
        ),
        (&["sysext", "crate"], "similar subcommand exists: 'create'"),
    ];
    for (args, want) in cases {
        let err = flatbake_refused(args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(std::fs::read_dir(d.path()).expect("dir").next().is_none());
}

#[test]
fn vendor_spellings_and_generic() {
    let img = fixtures().join("current.bin");
    let rel = fixtures().join("release");
    let d = tempfile::tempdir().expect("tmp");
    let o = flatbake(&[
        "--image",
        s(&img),
        "--release-dir",
        s(&rel),
        "--output-dir",
        s(d.path()),
        "--vendor",
        "QEMU-UEFI,generic",
        &wasm(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let qcow = d.path().join("flatcar_production_qemu_uefi_image.img");
    sh(Command::new("qemu-img").arg("check").arg(&qcow));
    let plain = d.path().join("flatcar_production_image.bin");
    sgdisk_verify(&plain);
    e2fsck_root(&plain);
    assert_eq!(
        root_link(&plain, "/etc/extensions/wasmtime.raw").as_deref(),
        Some("/opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw")
    );
    // the plain image keeps the input's layout (no vendor growth): same size
    assert_eq!(
        std::fs::metadata(&plain).expect("meta").len(),
        std::fs::metadata(&img).expect("meta").len()
    );

    // generic alone is the plain bake into --output-dir
    let d2 = tempfile::tempdir().expect("tmp");
    let o = flatbake(&[
        "--image",
        s(&img),
        "--output-dir",
        s(d2.path()),
        "--vendor",
        "generic",
        &wasm(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let names: Vec<String> = std::fs::read_dir(d2.path())
        .expect("dir")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["flatcar_production_image.bin"]);
    e2fsck_root(&d2.path().join("flatcar_production_image.bin"));
}

#[test]
fn old_script_spellings_work_and_name_the_new_one() {
    let img = fixtures().join("current.bin");
    let d = tempfile::tempdir().expect("tmp");
    let out = d.path().join("out.bin");
    let o = flatbake(&[
        "--image",
        s(&img),
        "-o",
        s(&out),
        "--install_to",
        "oem:/sysext",
        "--sysupdate",
        "true",
        &wasm(),
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("--install_to is spelled --install-to"),
        "{err}"
    );
    assert!(
        err.contains("--sysupdate true is spelled --sysupdate"),
        "{err}"
    );
    assert_eq!(
        root_link(&out, "/etc/extensions/wasmtime.raw").as_deref(),
        Some("/oem/sysext/wasmtime-v24.0.0-x86-64.raw")
    );
    let rep = flatbake(&["inspect", "--json", s(&out)]);
    let v: serde_json::Value = serde_json::from_slice(&rep.stdout).expect("json");
    assert_eq!(
        v["sysupdate_timer"], true,
        "--sysupdate true enabled the timer"
    );

    // --sysupdate false leaves it off
    let out2 = d.path().join("out2.bin");
    let o = flatbake(&[
        "--image",
        s(&img),
        "-o",
        s(&out2),
        "--sysupdate",
        "false",
        &wasm(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rep = flatbake(&["inspect", "--json", s(&out2)]);
    let v: serde_json::Value = serde_json::from_slice(&rep.stdout).expect("json");
    assert_eq!(v["sysupdate_timer"], false);
}

/// A PATH holding links to every tool of the host but `without`.
fn path_without(dir: &Path, without: &[&str]) -> String {
    for t in [
        "debugfs",
        "e2fsck",
        "resize2fs",
        "btrfs",
        "mkfs.btrfs",
        "fakeroot",
        "unshare",
        "mount",
        "tar",
        "sh",
    ] {
        if without.contains(&t) {
            continue;
        }
        let o = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .expect("sh");
        let p = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        if !p.is_empty() {
            std::os::unix::fs::symlink(p, dir.join(t)).expect("symlink");
        }
    }
    dir.display().to_string()
}

#[test]
fn missing_host_tools_are_named_before_any_copy() {
    let img = fixtures().join("current.bin");
    let d = tempfile::tempdir().expect("tmp");
    let bin = tempfile::tempdir().expect("tmp");
    let path = path_without(bin.path(), &["debugfs", "fakeroot"]);
    let out = d.path().join("out.bin");
    let run = |extra: &[&str]| {
        let o = Command::new(BIN)
            .args(["--image", s(&img), "-o", s(&out)])
            .args(extra)
            .arg(wasm())
            .env("PATH", &path)
            .output()
            .expect("run");
        assert!(!o.status.success());
        stderr(&o)
    };
    let err = run(&[]);
    one_line(&err);
    assert!(
        err.contains("debugfs is not installed (Debian package e2fsprogs)"),
        "{err}"
    );
    assert!(!err.contains("copying"), "{err}");
    assert!(!out.exists());
    assert!(std::fs::read_dir(d.path()).expect("dir").next().is_none());
    // an OEM edit needs the OEM rebuild's tools too: all are named at once
    let err = run(&["--kernel-arg", "console=ttyS0"]);
    assert!(err.contains("debugfs"), "{err}");
    assert!(
        err.contains("fakeroot is not installed (Debian package fakeroot)"),
        "{err}"
    );
    assert!(std::fs::read_dir(d.path()).expect("dir").next().is_none());
}

#[test]
fn flix_names_patchelf_before_reading_anything() {
    let d = tempfile::tempdir().expect("tmp");
    let tar = d.path().join("image.tar");
    std::fs::write(&tar, b"not read").expect("write");
    let o = Command::new(BIN)
        .current_dir(d.path())
        .args([
            "sysext",
            "flix",
            s(&tar),
            "tool",
            "/usr/bin/tool",
            "--arch",
            "x86-64",
        ])
        .env("PATH", "")
        .output()
        .expect("run");
    assert!(!o.status.success());
    let err = stderr(&o);
    one_line(&err);
    assert!(
        err.contains("patchelf is not installed (Debian package patchelf)"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(d.path()).expect("dir").count(), 1);
}
