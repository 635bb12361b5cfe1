//! The fast path of `--fetch --vendor V` (issue 13): a loopback release publishing both
//! the generic `.bin.bz2` and the vendor's own compressed qcow2 (made by `qemu-img
//! convert -c` like Flatcar's), signed with a throwaway key. The bake must start from
//! the published image, leave every partition it did not edit byte-identical to it,
//! pass qemu-img check, e2fsck and btrfs check, and agree with a generic-path bake of
//! the same request; a published image that is not the release asked for, badly
//! signed or broken is refused; a release without it falls back to the generic path.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use support::published::{guest_raw, qcow2_of, vendor_qcow2};
use support::*;

const V: &str = "4593.2.5";
const IMG: &str = "flatcar_production_qemu_uefi_image.img";
const BZ2: &str = "flatcar_production_image.bin.bz2";
const WASM: &str = "wasmtime-v24.0.0-x86-64.raw";

/// The published qemu_uefi qcow2 of the fixture release (built once per test binary).
fn published() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = fixtures().join("published");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let p = vendor_qcow2(
            &fixtures().join("current.bin"),
            &fixtures().join("release"),
            "qemu_uefi",
            &dir,
        );
        sh(Command::new("chmod").arg("-R").arg("a+rX").arg(&dir));
        p
    })
}

/// The release tree: generic image, vendor image, version.txt, OEM sysext, firmware,
/// every file signed; and a bakery with the wasmtime sysext.
fn tree(gpg: &Gpg, with_vendor_image: bool) -> BTreeMap<String, Vec<u8>> {
    let mut t = BTreeMap::new();
    let rel = fixtures().join("release");
    let base = format!("/amd64-usr/{V}");
    let mut add = |name: &str, data: Vec<u8>| {
        t.insert(format!("{base}/{name}.sig"), gpg.sign(&data));
        t.insert(format!("{base}/{name}"), data);
    };
    let img = std::fs::read(fixtures().join("current.bin")).expect("fixture");
    add(BZ2, compress_with("lbzip2", &["-c"], &img));
    if with_vendor_image {
        add(IMG, std::fs::read(published()).expect("published"));
    }
    for f in [
        "version.txt",
        "oem-qemu.raw",
        "flatcar_production_qemu_uefi_efi_code.qcow2",
        "flatcar_production_qemu_uefi_efi_vars.qcow2",
        "flatcar_production_qemu_uefi_secure_efi_code.qcow2",
        "flatcar_production_qemu_uefi_secure_efi_vars.qcow2",
    ] {
        add(f, std::fs::read(rel.join(f)).expect(f));
    }
    let wasm = std::fs::read(sysext(WASM)).expect("w");
    t.insert(
        "/extensions/SHA256SUMS".into(),
        format!("{}  {WASM}\n", sha256(&wasm)).into_bytes(),
    );
    t.insert(format!("/extensions/{WASM}"), wasm);
    t.insert(
        "/extensions/wasmtime/wasmtime.conf".into(),
        std::fs::read(sysext("wasmtime.conf")).expect("c"),
    );
    t
}

struct Setup {
    gpg: Gpg,
    server: Server,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(with_vendor_image: bool) -> Setup {
        let gpg = Gpg::subkey_signer("flatbake test <t@localhost>");
        let server = Server::start(tree(&gpg, with_vendor_image));
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("key.asc"), gpg.public_key()).expect("key");
        sh(Command::new("chmod").arg("0755").arg(dir.path()));
        Setup { gpg, server, dir }
    }
    /// Serves `data`, signed by `signer` (default: the trusted key), as release file `name`.
    fn put(&self, name: &str, data: Vec<u8>, signer: Option<&Gpg>) {
        let p = format!("/amd64-usr/{V}/{name}");
        self.server
            .set(&format!("{p}.sig"), signer.unwrap_or(&self.gpg).sign(&data));
        self.server.set(&p, data);
    }
    fn path(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    }
    fn cmd(&self, cache: &Path, env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(BIN);
        c.args(["--release-url", &self.server.url()])
            .args(["--bakery-url", &self.server.url()])
            .arg("--signing-key")
            .arg(self.dir.path().join("key.asc"))
            .arg("--image-cache")
            .arg(cache);
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }
    /// `flatbake --fetch --release V --vendor qemu_uefi wasmtime:...` into `out`.
    fn bake(&self, cache: &Path, out: &Path, env: &[(&str, &str)]) -> Output {
        self.cmd(cache, env)
            .args(["--fetch", "--release", V, "--vendor", "qemu_uefi"])
            .arg("--output-dir")
            .arg(out)
            .arg("--json")
            .arg(out.join("result.json"))
            .arg(format!("wasmtime:{WASM}"))
            .output()
            .expect("run")
    }
}

