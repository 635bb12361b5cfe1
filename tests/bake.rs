//! End-to-end: bake sysexts into fixture Flatcar images with the `flatbake` binary and
//! judge the results with sgdisk, e2fsck, debugfs, btrfs check/restore and
//! systemd-sysext.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

struct Baked {
    _dir: tempfile::TempDir,
    out: PathBuf,
}

fn bake_ok(input: &Path, args: &[&str]) -> Baked {
    bake_with("rootless", input, args)
}

fn bake_with(backend: &str, input: &Path, args: &[&str]) -> Baked {
    let dir = tempfile::tempdir().expect("tmp");
    let mut all = vec!["--backend", backend];
    all.extend_from_slice(args);
    let (out, _) = bake_into(dir.path(), input, &all);
    Baked { _dir: dir, out }
}

fn arg(name: &str, file: &Path) -> String {
    format!("{name}:{}", file.display())
}

/// Every partition other than `changed`, the MBR, and both GPTs are byte-identical.
fn assert_untouched_except(input: &Path, output: &Path, changed: &[u32]) {
    for n in [ESP, BIOS, USR_A, USR_B, OEM, OEM_CONFIG, ROOT] {
        if changed.contains(&n) {
            continue;
        }
        let (off, size) = part(input, n);
        assert_eq!(part(output, n), (off, size));
        assert_eq!(
            sha256_range(input, off, size),
            sha256_range(output, off, size),
            "partition {n} changed"
        );
    }
    // MBR (boot code included), primary GPT header and entries
    assert_eq!(
        sha256_range(input, 0, 34 * 512),
        sha256_range(output, 0, 34 * 512),
        "MBR/GPT changed"
    );
    let len = std::fs::metadata(input).expect("meta").len();
    assert_eq!(std::fs::metadata(output).expect("meta").len(), len);
    assert_eq!(
        sha256_range(input, len - 33 * 512, 33 * 512),
        sha256_range(output, len - 33 * 512, 33 * 512)
    );
}

#[test]
fn bakes_into_root_and_oem() {
    bakes_into_root_and_oem_with("rootless");
}

#[test]
fn bakes_into_root_and_oem_mount_backend() {
    let b = bakes_into_root_and_oem_with("mount");
    // the kernel wrote OEM in place: its compression=zlib root property survives
    let (off, size) = part(&b.out, OEM);
    let dir = tempfile::tempdir().expect("tmp");
    let raw = dir.path().join("oem.img");
    copy_partition(&b.out, off, size, &raw);
    let dump = sh(Command::new("btrfs")
        .args(["inspect-internal", "dump-tree", "-t", "fs"])
        .arg(&raw));
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        text.contains("name: btrfs.compression"),
        "compression property lost"
    );
    // no loop device is left attached to this run's files (other tests may hold their
    // own right now); autoclear detaches asynchronously, so give the kernel a moment
    let dir = b.out.parent().expect("dir").display().to_string();
    let mine = || {
        let l = sh(Command::new("losetup").arg("-a"));
        String::from_utf8_lossy(&l.stdout)
            .lines()
            .filter(|l| l.contains(&dir))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let mut left = mine();
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        left = mine();
    }
    assert!(left.is_empty(), "loop devices left: {left:?}");
}

