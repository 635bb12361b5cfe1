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
    let head = std::fs::read(rel.join("version.txt")).expect("v");
    t.insert("/amd64-usr/current/version.txt.sig".into(), gpg.sign(&head));
    t.insert("/amd64-usr/current/version.txt".into(), head);
    let wasm = std::fs::read(sysext("wasmtime-v24.0.0-x86-64.raw")).expect("w");
    t.insert(
        "/extensions/SHA256SUMS".into(),
        format!("{}  wasmtime-v24.0.0-x86-64.raw\n", sha256(&wasm)).into_bytes(),
    );
    t.insert("/extensions/wasmtime-v24.0.0-x86-64.raw".into(), wasm);
    t.insert(
        "/extensions/wasmtime/wasmtime.conf".into(),
        std::fs::read(sysext("wasmtime.conf")).expect("c"),
    );
    t
}

/// `img` is a sound hetzner image of release V with the fixture wasmtime sysext and
/// its sysupdate config baked in, and the release's OEM sysext on OEM.
fn assert_hetzner_with_wasmtime(img: &Path) {
    sgdisk_verify(img);
    e2fsck_root(img);
    assert_eq!(
        root_file(img, "/opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw"),
        std::fs::read(sysext("wasmtime-v24.0.0-x86-64.raw")).expect("w")
    );
    assert_eq!(
        root_file(img, "/etc/sysupdate.wasmtime.d/wasmtime.conf"),
        std::fs::read(sysext("wasmtime.conf")).expect("c")
    );
    let oem = oem_tree(img);
    assert!(oem
        .path()
        .join(format!("tree/sysext/oem-hetzner-{V}.raw"))
        .is_file());
}

/// A fetch from a server with `tree` is refused, naming `want`, and writes nothing
/// into the fresh output directory `out`.
fn refused_by(tree: BTreeMap<String, Vec<u8>>, key: &Path, cache: &Path, out: &Path, want: &str) {
    let server = Server::start(tree);
    std::fs::create_dir(out).expect("mkdir");
    let o = run(&server, key, cache, out, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains(want), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(out).expect("ls").count(), 0);
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
    .arg("wasmtime:wasmtime-v24.0.0-x86-64.raw");
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
    assert_hetzner_with_wasmtime(&img);

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
    refused_by(
        t,
        &key,
        &dir.path().join("c1"),
        &dir.path().join("out1"),
        "flatcar_production_image.bin.bz2",
    );

    // extension that does not match the bakery's SHA256SUMS
    let mut t = tree(&gpg);
    t.insert(
        "/extensions/wasmtime-v24.0.0-x86-64.raw".into(),
        b"tampered".to_vec(),
    );
    refused_by(
        t,
        &key,
        &dir.path().join("c2"),
        &dir.path().join("out2"),
        "wasmtime-v24.0.0-x86-64.raw",
    );
}

// ---------------------------------------------------------------------------------------
// What was fetched is what was asked for; a failed check leaves nothing trusted; the
// cache is safe to share and checked on read; `flatbake fetch` makes a bake offline.
// ---------------------------------------------------------------------------------------

const OLD: &str = "4459.2.4";
const BZ2: &str = "flatcar_production_image.bin.bz2";

/// A fixture image of another architecture or version (built once per test binary).
fn other_image(arch: &str, version: &str) -> std::path::PathBuf {
    use std::sync::{Mutex, OnceLock};
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    let _g = LOCK.get_or_init(|| Mutex::new(())).lock().expect("lock");
    let p = fixtures().join(format!("other-{arch}-{version}.bin"));
    if !p.is_file() {
        sh(Command::new("bash")
            .arg(format!(
                "{}/scripts/make-fixture-image.sh",
                env!("CARGO_MANIFEST_DIR")
            ))
            .arg(&p)
            .args(["--arch", arch, "--version", version]));
    }
    p
}