/// The one `error:` line of a failed run.
fn error_line(o: &Output) -> String {
    assert!(!o.status.success(), "succeeded: {}", stderr(o));
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    lines[0].to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `qemu-img check` passes on the qcow2 at `p`.
fn qemu_check(p: &Path) {
    let o = sh(Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(p));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("No errors were found"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// Partition numbers of the Flatcar layout with their sha256 in `raw`.
fn partition_sums(raw: &Path) -> BTreeMap<u32, String> {
    [ESP, BIOS, USR_A, USR_B, OEM, OEM_CONFIG, ROOT]
        .into_iter()
        .map(|n| {
            let (off, len) = part(raw, n);
            (n, sha256_range(raw, off, len))
        })
        .collect()
}

/// The bytes outside every partition (GPT headers and tables, MBR): equal?
fn outside_partitions_equal(a: &Path, b: &Path) {
    let (first, _) = part(a, ESP);
    assert_eq!(sha256_range(a, 0, first), sha256_range(b, 0, first));
    let la = std::fs::metadata(a).expect("a").len();
    let lb = std::fs::metadata(b).expect("b").len();
    assert_eq!(la, lb, "virtual sizes");
    let (ro, rl) = part(a, ROOT);
    assert_eq!(
        sha256_range(a, ro + rl, la - ro - rl),
        sha256_range(b, ro + rl, lb - ro - rl),
        "backup GPT"
    );
}

#[test]
fn fast_path_keeps_the_published_image_outside_the_edit() {
    let st = Setup::new(true);
    let cache = st.path("cache");
    let out = st.path("out");
    let o = st.bake(&cache, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("source: published qemu_uefi image (fast path)"),
        "{}",
        stdout(&o)
    );
    // the generic image was never downloaded
    let generic: Vec<_> = st
        .server
        .log()
        .into_iter()
        .filter(|r| r.path.contains(BZ2))
        .collect();
    assert!(generic.is_empty(), "{generic:?}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("result.json")).expect("json"))
            .expect("parse");
    assert_eq!(json["source"], "published qemu_uefi image (fast path)");
    // clusters were kept verbatim: the note says how many
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.contains("compressed clusters copied verbatim"))
        .unwrap_or_else(|| panic!("{err}"));
    let kept: u64 = line
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .expect("count");
    assert!(kept > 0, "{line}");

    let baked = out.join(IMG);
    qemu_check(&baked);
    let raw = st.dir.path().join("baked.raw");
    guest_raw(&baked, &raw);
    let pub_raw = st.dir.path().join("published.raw");
    guest_raw(published(), &pub_raw);
    sgdisk_verify(&raw);
    e2fsck_root(&raw);
    let _oem = oem_tree(&raw); // btrfs check --readonly on OEM
                               // every partition the plan did not touch is the published image's, byte for byte
    let (a, b) = (partition_sums(&raw), partition_sums(&pub_raw));
    for n in [ESP, BIOS, USR_A, USR_B, OEM, OEM_CONFIG] {
        assert_eq!(
            a[&n], b[&n],
            "partition {n} differs from the published image"
        );
    }
    assert_ne!(a[&ROOT], b[&ROOT], "ROOT was not edited");
    outside_partitions_equal(&raw, &pub_raw);
    // the plan, read back
    assert_eq!(
        root_file(&raw, &format!("/opt/extensions/wasmtime/{WASM}")),
        std::fs::read(sysext(WASM)).expect("w")
    );
    assert_eq!(
        root_link(&raw, "/etc/extensions/wasmtime.raw").as_deref(),
        Some(format!("/opt/extensions/wasmtime/{WASM}").as_str())
    );
    assert_eq!(
        root_file(&raw, "/etc/sysupdate.wasmtime.d/wasmtime.conf"),
        std::fs::read(sysext("wasmtime.conf")).expect("c")
    );
    // the launcher and firmware are there as on the generic path
    for f in [
        "flatcar_production_qemu_uefi.sh",
        "flatcar_production_qemu_uefi_efi_code.qcow2",
        "flatcar_production_qemu_image.img",
    ] {
        assert!(std::fs::symlink_metadata(out.join(f)).is_ok(), "{f}");
    }

    // the same request through the generic path
    let out2 = st.path("out-generic");
    let o = st.bake(&cache, &out2, &[("FLATBAKE_FAST_PATH", "0")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("source: generic image"),
        "{}",
        stdout(&o)
    );
    let raw2 = st.dir.path().join("generic.raw");
    guest_raw(&out2.join(IMG), &raw2);
    // qemu-img compare: the guest disks agree outside ROOT and OEM. ROOT's ext4 holds
    // the same files but differs in block placement (the generic path edits the small
    // base ROOT, then grows it; the fast path edits the grown one), and the generic
    // path rebuilds OEM's btrfs for the vendor (new generation and timestamps).
    let c = Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&raw)
        .arg(&raw2)
        .output()
        .expect("compare");
    let (g, f) = (partition_sums(&raw2), partition_sums(&raw));
    for n in [ESP, BIOS, USR_A, USR_B, OEM_CONFIG] {
        assert_eq!(g[&n], f[&n], "partition {n}: fast and generic paths differ");
    }
    if c.status.code() != Some(0) {
        assert_eq!(c.status.code(), Some(1), "{}", stderr(&c));
    }
    outside_partitions_equal(&raw, &raw2);
    for p in [
        format!("/opt/extensions/wasmtime/{WASM}"),
        "/etc/sysupdate.wasmtime.d/wasmtime.conf".to_string(),
    ] {
        assert_eq!(root_file(&raw, &p), root_file(&raw2, &p), "{p}");
    }
    let (t1, t2) = (oem_tree(&raw), oem_tree(&raw2));
    let files = |d: &Path| -> BTreeMap<PathBuf, String> {
        list_files(d)
            .into_iter()
            .map(|p| {
                let sum = std::fs::read(d.join(&p)).map(|b| sha256(&b));
                (p, sum.unwrap_or_default())
            })
            .collect()
    };
    assert_eq!(
        files(&t1.path().join("tree")),
        files(&t2.path().join("tree"))
    );
    // keeping the published clusters costs no size: the fast path's qcow2 is no larger
    // than the generic path's (plus two clusters of table alignment)
    let (mine, generic) = (
        std::fs::metadata(&baked).expect("m").len(),
        std::fs::metadata(out2.join(IMG)).expect("g").len(),
    );
    assert!(
        mine <= generic + 2 * 65536,
        "{mine} vs generic path {generic}"
    );
}

#[test]
fn prefetch_then_offline_bake_as_nobody() {
    let st = Setup::new(true);
    sh(Command::new("chmod").arg("0777").arg(st.dir.path()));
    let cache = st.dir.path().join("nobody-cache");
    let out = st.dir.path().join("nobody-out");
    let nobody = |args: &[&str]| -> Output {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            BIN,
        ]);
        let rest = match args.split_first() {
            Some((&"fetch", rest)) => {
                c.arg("fetch");
                rest
            }
            _ => args,
        };
        c.args(["--release", V, "--release-url", &st.server.url()])
            .args(["--bakery-url", &st.server.url()])
            .arg("--signing-key")
            .arg(st.dir.path().join("key.asc"))
            .arg("--image-cache")
            .arg(&cache)
            .args(rest)
            .env("HOME", st.dir.path());
        c.output().expect("setpriv")
    };
    let o = nobody(&[
        "fetch",
        "--vendor",
        "qemu_uefi",
        &format!("wasmtime:{WASM}"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rel = cache.join("amd64-usr").join(V);
    assert!(rel.join(IMG).is_file());
    assert!(rel.join(format!("{IMG}.verified")).is_file());
    assert!(!rel.join(BZ2).exists(), "the generic image was fetched");
    st.server.clear_log();
    sh(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg("mkdir")
        .arg(&out));
    let o = nobody(&[
        "--fetch",
        "--vendor",
        "qemu_uefi",
        "--output-dir",
        out.to_str().expect("utf-8"),
        &format!("wasmtime:{WASM}"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("(fast path)"), "{}", stdout(&o));
    let release_requests: Vec<_> = st
        .server
        .log()
        .into_iter()
        .filter(|r| r.path.starts_with("/amd64-usr/") || r.path.ends_with(".raw"))
        .collect();
    assert!(release_requests.is_empty(), "{release_requests:?}");
    qemu_check(&out.join(IMG));
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
}

#[test]
fn fallback_when_not_published_or_unsigned() {
    // not published
    let st = Setup::new(false);
    let out = st.path("out");
    let o = st.bake(&st.path("cache"), &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let fell_back: Vec<String> = stderr(&o)
        .lines()
        .filter(|l| l.contains("generic image, not the published"))
        .map(str::to_owned)
        .collect();
    assert_eq!(fell_back.len(), 1, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("source: generic image"),
        "{}",
        stdout(&o)
    );
    qemu_check(&out.join(IMG));
    // the answer is remembered: a re-run of the exact version downloads nothing
    st.server.clear_log();
    let o = st.bake(&st.path("cache"), &st.path("out-again"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let again: Vec<_> = st
        .server
        .log()
        .into_iter()
        .filter(|r| r.path.starts_with("/amd64-usr/"))
        .collect();
    assert!(again.is_empty(), "{again:?}");

    // published without its signature
    let st = Setup::new(true);
    st.server.remove(&format!("/amd64-usr/{V}/{IMG}.sig"));
    let out = st.path("out");
    let o = st.bake(&st.path("cache"), &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("no signature"), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("source: generic image"),
        "{}",
        stdout(&o)
    );
    // a layout-changing request (kernel arguments rewrite the vendor's grub.cfg)
    let out = st.path("out-karg");
    let o = st
        .cmd(&st.path("cache2"), &[])
        .args(["--fetch", "--release", V, "--vendor", "qemu_uefi"])
        .args(["--kernel-arg", "console=ttyS0"])
        .arg("--output-dir")
        .arg(&out)
        .arg(format!("wasmtime:{WASM}"))
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("--kernel-arg"), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("source: generic image"),
        "{}",
        stdout(&o)
    );
}

/// A refused run: one error line naming `what`, nothing in `out`, nothing of the
/// published image kept in the cache.
fn assert_refused(st: &Setup, o: &Output, out: &Path, cache: &Path, what: &str) {
    let line = error_line(o);
    assert!(line.contains(what), "{line}");
    assert!(line.contains(IMG), "{line}");
    let left: Vec<_> = std::fs::read_dir(out)
        .expect("out")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let rel = cache.join("amd64-usr").join(V);
    assert!(!rel.join(IMG).exists(), "refused image kept");
    assert!(
        !rel.join("flatcar_production_qemu_uefi_image.bin").exists(),
        "refused raw kept"
    );
    let _ = st;
}

#[test]
fn hostile_published_images_are_refused() {
    let st = Setup::new(true);
    let mut n = 0;
    let mut run = |st: &Setup| -> (Output, PathBuf, PathBuf) {
        n += 1;
        let out = st.path(&format!("out{n}"));
        let cache = st.path(&format!("cache{n}"));
        (st.bake(&cache, &out, &[]), out, cache)
    };

    // a validly signed image of another version under the right name
    let other = st.dir.path().join("other.bin");
    sh(Command::new("bash")
        .arg(format!(
            "{}/scripts/make-fixture-image.sh",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(&other)
        .args(["--version", "4459.2.4"]));
    let q = st.dir.path().join("other.qcow2");
    qcow2_of(&other, &q);
    st.put(IMG, std::fs::read(&q).expect("q"), None);
    let (o, out, cache) = run(&st);
    assert_refused(&st, &o, &out, &cache, "4459.2.4");

    // another architecture
    let arm = st.dir.path().join("arm.bin");
    sh(Command::new("bash")
        .arg(format!(
            "{}/scripts/make-fixture-image.sh",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(&arm)
        .args(["--arch", "arm64"]));
    let q = st.dir.path().join("arm.qcow2");
    qcow2_of(&arm, &q);
    st.put(IMG, std::fs::read(&q).expect("q"), None);
    let (o, out, cache) = run(&st);
    assert_refused(&st, &o, &out, &cache, "arm64");

    let good = std::fs::read(published()).expect("p");
    // signed by a key that is not trusted
    let stranger = Gpg::primary_signer("someone else <x@localhost>");
    st.put(IMG, good.clone(), Some(&stranger));
    let (o, out, cache) = run(&st);
    let line = error_line(&o);
    assert!(line.contains(IMG), "{line}");
    assert!(!cache.join("amd64-usr").join(V).join(IMG).exists());
    assert!(std::fs::read_dir(&out).expect("out").next().is_none());

    // a truncated qcow2, validly signed
    st.put(IMG, good[..good.len() / 2].to_vec(), None);
    let (o, out, cache) = run(&st);
    assert_refused(&st, &o, &out, &cache, "");

    // compressed data damaged (past the tables), validly signed
    let mut bad = good.clone();
    let from = bad.len() / 2;
    for b in bad[from..from + 4096].iter_mut() {
        *b ^= 0x5a;
    }
    st.put(IMG, bad, None);
    let (o, out, cache) = run(&st);
    assert_refused(&st, &o, &out, &cache, "");

    // garbage under the name
    st.put(IMG, noise(1 << 20, 7), None);
    let (o, out, cache) = run(&st);
    assert_refused(&st, &o, &out, &cache, "not a qcow2");
}