fn bakes_into_root_and_oem_with(backend: &str) -> Baked {
    let input = fixtures().join("current.bin");
    let before = sha256_file(&input);
    let wasm = sysext("wasmtime-v24.0.0-x86-64.raw");
    let myext = sysext("myext-1.0-x86-64.raw");
    let b = bake_with(
        backend,
        &input,
        &[
            "--install-to",
            "myext=oem:/sysext/",
            &arg("wasmtime", &wasm),
            &arg("myext", &myext),
        ],
    );
    assert_eq!(sha256_file(&input), before, "the input image was modified");

    sgdisk_verify(&b.out);
    e2fsck_root(&b.out);
    assert_untouched_except(&input, &b.out, &[ROOT, OEM]);

    // ROOT: the image, its symlink, its sysupdate config; owned by root, 0644
    let path = "/opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw";
    assert_eq!(root_file(&b.out, path), std::fs::read(&wasm).expect("read"));
    assert_eq!(
        root_link(&b.out, "/etc/extensions/wasmtime.raw").as_deref(),
        Some(path)
    );
    assert_eq!(
        root_file(&b.out, "/etc/sysupdate.wasmtime.d/wasmtime.conf"),
        std::fs::read(sysext("wasmtime.conf")).expect("conf")
    );
    assert_eq!(root_owner_mode(&b.out, path), ("0644".to_owned(), 0, 0));
    assert_eq!(root_owner_mode(&b.out, "/etc/extensions").1, 0);

    // OEM: passes btrfs check, holds the file; the symlink in ROOT points at /oem/...
    let oem = oem_tree(&b.out);
    let f = oem.path().join("tree/sysext/myext-1.0-x86-64.raw");
    assert_eq!(sha256_file(&f), sha256_file(&myext));
    assert_eq!(
        root_link(&b.out, "/etc/extensions/myext.raw").as_deref(),
        Some("/oem/sysext/myext-1.0-x86-64.raw")
    );
    // OEM keeps its label and UUID
    let (off, _) = part(&b.out, OEM);
    let (ioff, _) = part(&input, OEM);
    let sb = |img: &Path, off: u64| {
        sha256_range(img, off + 0x10000 + 0x20, 16) + &sha256_range(img, off + 0x10000 + 0x12B, 16)
    };
    assert_eq!(
        sb(&b.out, off),
        sb(&input, ioff),
        "OEM UUID or label changed"
    );
    b
}

#[test]
fn rebake_replaces_and_keeps_everything_else() {
    rebake_with("rootless");
}

#[test]
fn rebake_replaces_and_keeps_everything_else_mount_backend() {
    rebake_with("mount");
}

fn rebake_with(backend: &str) {
    let input = fixtures().join("current.bin");
    let first = bake_with(
        backend,
        &input,
        &[
            "--install-to",
            "myext=oem:/sysext",
            &arg("wasmtime", &sysext("wasmtime-v24.0.0-x86-64.raw")),
            &arg("myext", &sysext("myext-1.0-x86-64.raw")),
        ],
    );
    // Files flatbake did not write: a private file owned by uid 1000 and a symlink.
    let (off, _) = part(&first.out, ROOT);
    let extra = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(extra.path(), b"keep me\n").expect("write");
    let cmds = format!(
        "mkdir /home\nmkdir /home/core\nwrite {} /home/core/note\nsif /home/core/note uid 1000\nsif /home/core/note gid 1000\nsif /home/core/note mode 0100600\nsymlink /etc/keep.link /home/core/note\n",
        extra.path().display()
    );
    let script = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(script.path(), cmds).expect("write");
    sh(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(script.path())
        .arg(format!("{}?offset={off}", first.out.display())));

    // Second run: a new wasmtime version, one more extension into OEM.
    let dir = tempfile::tempdir().expect("tmp");
    let v25 = dir.path().join("wasmtime-v25.0.0-x86-64.raw");
    std::fs::copy(sysext("wasmtime-v24.0.0-x86-64.raw"), &v25).expect("copy");
    let second = bake_with(
        backend,
        &first.out,
        &[
            "--install-to",
            "docker=oem:/sysext",
            &arg("wasmtime", &v25),
            &arg("docker", &sysext("docker-27.0.1-x86-64.raw")),
        ],
    );
    e2fsck_root(&second.out);
    sgdisk_verify(&second.out);
    let new = "/opt/extensions/wasmtime/wasmtime-v25.0.0-x86-64.raw";
    assert_eq!(
        root_link(&second.out, "/etc/extensions/wasmtime.raw").as_deref(),
        Some(new)
    );
    assert_eq!(
        root_file(&second.out, new),
        std::fs::read(&v25).expect("read")
    );
    let ls = debugfs(&second.out, "ls /opt/extensions/wasmtime");
    assert!(
        !ls.contains("wasmtime-v24.0.0"),
        "old image not removed: {ls}"
    );
    // the conf from the first run stays (the second run gave none)
    assert!(!root_file(&second.out, "/etc/sysupdate.wasmtime.d/wasmtime.conf").is_empty());
    // foreign files keep content, owner, mode; symlinks stay
    assert_eq!(root_file(&second.out, "/home/core/note"), b"keep me\n");
    assert_eq!(
        root_owner_mode(&second.out, "/home/core/note"),
        ("0600".to_owned(), 1000, 1000)
    );
    assert_eq!(
        root_link(&second.out, "/etc/keep.link").as_deref(),
        Some("/home/core/note")
    );
    // OEM keeps the first run's extension and gains the new one
    let oem = oem_tree(&second.out);
    assert_eq!(
        sha256_file(&oem.path().join("tree/sysext/myext-1.0-x86-64.raw")),
        sha256_file(&sysext("myext-1.0-x86-64.raw"))
    );
    assert_eq!(
        sha256_file(&oem.path().join("tree/sysext/docker-27.0.1-x86-64.raw")),
        sha256_file(&sysext("docker-27.0.1-x86-64.raw"))
    );
    assert_eq!(
        root_link(&second.out, "/etc/extensions/myext.raw").as_deref(),
        Some("/oem/sysext/myext-1.0-x86-64.raw")
    );
}

