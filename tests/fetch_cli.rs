//! End-to-end through the binary: `flatbake --fetch --vendor ...` against a loopback
//! release server and bakery signed with a throwaway key; the cache makes a second run
//! download nothing; a bad signature or checksum stops the run with no output.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use support::*;

const V: &str = "4593.2.5";

/// A release tree for the fixture image, signed by `gpg`, plus a bakery.
fn tree(gpg: &Gpg) -> BTreeMap<String, Vec<u8>> {
    let mut t = BTreeMap::new();
    let img = std::fs::read(fixtures().join("current.bin")).expect("fixture");
    let bz2 = compress_with("lbzip2", &["-c"], &img);
    let rel = fixtures().join("release");
    let base = format!("/amd64-usr/{V}");
    let mut add = |name: &str, data: Vec<u8>| {
        t.insert(format!("{base}/{name}.sig"), gpg.sign(&data));
        t.insert(format!("{base}/{name}"), data);
    };
    add("flatcar_production_image.bin.bz2", bz2);
    add(
        "version.txt",
        std::fs::read(rel.join("version.txt")).expect("v"),
    );
    add(
        "oem-hetzner.raw",
        std::fs::read(rel.join("oem-hetzner.raw")).expect("oem"),
    );
    t.insert(
        "/amd64-usr/current/version.txt".into(),
        std::fs::read(rel.join("version.txt")).expect("v"),
    );
    let wasm = std::fs::read(sysext("wasmtime-24.0.0-x86-64.raw")).expect("w");
    t.insert(
        "/extensions/SHA256SUMS".into(),
        format!("{}  wasmtime-24.0.0-x86-64.raw\n", sha256(&wasm)).into_bytes(),
    );
    t.insert("/extensions/wasmtime-24.0.0-x86-64.raw".into(), wasm);
    t.insert(
        "/extensions/wasmtime/wasmtime.conf".into(),
        std::fs::read(sysext("wasmtime.conf")).expect("c"),
    );
    t
}

fn run(
    server: &Server,
    key: &Path,
    cache: &Path,
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.args([
        "--fetch",
        "--vendor",
        "hetzner",
        "--release-url",
        &server.url(),
        "--bakery-url",
        &server.url(),
    ])
    .arg("--signing-key")
    .arg(key)
    .arg("--image-cache")
    .arg(cache)
    .arg("--output-dir")
    .arg(out)
    .args(extra)
    .arg("wasmtime:wasmtime-24.0.0-x86-64.raw");
    c.output().expect("run")
}

#[test]
fn fetch_bake_vendor_then_cache_hit() {
    let gpg = Gpg::subkey_signer("flatbake test <t@localhost>");
    let server = Server::start(tree(&gpg));
    let dir = tempfile::tempdir().expect("tmp");
    let key = dir.path().join("key.asc");
    std::fs::write(&key, gpg.public_key()).expect("key");
    let (cache, out) = (dir.path().join("cache"), dir.path().join("out"));
    std::fs::create_dir(&out).expect("mkdir");

    let o = run(&server, &key, &cache, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = out.join("flatcar_production_hetzner_image.bin");
    sgdisk_verify(&img);
    e2fsck_root(&img);
    assert_eq!(
        root_file(&img, "/opt/extensions/wasmtime/wasmtime-24.0.0-x86-64.raw"),
        std::fs::read(sysext("wasmtime-24.0.0-x86-64.raw")).expect("w")
    );
    assert_eq!(
        root_file(&img, "/etc/sysupdate.wasmtime.d/wasmtime.conf"),
        std::fs::read(sysext("wasmtime.conf")).expect("c")
    );
    let oem = oem_tree(&img);
    assert!(oem
        .path()
        .join(format!("tree/sysext/oem-hetzner-{V}.raw"))
        .is_file());

    // second run, exact version: nothing of the release is downloaded again
    server.clear_log();
    std::fs::remove_file(&img).expect("rm");
    let o = run(&server, &key, &cache, &out, &["--release", V]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(img.is_file());
    let fetched: Vec<String> = server
        .log()
        .into_iter()
        .map(|r| r.path)
        .filter(|p| p.starts_with("/amd64-usr/"))
        .collect();
    assert!(fetched.is_empty(), "downloaded again: {fetched:?}");
}

#[test]
fn bad_signature_or_checksum_stops_everything() {
    let gpg = Gpg::primary_signer("flatbake test <t@localhost>");
    let other = Gpg::primary_signer("someone else <x@localhost>");
    let dir = tempfile::tempdir().expect("tmp");
    let key = dir.path().join("key.asc");
    std::fs::write(&key, gpg.public_key()).expect("key");

    // image signed by another key
    let mut t = tree(&gpg);
    let bz2 = t[&format!("/amd64-usr/{V}/flatcar_production_image.bin.bz2")].clone();
    t.insert(
        format!("/amd64-usr/{V}/flatcar_production_image.bin.bz2.sig"),
        other.sign(&bz2),
    );
    let server = Server::start(t);
    let out = dir.path().join("out1");
    std::fs::create_dir(&out).expect("mkdir");
    let o = run(&server, &key, &dir.path().join("c1"), &out, &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("flatcar_production_image.bin.bz2"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_dir(&out).expect("ls").count(), 0);
    drop(server);

    // extension that does not match the bakery's SHA256SUMS
    let mut t = tree(&gpg);
    t.insert(
        "/extensions/wasmtime-24.0.0-x86-64.raw".into(),
        b"tampered".to_vec(),
    );
    let server = Server::start(t);
    let out = dir.path().join("out2");
    std::fs::create_dir(&out).expect("mkdir");
    let o = run(&server, &key, &dir.path().join("c2"), &out, &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("wasmtime-24.0.0-x86-64.raw"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_dir(&out).expect("ls").count(), 0);
}