/// The OEM sysext for hetzner of release `version`.
fn other_oem(version: &str) -> Vec<u8> {
    let d = tempfile::tempdir().expect("tmp");
    sh(Command::new("bash")
        .arg(format!(
            "{}/scripts/make-fixture-release.sh",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(d.path())
        .args(["--version", version]));
    std::fs::read(d.path().join("oem-hetzner.raw")).expect("oem")
}

/// A loopback release server with `tree(gpg)`, the trusted key file, and dirs.
struct Setup {
    gpg: Gpg,
    server: Server,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let gpg = Gpg::subkey_signer("flatbake test <t@localhost>");
        let server = Server::start(tree(&gpg));
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("key.asc"), gpg.public_key()).expect("key");
        Setup { gpg, server, dir }
    }
    fn key(&self) -> std::path::PathBuf {
        self.dir.path().join("key.asc")
    }
    fn cache(&self) -> std::path::PathBuf {
        self.dir.path().join("cache")
    }
    fn rel(&self) -> std::path::PathBuf {
        self.cache().join("amd64-usr").join(V)
    }
    /// Serves `data` (signed) as release file `name`.
    fn put(&self, name: &str, data: Vec<u8>) {
        let p = format!("/amd64-usr/{V}/{name}");
        self.server.set(&format!("{p}.sig"), self.gpg.sign(&data));
        self.server.set(&p, data);
    }
    /// `flatbake fetch --release V ...` against the server.
    fn fetch(&self, cache: &Path, extra: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .arg("fetch")
            .args(["--release", V])
            .args(["--release-url", &self.server.url()])
            .args(["--bakery-url", &self.server.url()])
            .arg("--signing-key")
            .arg(self.key())
            .arg("--image-cache")
            .arg(cache)
            .args(extra)
            .output()
            .expect("run")
    }
}

/// The one `error:` line of a failed run (asserting there is exactly one).
fn error_line(o: &std::process::Output) -> String {
    assert!(!o.status.success(), "succeeded: {}", stderr(o));
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0].to_string()
}

/// Staging or temporary files left in the cache.
fn cache_leftovers(cache: &Path) -> Vec<std::path::PathBuf> {
    list_files(cache)
        .into_iter()
        .filter(|p| {
            let n = p.to_string_lossy();
            n.contains(".unverified") || n.ends_with(".part") || n.contains(".flatbake-")
        })
        .collect()
}

fn compressed(img: &Path) -> Vec<u8> {
    compress_with("lbzip2", &["-c"], &std::fs::read(img).expect("img"))
}

#[test]
fn signed_image_of_another_arch_or_version_is_refused_and_not_kept() {
    let st = Setup::new();
    let right = compressed(&fixtures().join("current.bin"));
    for (arch, version, says) in [("arm64", V, "arm64"), ("x86-64", OLD, OLD)] {
        st.put(BZ2, compressed(&other_image(arch, version)));
        let out = st.dir.path().join(format!("out-{arch}-{version}"));
        std::fs::create_dir(&out).expect("mkdir");
        let o = run(&st.server, &st.key(), &st.cache(), &out, &["--release", V]);
        let line = error_line(&o);
        assert!(line.contains(BZ2) && line.contains(says), "{line}");
        assert!(line.contains(&format!("not the {V} x86-64")), "{line}");
        assert!(!line.contains(".unverified"), "{line}");
        assert_eq!(std::fs::read_dir(&out).expect("ls").count(), 0);
        // nothing of it is trusted or kept: neither the .bz2 nor the image
        assert!(!st.rel().join(BZ2).exists());
        assert!(!st.rel().join("flatcar_production_image.bin").exists());
        assert!(
            cache_leftovers(&st.cache()).is_empty(),
            "{:?}",
            cache_leftovers(&st.cache())
        );
    }
    // the server is fixed: the next run fetches the image again and bakes it
    st.put(BZ2, right);
    let out = st.dir.path().join("out-ok");
    std::fs::create_dir(&out).expect("mkdir");
    st.server.clear_log();
    let o = run(&st.server, &st.key(), &st.cache(), &out, &["--release", V]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        st.server
            .requests_for(&format!("/amd64-usr/{V}/{BZ2}"))
            .len(),
        1
    );
    assert!(stderr(&o).contains("x86-64"), "{}", stderr(&o));
}

#[test]
fn oem_sysext_of_another_release_is_refused_and_not_kept() {
    let st = Setup::new();
    st.put("oem-hetzner.raw", other_oem(OLD));
    let o = st.fetch(&st.cache(), &["--vendor", "hetzner"]);
    let line = error_line(&o);
    assert!(
        line.contains("oem-hetzner.raw") && line.contains(OLD),
        "{line}"
    );
    assert!(!line.contains(".unverified"), "{line}");
    assert!(!st.rel().join("oem-hetzner.raw").exists());
    // a bake refuses it too, before writing anything
    let out = st.dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let o = run(&st.server, &st.key(), &st.cache(), &out, &["--release", V]);
    let line = error_line(&o);
    assert!(
        line.contains("oem-hetzner.raw") && line.contains(OLD),
        "{line}"
    );
    assert_eq!(std::fs::read_dir(&out).expect("ls").count(), 0);
    assert!(!st.rel().join("oem-hetzner.raw").exists());
    assert!(
        cache_leftovers(&st.cache()).is_empty(),
        "{:?}",
        cache_leftovers(&st.cache())
    );
}