#[test]
fn old_lts_layout_with_hybrid_mbr() {
    let input = fixtures().join("lts.bin");
    let b = bake_ok(
        &input,
        &[&arg("wasmtime", &sysext("wasmtime-v24.0.0-x86-64.raw"))],
    );
    sgdisk_verify(&b.out);
    e2fsck_root(&b.out);
    assert_untouched_except(&input, &b.out, &[ROOT]);
    assert_ne!(
        part(&input, ROOT),
        part(&fixtures().join("current.bin"), ROOT)
    );
    assert_eq!(
        root_file(
            &b.out,
            "/opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw"
        ),
        std::fs::read(sysext("wasmtime-v24.0.0-x86-64.raw")).expect("read")
    );
}

#[test]
fn erofs_sysext() {
    let dir = tempfile::tempdir().expect("tmp");
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("usr/lib/extension-release.d")).expect("mkdir");
    std::fs::create_dir_all(tree.join("usr/bin")).expect("mkdir");
    std::fs::write(
        tree.join("usr/lib/extension-release.d/extension-release.erx"),
        "ID=flatcar\nSYSEXT_LEVEL=1.0\nARCHITECTURE=x86-64\n",
    )
    .expect("w");
    std::fs::write(tree.join("usr/bin/erx"), "#!/bin/sh\necho erx\n").expect("w");
    let raw = dir.path().join("erx-1-x86-64.raw");
    sh(Command::new("mkfs.erofs")
        .arg("--quiet")
        .arg("--all-root")
        .arg(&raw)
        .arg(&tree));
    let b = bake_ok(&fixtures().join("current.bin"), &[&arg("erx", &raw)]);
    e2fsck_root(&b.out);
    assert_eq!(
        root_file(&b.out, "/opt/extensions/erx/erx-1-x86-64.raw"),
        std::fs::read(&raw).expect("read")
    );
    // and a misnamed EROFS image is refused like a squashfs one
    let o = flatbake(&[
        "--image",
        fixtures().join("current.bin").to_str().expect("p"),
        "-o",
        dir.path().join("x.bin").to_str().expect("p"),
        &arg("other", &raw),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("extension-release.erx"),
        "{}",
        stderr(&o)
    );
}

