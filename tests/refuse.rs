//! End-to-end: bad input gets a clear error naming the file and the problem, a
//! non-zero exit, and leaves nothing behind: no output, no temporary files, the input
//! unchanged.

mod support;

use std::path::Path;
use std::process::Command;
use support::*;

/// Run a bake expected to fail; return stderr after checking nothing was written.
fn refused(image: &Path, args: &[String]) -> String {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    refused_bake(image, &refs)
}

fn ext(name: &str, file: &str) -> String {
    format!("{name}:{}", sysext(file).display())
}

#[test]
fn bad_sysexts() {
    let cases = [
        (
            "misnamed",
            "misnamed-1.0-x86-64.raw",
            "extension-release.othername",
        ),
        ("norelease", "norelease-1.0-x86-64.raw", "it has none"),
        ("wrongid", "wrongid-1.0-x86-64.raw", "ID=fedora"),
        (
            "wrongarch",
            "wrongarch-1.0-arm64.raw",
            "ARCHITECTURE=arm64, but the target is x86-64",
        ),
        (
            "notsquash",
            "notsquash-1.0-x86-64.raw",
            "not a squashfs or erofs image",
        ),
    ];
    for (name, file, why) in cases {
        let err = refused(&current(), &[ext(name, file)]);
        assert!(err.contains(file) && err.contains(why), "{name}: {err}");
    }
}

#[test]
fn all_problems_are_reported_together() {
    let err = refused(
        &current(),
        &[
            ext("misnamed", "misnamed-1.0-x86-64.raw"),
            ext("wrongid", "wrongid-1.0-x86-64.raw"),
            ext("wrongid", "wrongid-1.0-x86-64.raw"),
            "bad/name:x".into(),
            "nocolon".into(),
        ],
    );
    assert!(err.contains("5 problems"), "{err}");
    for s in [
        "misnamed-1.0-x86-64.raw",
        "ID=fedora",
        "more than once",
        "'bad/name:x'",
        "'nocolon'",
    ] {
        assert!(err.contains(s), "missing {s}: {err}");
    }
}

#[test]
fn bad_names_and_files() {
    for (arg, why) in [
        (":x.raw".to_owned(), "empty"),
        ("..:x.raw".to_owned(), "starts with '.'"),
        ("a/b:x.raw".to_owned(), "contains '/'"),
        (
            format!("gone:{}", "/nonexistent/gone.raw"),
            "/nonexistent/gone.raw: No such file",
        ),
    ] {
        let err = refused(&current(), std::slice::from_ref(&arg));
        assert!(err.contains(why), "{arg}: {err}");
    }
}

#[test]
fn no_room_in_root() {
    let err = refused(&current(), &[ext("big", "big-1.0-x86-64.raw")]);
    assert!(
        err.contains("ROOT has")
            && err.contains("free but the extensions need")
            && err.contains("inodes"),
        "{err}"
    );
}

#[test]
fn no_room_in_oem() {
    let err = refused(
        &current(),
        &[
            "--install-to".into(),
            "oem:/sysext".into(),
            ext("big", "big-1.0-x86-64.raw"),
        ],
    );
    assert!(err.contains("OEM is 32.0 MiB"), "{err}");
}

#[test]
fn bad_sysupdate_conf() {
    let dir = tempfile::tempdir().expect("tmp");
    let conf = dir.path().join("bad.conf");
    std::fs::write(&conf, "this is not a unit file\n").expect("w");
    let err = refused(
        &current(),
        &[
            "--sysupdate-conf".into(),
            format!("wasmtime={}", conf.display()),
            ext("wasmtime", "wasmtime-v24.0.0-x86-64.raw"),
        ],
    );
    assert!(
        err.contains("bad.conf: not a sysupdate transfer file"),
        "{err}"
    );
    let err = refused(
        &current(),
        &[
            "--sysupdate-conf".into(),
            format!("other={}", conf.display()),
            ext("wasmtime", "wasmtime-v24.0.0-x86-64.raw"),
        ],
    );
    assert!(err.contains("no extension named other"), "{err}");
}

