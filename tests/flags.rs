//! Honest flags: what the user asked for is done or refused, never silently ignored
//! (an existing output, --output with --vendor, unknown official extensions).

mod support;

use std::path::Path;
use support::*;

#[test]
fn an_existing_output_is_kept_unless_forced() {
    let img = fixtures().join("current.bin");
    let d = tempfile::tempdir().expect("tmp");
    let out = d.path().join("out.bin");
    std::fs::write(&out, b"precious").expect("write");
    let err = flatbake_refused(&["--image", s(&img), "-o", s(&out), &wasm()]);
    assert!(err.contains("already exists; pass --force"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(std::fs::read(&out).expect("read"), b"precious");
    assert!(leftovers(d.path()).is_empty(), "{:?}", leftovers(d.path()));

    // a dangling symlink is an existing output too
    let link = d.path().join("link.bin");
    std::os::unix::fs::symlink(d.path().join("nowhere"), &link).expect("symlink");
    flatbake_refused(&["--image", s(&img), "-o", s(&link), &wasm()]);
    assert!(std::fs::symlink_metadata(&link).expect("link").is_symlink());

    let o = flatbake(&["--image", s(&img), "-o", s(&out), "--force", &wasm()]);
    assert!(o.status.success(), "{}", stderr(&o));
    e2fsck_root(&out);
    assert_eq!(
        root_link(&out, "/etc/extensions/wasmtime.raw").as_deref(),
        Some("/opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw")
    );
}

#[test]
fn output_with_vendor_is_refused_before_any_work() {
    let img = fixtures().join("current.bin");
    let d = tempfile::tempdir().expect("tmp");
    let out = d.path().join("x.img");
    let err = flatbake_refused(&[
        "--image",
        s(&img),
        "--vendor",
        "qemu_uefi",
        "--output-dir",
        s(d.path()),
        "-o",
        s(&out),
        &wasm(),
    ]);
    assert!(err.contains("--output"), "{err}");
    assert!(err.contains("--output-dir"), "{err}");
    assert!(std::fs::read_dir(d.path()).expect("dir").next().is_none());
}

#[test]
fn unknown_official_extensions_are_refused_with_the_list() {
    let img = fixtures().join("current.bin");
    let d = tempfile::tempdir().expect("tmp");
    let out = d.path().join("out.bin");
    let err = flatbake_refused(&[
        "--image",
        s(&img),
        "-o",
        s(&out),
        "--enable-official",
        "zsf",
    ]);
    assert!(err.contains("--enable-official zsf"), "{err}");
    assert!(err.contains("zfs"), "{err}");
    assert!(!out.exists());
}

#[test]
fn a_bz2_image_is_decompressed_into_the_cache_once() {
    let img = fixtures().join("current.bin");
    let d = tempfile::tempdir().expect("tmp");
    let bz2 = d.path().join("flatcar_production_image.bin.bz2");
    let data = compress_with("lbzip2", &["-c"], &std::fs::read(&img).expect("read"));
    std::fs::write(&bz2, data).expect("write");
    let cache = d.path().join("cache");
    let run = |out: &Path| {
        std::process::Command::new(BIN)
            .args(["--image", s(&bz2), "-o", s(out), &wasm()])
            .env("FLATBAKE_CACHE", &cache)
            .output()
            .expect("run")
    };
    let first = d.path().join("first.bin");
    let o = run(&first);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("decompressing"), "{}", stderr(&o));
    e2fsck_root(&first);
    sgdisk_verify(&first);
    assert!(root_link(&first, "/etc/extensions/wasmtime.raw").is_some());
    let second = d.path().join("second.bin");
    let o = run(&second);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("using its decompressed copy"),
        "{}",
        stderr(&o)
    );
    e2fsck_root(&second);
    // one decompressed copy in the cache, byte for byte the image that was compressed
    let copies: Vec<_> = std::fs::read_dir(cache.join("local"))
        .expect("cache/local")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    let copy = copies[0].join("flatcar_production_image.bin");
    sh(std::process::Command::new("cmp").arg(&img).arg(&copy));

    let gz = d.path().join("x.bin.gz");
    std::fs::write(&gz, compress_with("gzip", &["-c"], b"not an image")).expect("write");
    let err = flatbake_refused(&[
        "--image",
        s(&gz),
        "-o",
        s(&d.path().join("gz.bin")),
        &wasm(),
    ]);
    assert!(
        err.contains("is gzip-compressed; decompress it first"),
        "{err}"
    );
    assert!(!d.path().join("gz.bin").exists());
}

#[test]
fn existing_vendor_outputs_are_kept_unless_forced() {
    let img = fixtures().join("current.bin");
    let rel = fixtures().join("release");
    let d = tempfile::tempdir().expect("tmp");
    let disk = d.path().join("flatcar_production_qemu_uefi_image.img");
    std::fs::write(&disk, b"precious").expect("write");
    let args = |force: bool| {
        let mut a = vec![
            "--image",
            s(&img),
            "--release-dir",
            s(&rel),
            "--output-dir",
            s(d.path()),
            "--vendor",
            "qemu_uefi",
        ];
        if force {
            a.push("--force");
        }
        a
    };
    let w = wasm();
    let mut refused = args(false);
    refused.push(&w);
    let err = flatbake_refused(&refused);
    assert!(err.contains("already exists; pass --force"), "{err}");
    assert!(
        err.contains("flatcar_production_qemu_uefi_image.img"),
        "{err}"
    );
    assert_eq!(std::fs::read(&disk).expect("read"), b"precious");
    assert!(leftovers(d.path()).is_empty(), "{:?}", leftovers(d.path()));

    let mut forced = args(true);
    forced.push(&w);
    let o = flatbake(&forced);
    assert!(o.status.success(), "{}", stderr(&o));
    sh(std::process::Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(&disk));
}