#[test]
fn a_file_failing_a_check_is_fetched_again_next_run() {
    let st = Setup::new();
    let vt = std::fs::read(fixtures().join("release/version.txt")).expect("v");
    // a validly signed version.txt of another release
    let old = String::from_utf8(vt.clone()).expect("utf8").replace(V, OLD);
    st.put("version.txt", old.into_bytes());
    let line = error_line(&st.fetch(&st.cache(), &[]));
    assert!(line.contains("version.txt") && line.contains(OLD), "{line}");
    assert!(!st.rel().join("version.txt").exists());
    st.put("version.txt", vt);

    // a validly signed but truncated .bz2 (version.txt, fixed, is fetched again)
    let bz2 = compressed(&fixtures().join("current.bin"));
    st.put(BZ2, bz2[..bz2.len() / 2].to_vec());
    st.server.clear_log();
    let line = error_line(&st.fetch(&st.cache(), &[]));
    assert_eq!(
        st.server
            .requests_for(&format!("/amd64-usr/{V}/version.txt"))
            .len(),
        1
    );
    assert!(line.contains(BZ2), "{line}");
    assert!(!line.contains(".unverified"), "{line}");
    assert!(!st.rel().join(BZ2).exists());
    assert!(!st.rel().join("flatcar_production_image.bin").exists());
    assert!(
        cache_leftovers(&st.cache()).is_empty(),
        "{:?}",
        cache_leftovers(&st.cache())
    );

    // fixed on the server: the next run fetches both again and succeeds
    st.put(BZ2, bz2);
    st.server.clear_log();
    let o = st.fetch(&st.cache(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        st.server
            .requests_for(&format!("/amd64-usr/{V}/{BZ2}"))
            .len(),
        1
    );
    let image = st.rel().join("flatcar_production_image.bin");
    sh(Command::new("cmp")
        .arg(&image)
        .arg(fixtures().join("current.bin")));
}

#[test]
fn signature_failures_are_one_line_naming_the_file() {
    let st = Setup::new();
    let other = Gpg::primary_signer("someone else <x@localhost>");
    let path = format!("/amd64-usr/{V}/{BZ2}");
    let data = tree(&st.gpg)[&path].clone();
    let cases: [(Vec<u8>, &str); 3] = [
        (st.gpg.sign(b"other data"), "BAD signature"),
        (
            other.sign(&data),
            "not a valid signing key of the trusted keyring",
        ),
        (
            b"garbage, not a signature".to_vec(),
            "not a detached OpenPGP signature",
        ),
    ];
    for (sig, says) in cases {
        st.server.set(&format!("{path}.sig"), sig);
        let line = error_line(&st.fetch(&st.cache(), &[]));
        assert!(line.contains(BZ2) && line.contains(says), "{line}");
        assert!(!line.contains("unverified"), "{line}");
        // the message is ours, to its end, with no library text appended
        assert!(
            line.ends_with("was not made over this file")
                || line.ends_with("trusted keyring")
                || line.ends_with("not a detached OpenPGP signature"),
            "{line}"
        );
        assert!(!st.rel().join(BZ2).exists());
        assert!(
            cache_leftovers(&st.cache()).is_empty(),
            "{:?}",
            cache_leftovers(&st.cache())
        );
    }
}

#[test]
fn bakery_conf_is_checked_against_sha256sums() {
    let st = Setup::new();
    let wasm = std::fs::read(sysext("wasmtime-v24.0.0-x86-64.raw")).expect("w");
    let conf = std::fs::read(sysext("wasmtime.conf")).expect("c");
    let ext = ["wasmtime:wasmtime-v24.0.0-x86-64.raw"];
    let sums =
        |c: &str| format!("{}  wasmtime-v24.0.0-x86-64.raw\n{c}", sha256(&wasm)).into_bytes();

    // listed with another hash: refused, nothing kept
    st.server.set(
        "/extensions/SHA256SUMS",
        sums(&format!("{}  wasmtime.conf\n", "0".repeat(64))),
    );
    let line = error_line(&st.fetch(&st.cache(), &ext));
    assert!(
        line.contains("wasmtime.conf") && line.contains("SHA256 mismatch"),
        "{line}"
    );
    assert!(!st.cache().join("extensions/wasmtime.conf").exists());

    // listed with its hash: installed, no warning
    st.server.set(
        "/extensions/SHA256SUMS",
        sums(&format!("{}  wasmtime.conf\n", sha256(&conf))),
    );
    let o = st.fetch(&st.cache(), &ext);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("not listed"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(st.cache().join("extensions/wasmtime.conf")).expect("c"),
        conf
    );

    // not listed: installed with a warning
    let c2 = st.dir.path().join("c2");
    st.server.set("/extensions/SHA256SUMS", sums(""));
    let o = st.fetch(&c2, &ext);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("wasmtime.conf: not listed in SHA256SUMS"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(c2.join("extensions/wasmtime.conf")).expect("c"),
        conf
    );
}

#[test]
fn concurrent_fetches_share_one_cache() {
    let st = Setup::new();
    let path = format!("/amd64-usr/{V}/{BZ2}");
    // the image arrives slowly, so the second run starts while the first downloads it
    st.server
        .always(&path, Fault::Slow(std::time::Duration::from_millis(40)));
    let spawn = || {
        Command::new(BIN)
            .arg("fetch")
            .args(["--release", V, "--vendor", "hetzner"])
            .args(["--release-url", &st.server.url()])
            .args(["--bakery-url", &st.server.url()])
            .arg("--signing-key")
            .arg(st.key())
            .arg("--image-cache")
            .arg(st.cache())
            .arg("wasmtime:wasmtime-v24.0.0-x86-64.raw")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let first = spawn();
    while st.server.requests_for(&path).is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let second = spawn();
    let (a, b) = (
        first.wait_with_output().expect("wait"),
        second.wait_with_output().expect("wait"),
    );
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    assert_eq!(a.stdout, b.stdout);
    // one download of each file; the second run waited for the first one's
    assert_eq!(
        st.server.requests_for(&path).len(),
        1,
        "{:?}",
        st.server.log()
    );
    assert_eq!(
        st.server
            .requests_for("/extensions/wasmtime-v24.0.0-x86-64.raw")
            .len(),
        1
    );
    sh(Command::new("cmp")
        .arg(st.rel().join("flatcar_production_image.bin"))
        .arg(fixtures().join("current.bin")));
    assert!(
        cache_leftovers(&st.cache()).is_empty(),
        "{:?}",
        cache_leftovers(&st.cache())
    );
}

/// Changes a byte of `p` in place, keeping its size and mtime.
fn tamper(p: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let mtime = std::fs::metadata(p)
        .expect("stat")
        .modified()
        .expect("mtime");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(p)
        .expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).expect("read");
    b[0] ^= 0x55;
    f.write_all_at(&b, at).expect("write");
    f.set_modified(mtime).expect("touch");
}

#[test]
fn tampered_cache_entries_are_not_trusted() {
    let st = Setup::new();
    let ext = [
        "--vendor",
        "hetzner",
        "wasmtime:wasmtime-v24.0.0-x86-64.raw",
    ];
    let o = st.fetch(&st.cache(), &ext);
    assert!(o.status.success(), "{}", stderr(&o));
    let oem = st.rel().join("oem-hetzner.raw");
    let oem_bytes = std::fs::read(&oem).expect("oem");
    let image = st.rel().join("flatcar_production_image.bin");
    let wasm = st.cache().join("extensions/wasmtime-v24.0.0-x86-64.raw");
    let bz2 = st.rel().join(BZ2);
    let bz2_bytes = std::fs::read(&bz2).expect("bz2");

    // same size, same mtime, other bytes: each is checked again, refetched or rebuilt
    tamper(&oem, 100);
    tamper(&wasm, 5000);
    tamper(&bz2, 1000);
    let (p, _) = part(&fixtures().join("current.bin"), 3);
    tamper(&image, p + 0x10040); // USR-A's btrfs magic
    st.server.clear_log();
    let o = st.fetch(&st.cache(), &ext);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        format!("/amd64-usr/{V}/oem-hetzner.raw"),
        format!("/amd64-usr/{V}/{BZ2}"),
        "/extensions/wasmtime-v24.0.0-x86-64.raw".to_string(),
    ] {
        assert_eq!(
            st.server.requests_for(&f).len(),
            1,
            "{f}: {:?}",
            st.server.log()
        );
    }
    assert_eq!(std::fs::read(&oem).expect("oem"), oem_bytes);
    assert_eq!(std::fs::read(&bz2).expect("bz2"), bz2_bytes);
    assert_eq!(
        std::fs::read(&wasm).expect("w"),
        std::fs::read(sysext("wasmtime-v24.0.0-x86-64.raw")).expect("w")
    );
    sh(Command::new("cmp")
        .arg(&image)
        .arg(fixtures().join("current.bin")));

    // a copy of the cache (other inodes, as a CI cache restore makes) is checked again
    // locally and used without the network
    let copy = st.dir.path().join("copy");
    sh(Command::new("cp").arg("-a").arg(st.cache()).arg(&copy));
    let url = st.server.url();
    drop(st.server);
    let o = Command::new(BIN)
        .arg("fetch")
        .args(["--release", V, "--release-url", &url, "--bakery-url", &url])
        .arg("--signing-key")
        .arg(st.dir.path().join("key.asc"))
        .arg("--image-cache")
        .arg(&copy)
        .args(ext)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn fetch_prefetches_everything_a_bake_needs() {
    let st = Setup::new();
    let o = st.fetch(
        &st.cache(),
        &[
            "--vendor",
            "hetzner",
            "wasmtime:wasmtime-v24.0.0-x86-64.raw",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(st.rel().join("oem-hetzner.raw").is_file());
    let Setup { gpg, server, dir } = st;
    drop(server); // offline from here on
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let o = Command::new(BIN)
        .args(["--fetch", "--release", V, "--vendor", "hetzner"])
        .args([
            "--release-url",
            "http://127.0.0.1:9",
            "--bakery-url",
            "http://127.0.0.1:9",
        ])
        .arg("--signing-key")
        .arg(dir.path().join("key.asc"))
        .arg("--image-cache")
        .arg(dir.path().join("cache"))
        .arg("--output-dir")
        .arg(&out)
        .arg("wasmtime:wasmtime-v24.0.0-x86-64.raw")
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let img = out.join("flatcar_production_hetzner_image.bin");
    assert_hetzner_with_wasmtime(&img);
    drop(gpg);
}

#[test]
fn rootless_fetch_as_nobody_then_cache_hit() {
    use std::os::unix::fs::MetadataExt;
    let st = Setup::new();
    sh(Command::new("chmod").arg("0777").arg(st.dir.path()));
    let cache = st.dir.path().join("nobody-cache");
    let fetch = || {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(BIN)
            .arg("fetch")
            .args(["--release", V, "--vendor", "hetzner"])
            .args(["--release-url", &st.server.url()])
            .args(["--bakery-url", &st.server.url()])
            .arg("--signing-key")
            .arg(st.key())
            .arg("--image-cache")
            .arg(&cache)
            .arg("wasmtime:wasmtime-v24.0.0-x86-64.raw")
            .env("HOME", st.dir.path())
            .output()
            .expect("setpriv")
    };
    let o = fetch();
    assert!(o.status.success(), "rootless fetch failed: {}", stderr(&o));
    let rel = cache.join("amd64-usr").join(V);
    let image = rel.join("flatcar_production_image.bin");
    assert_eq!(std::fs::metadata(&image).expect("image").uid(), 65534);
    sh(Command::new("cmp")
        .arg(&image)
        .arg(fixtures().join("current.bin")));
    assert!(rel.join("oem-hetzner.raw").is_file());
    st.server.clear_log();
    let o = fetch();
    assert!(o.status.success(), "{}", stderr(&o));
    let release_requests: Vec<_> = st
        .server
        .log()
        .into_iter()
        .filter(|r| r.path.starts_with("/amd64-usr/") || r.path.ends_with(".raw"))
        .collect();
    assert!(release_requests.is_empty(), "{release_requests:?}");
    assert!(
        cache_leftovers(&cache).is_empty(),
        "{:?}",
        cache_leftovers(&cache)
    );
}

/// `flatbake fetch --vendor` judges the vendor names, the architecture and the release
/// range before it downloads anything (as a bake does): the release URL here refuses
/// every connection, so any download would fail with a network error instead.
#[test]
fn fetch_checks_vendors_before_downloading() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = dir.path().join("cache");
    for (arch, vendor, want) in [
        (
            "arm64",
            "vmware_ova",
            "vendor 'vmware_ova': Flatcar builds it for x86-64 only",
        ),
        ("x86-64", "nosuch", "unknown vendor 'nosuch'"),
        (
            "x86-64",
            "parallels",
            "vendor 'parallels' cannot be made by flatbake",
        ),
    ] {
        let o = flatbake(&[
            "fetch",
            "--release",
            "4593.2.5",
            "--arch",
            arch,
            "--vendor",
            vendor,
            "--release-url",
            "http://127.0.0.1:9",
            "--image-cache",
            s(&cache),
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{vendor}: {err}");
        assert!(err.contains(want), "{vendor}: {err}");
        assert!(
            !err.contains("127.0.0.1:9"),
            "{vendor}: tried to download: {err}"
        );
    }
}