#[test]
fn bad_images() {
    let dir = tempfile::tempdir().expect("tmp");
    let wasm = ext("wasmtime", "wasmtime-v24.0.0-x86-64.raw");
    // not a disk image at all
    let err = refused(
        &sysext("wasmtime-v24.0.0-x86-64.raw"),
        std::slice::from_ref(&wasm),
    );
    assert!(
        err.contains("wasmtime-v24.0.0-x86-64.raw: not a disk image"),
        "{err}"
    );
    // missing
    let err = refused(
        Path::new("/nonexistent/image.bin"),
        std::slice::from_ref(&wasm),
    );
    assert!(err.contains("/nonexistent/image.bin"), "{err}");
    // truncated
    let trunc = dir.path().join("trunc.bin");
    sh(Command::new("dd")
        .arg(format!("if={}", current().display()))
        .arg(format!("of={}", trunc.display()))
        .args(["bs=1M", "count=100", "conv=sparse", "status=none"]));
    let err = refused(&trunc, std::slice::from_ref(&wasm));
    assert!(err.contains("trunc.bin: truncated"), "{err}");
    // a GPT disk that is not Flatcar's
    let foreign = dir.path().join("foreign.bin");
    sh(Command::new("truncate").arg("-s").arg("64M").arg(&foreign));
    sh(Command::new("sgdisk")
        .args(["-n", "1:2048:0", "-t", "1:8300", "-c", "1:data"])
        .arg(&foreign));
    let err = refused(&foreign, std::slice::from_ref(&wasm));
    assert!(
        err.contains("foreign.bin: not a Flatcar image: no partition named EFI-SYSTEM"),
        "{err}"
    );
    // corrupt primary GPT header
    let corrupt = dir.path().join("corrupt.bin");
    sh(Command::new("cp")
        .arg("--sparse=always")
        .arg(current())
        .arg(&corrupt));
    sh(Command::new("sh").arg("-c").arg(format!(
        "printf 'X' | dd of={} bs=1 seek=600 conv=notrunc status=none",
        corrupt.display()
    )));
    let err = refused(&corrupt, &[wasm]);
    assert!(
        err.contains("corrupt.bin: corrupt GPT: primary header CRC32"),
        "{err}"
    );
}

#[test]
fn output_must_not_be_the_input() {
    let dir = tempfile::tempdir().expect("tmp");
    let img = dir.path().join("img.bin");
    sh(Command::new("cp")
        .arg("--sparse=always")
        .arg(current())
        .arg(&img));
    let before = sha256_file(&img);
    let o = flatbake(&[
        "--image",
        img.to_str().expect("p"),
        "-o",
        img.to_str().expect("p"),
        &ext("wasmtime", "wasmtime-v24.0.0-x86-64.raw"),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("the output is the input image"),
        "{}",
        stderr(&o)
    );
    assert_eq!(sha256_file(&img), before);
    assert!(leftovers(dir.path()).is_empty());
}

/// `--force` replaces an output, but never one of the files the bake reads: a sysext,
/// its sysupdate config (named or beside it), the Ignition config. Each is refused in
/// one line naming it, and the file is left as it was.
#[test]
fn output_must_not_be_another_input_even_with_force() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let raw = d.join("w.raw");
    std::fs::copy(sysext("wasmtime-v24.0.0-x86-64.raw"), &raw).expect("copy");
    let conf = d.join("w.conf");
    std::fs::copy(sysext("wasmtime.conf"), &conf).expect("copy");
    let beside = d.join("wasmtime.conf");
    std::fs::copy(sysext("wasmtime.conf"), &beside).expect("copy");
    let ign = d.join("config.ign");
    std::fs::write(&ign, "{\"ignition\":{\"version\":\"3.3.0\"}}\n").expect("write");
    let w = format!("wasmtime:{}", raw.display());
    let c = format!("wasmtime={}", conf.display());
    let cases: Vec<(&std::path::Path, Vec<&str>, &str)> = vec![
        (&raw, vec![&w], "the sysext of wasmtime"),
        (
            &conf,
            vec![&w, "--sysupdate-conf", &c],
            "the sysupdate config of wasmtime",
        ),
        (&beside, vec![&w], "the sysupdate config of wasmtime"),
        (&ign, vec!["--ignition", s(&ign)], "the Ignition config"),
    ];
    let img = current();
    for (out, args, what) in cases {
        let before = sha256_file(out);
        let mut all = vec!["--image", s(&img), "-o", s(out), "--force"];
        all.extend(args);
        let o = flatbake(&all);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{all:?}: {err}");
        assert!(
            err.contains(&format!("{}: the output is {what}", out.display())),
            "{all:?}: {err}"
        );
        assert_eq!(sha256_file(out), before, "{} changed", out.display());
        assert!(leftovers(d).is_empty(), "{:?}", leftovers(d));
    }
}