/// systemd-sysext itself merges what was baked: a throwaway root with the image's /usr
/// (from USR-A) and the baked /etc/extensions (symlinks resolved, see notes section 7).
#[test]
fn systemd_sysext_merges_the_baked_extension() {
    let input = fixtures().join("current.bin");
    let b = bake_ok(
        &input,
        &[&arg("wasmtime", &sysext("wasmtime-v24.0.0-x86-64.raw"))],
    );
    let root = tempfile::tempdir().expect("tmp");
    // /usr from USR-A
    let (off, size) = part(&b.out, USR_A);
    let usr_img = root.path().join("usr.img");
    copy_partition(&b.out, off, size, &usr_img);
    let sysroot = root.path().join("sysroot");
    std::fs::create_dir_all(sysroot.join("usr")).expect("mkdir");
    sh(Command::new("btrfs")
        .arg("restore")
        .arg("-m")
        .arg("-S")
        .arg(&usr_img)
        .arg(sysroot.join("usr")));
    // /etc/extensions from ROOT, resolving the symlink flatbake wrote
    let target = root_link(&b.out, "/etc/extensions/wasmtime.raw").expect("symlink");
    std::fs::create_dir_all(sysroot.join("etc/extensions")).expect("mkdir");
    std::fs::write(
        sysroot.join("etc/extensions/wasmtime.raw"),
        root_file(&b.out, &target),
    )
    .expect("write");
    // systemd 252 silently skips an extension it refuses; "Using extensions" names
    // the ones it accepted. /run must be a mount point: use a private mount namespace.
    let script = format!(
        "set -e; mount -t tmpfs tmpfs /run; systemd-sysext --root={} merge 2>&1",
        sysroot.display()
    );
    let out = sh(Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Using extensions 'wasmtime'"),
        "systemd-sysext did not accept it: {text}"
    );
}

#[test]
fn rootless_as_nobody() {
    let input = fixtures().join("current.bin");
    let dir = tempfile::tempdir().expect("tmp");
    sh(Command::new("chmod").arg("0777").arg(dir.path()));
    let out = dir.path().join("out.bin");
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(BIN)
        .arg("--image")
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .args(["--install-to", "myext=oem:/sysext"])
        .arg(arg("wasmtime", &sysext("wasmtime-v24.0.0-x86-64.raw")))
        .arg(arg("myext", &sysext("myext-1.0-x86-64.raw")))
        .env("HOME", dir.path())
        .output()
        .expect("setpriv");
    assert!(o.status.success(), "rootless bake failed: {}", stderr(&o));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&out).expect("out").uid(),
        65534,
        "did not run unprivileged"
    );
    sgdisk_verify(&out);
    e2fsck_root(&out);
    let path = "/opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw";
    assert_eq!(root_owner_mode(&out, path), ("0644".to_owned(), 0, 0));
    assert_eq!(root_owner_mode(&out, "/opt/extensions").1, 0);
    assert_eq!(root_owner_mode(&out, "/etc/extensions/wasmtime.raw").1, 0);
    let oem = oem_tree(&out);
    let f = oem.path().join("tree/sysext/myext-1.0-x86-64.raw");
    let m = std::fs::metadata(&f).expect("oem file");
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 0, 0o644));
    assert_eq!(
        std::fs::metadata(oem.path().join("tree/sysext"))
            .expect("dir")
            .uid(),
        0
    );
}

/// Detaches a loop device when dropped, even if the test fails.
struct Loop(String);
impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// mkfs.btrfs refuses a UUID it sees on a block device; as root it sees a loop device
/// holding the same OEM (another bake, or the Flatcar host's own /oem). The rebuild
/// must still keep the image's UUID.
#[test]
fn oem_rebuild_while_the_same_oem_is_attached() {
    let input = fixtures().join("current.bin");
    let (off, size) = part(&input, OEM);
    let out = sh(Command::new("losetup")
        .args([
            "-f",
            "--show",
            "-r",
            "-o",
            &off.to_string(),
            "--sizelimit",
            &size.to_string(),
        ])
        .arg(&input));
    let _lo = Loop(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    let b = bake_ok(
        &input,
        &[
            "--install-to",
            "oem:/sysext",
            &arg("myext", &sysext("myext-1.0-x86-64.raw")),
        ],
    );
    let oem = oem_tree(&b.out);
    assert!(oem
        .path()
        .join("tree/sysext/myext-1.0-x86-64.raw")
        .is_file());
    let (ooff, _) = part(&b.out, OEM);
    assert_eq!(
        sha256_range(&b.out, ooff + 0x10020, 16),
        sha256_range(&input, off + 0x10020, 16),
        "OEM UUID changed"
    );
}
