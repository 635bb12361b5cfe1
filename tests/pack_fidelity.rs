//! `flatbake sysext pack` writes faithful images, judged by outside tools: no stale data
//! past the squashfs (file size = `bytes_used` padded to 4 KiB, within 1 % of mksquashfs
//! on the same content), xattrs such as `security.capability` kept in squashfs and EROFS
//! (unsquashfs + getfattr, fsck.erofs, the kernel through `systemd-sysext merge`), EROFS
//! compressed and fsck-clean, and the same bytes for the same tree whatever its mtimes.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

/// `flatbake sysext check` accepts `img` as the extension `app` for x86-64.
fn check_ok(img: &Path) {
    let o = flatbake(&[
        "sysext",
        "check",
        s(img),
        "--name",
        "app",
        "--arch",
        "x86-64",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

/// A tree shaped like a sysext: a few binaries, text, and duplicate large files.
fn tree(dir: &Path) -> PathBuf {
    let t = dir.join("tree");
    let big = noise(3 << 20, 1);
    write(&t.join("opt/app/data-a"), &big, 0o644);
    write(&t.join("opt/app/data-b"), &big, 0o644);
    write(&t.join("opt/app/data-c"), &big, 0o644);
    let mut text = Vec::new();
    for i in 0..40_000 {
        text.extend_from_slice(format!("line {i}: the quick brown fox {}\n", i % 97).as_bytes());
    }
    write(&t.join("usr/share/app/notes.txt"), &text, 0o644);
    for i in 0..30 {
        let mut v = noise(2000 + i * 300, 100 + i as u64);
        v.extend_from_slice(&text[..5000]);
        write(&t.join(format!("usr/lib/app/small-{i}")), &v, 0o644);
    }
    write(
        &t.join("usr/bin/app"),
        &std::fs::read("/usr/bin/ls").expect("ls"),
        0o755,
    );
    t
}

fn unsquashfs_bytes_used(img: &Path) -> u64 {
    let out = sh(Command::new("unsquashfs").arg("-s").arg(img));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("Filesystem size "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no filesystem size in {text}"))
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).expect("stat").len()
}

fn pack(src: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec![
        "sysext",
        "pack",
        s(src),
        "--name",
        "app",
        "--version",
        "1",
        "--arch",
        "x86-64",
        "-o",
        s(out),
    ];
    args.extend_from_slice(extra);
    let o = flatbake(&args);
    assert!(o.status.success(), "pack {extra:?}: {}", stderr(&o));
}

#[test]
fn squashfs_has_no_stale_data_and_matches_mksquashfs_size() {
    let d = tempfile::tempdir().expect("tmp");
    let t = tree(d.path());
    for comp in ["gzip", "zstd", "xz", "lz4"] {
        let img = d.path().join(format!("fb-{comp}.raw"));
        pack(&t, &img, &["--compression", comp]);
        let used = unsquashfs_bytes_used(&img);
        let len = size(&img);
        assert_eq!(
            len,
            used.div_ceil(4096) * 4096,
            "{comp}: file {len} bytes, filesystem {used} bytes"
        );
        // the bytes past the filesystem are padding zeros
        let bytes = std::fs::read(&img).expect("read");
        assert!(bytes[used as usize..].iter().all(|&b| b == 0), "{comp}");
        // mksquashfs on exactly the image's content (extracted), same settings
        let ex = d.path().join(format!("ex-{comp}"));
        sh(Command::new("unsquashfs")
            .arg("-q")
            .arg("-d")
            .arg(&ex)
            .arg(&img));
        let mk = d.path().join(format!("mk-{comp}.raw"));
        mksquashfs_reference(&ex, &mk, comp, &[]);
        let (a, b) = (len as f64, size(&mk) as f64);
        assert!(
            (a - b).abs() / b <= 0.01,
            "{comp}: flatbake {len} bytes vs mksquashfs {} bytes",
            size(&mk)
        );
        // the extracted data is the source's
        assert_eq!(
            std::fs::read(ex.join("opt/app/data-c")).expect("read"),
            std::fs::read(t.join("opt/app/data-a")).expect("read")
        );
    }
}

fn getfattr(p: &Path) -> String {
    let out = sh(Command::new("getfattr")
        .args(["-d", "-m", "-", "-e", "hex", "--absolute-names"])
        .arg(p));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A tree with a `setcap` binary and a user xattr on a file and a directory.
fn xattr_tree(dir: &Path) -> PathBuf {
    let t = dir.join("xtree");
    write(
        &t.join("usr/bin/ping"),
        &std::fs::read("/usr/bin/ls").expect("ls"),
        0o755,
    );
    write(&t.join("usr/share/x/readme"), b"hello\n", 0o644);
    sh(Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(t.join("usr/bin/ping")));
    sh(Command::new("setfattr")
        .args(["-n", "user.flatbake", "-v", "kept"])
        .arg(t.join("usr/share/x/readme")));
    sh(Command::new("setfattr")
        .args(["-n", "user.dir", "-v", "d"])
        .arg(t.join("usr/share/x")));
    t
}

#[test]
fn squashfs_keeps_xattrs() {
    let d = tempfile::tempdir().expect("tmp");
    let t = xattr_tree(d.path());
    let img = d.path().join("x.raw");
    pack(&t, &img, &[]);
    let ex = d.path().join("ex");
    sh(Command::new("unsquashfs")
        .arg("-q")
        .arg("-d")
        .arg(&ex)
        .arg(&img));
    for p in ["usr/bin/ping", "usr/share/x/readme", "usr/share/x"] {
        assert_eq!(getfattr(&ex.join(p)), getfattr(&t.join(p)), "{p}");
    }
    assert!(getfattr(&ex.join("usr/bin/ping")).contains("security.capability="));
    // still root-owned, fixed time, and file size at bytes_used
    let l = sh(Command::new("unsquashfs").arg("-lln").arg(&img));
    let l = String::from_utf8_lossy(&l.stdout).into_owned();
    assert!(l.contains("-rwxr-xr-x 0/0"), "{l}");
    assert!(
        l.contains("1970-01-01 00:00 squashfs-root/usr/bin/ping"),
        "{l}"
    );
    assert_eq!(
        size(&img),
        unsquashfs_bytes_used(&img).div_ceil(4096) * 4096
    );
    // the kernel sees the capability on the merged file
    let out = sysext_merge(&[("app", &img)], "getcap ROOT/usr/bin/ping");
    assert!(out.contains("cap_net_raw=ep"), "{out}");
}

#[test]
fn erofs_is_compressed_clean_and_keeps_xattrs() {
    let d = tempfile::tempdir().expect("tmp");
    let t = xattr_tree(d.path());
    let mut text = Vec::new();
    for i in 0..60_000 {
        text.extend_from_slice(format!("{i} compressible line of text\n").as_bytes());
    }
    write(&t.join("usr/share/x/big.txt"), &text, 0o644);
    let img = d.path().join("x.raw");
    pack(&t, &img, &["--format", "erofs"]);
    sh(Command::new("fsck.erofs").arg(&img));
    // compressed: far smaller than the text alone
    assert!(
        size(&img) < text.len() as u64 / 2,
        "{} bytes for {} bytes of text",
        size(&img),
        text.len()
    );
    let ex = d.path().join("ex");
    sh(Command::new("fsck.erofs")
        .arg(format!("--extract={}", s(&ex)))
        .arg(&img));
    assert_eq!(
        std::fs::read(ex.join("usr/share/x/big.txt")).expect("read"),
        text
    );
    // flatbake's own check still reads it
    check_ok(&img);
    // xattrs, as the kernel reads them from the merged extension
    let out = sysext_merge(
        &[("app", &img)],
        "getcap ROOT/usr/bin/ping; getfattr -d --absolute-names ROOT/usr/share/x/readme ROOT/usr/share/x",
    );
    assert!(out.contains("cap_net_raw=ep"), "{out}");
    assert!(out.contains("user.flatbake=\"kept\""), "{out}");
    assert!(out.contains("user.dir=\"d\""), "{out}");
    // lz4 and none are selectable; a squashfs-only compressor is refused for EROFS
    // only when this mkfs.erofs lacks it, with the list
    let lz4 = d.path().join("lz4.raw");
    pack(&t, &lz4, &["--format", "erofs", "--compression", "lz4"]);
    sh(Command::new("fsck.erofs").arg(&lz4));
    let none = d.path().join("none.raw");
    pack(&t, &none, &["--format", "erofs", "--compression", "none"]);
    sh(Command::new("fsck.erofs").arg(&none));
    assert!(size(&none) > size(&img));
    let err = flatbake_refused(&[
        "sysext",
        "pack",
        s(&t),
        "--name",
        "app",
        "--version",
        "1",
        "--arch",
        "x86-64",
        "-o",
        s(&d.path().join("bad.raw")),
        "--compression",
        "lz4hc",
    ]);
    assert!(
        err.contains("squashfs takes gzip, xz, zstd or lz4"),
        "{err}"
    );
    assert!(!d.path().join("bad.raw").exists());
}

fn touch_all(dir: &Path, when: &str) {
    sh(Command::new("find")
        .arg(dir)
        .args(["-exec", "touch", "-h", "-d", when, "{}", "+"]));
}

#[test]
fn same_tree_same_bytes_whatever_the_mtimes() {
    let d = tempfile::tempdir().expect("tmp");
    let plain = tree(d.path());
    let x = xattr_tree(d.path());
    for (src, extra) in [
        (&plain, &["--format", "squashfs"][..]),
        (&x, &["--format", "squashfs"][..]),
        (&plain, &["--format", "erofs"][..]),
        (&x, &["--format", "erofs"][..]),
    ] {
        let a = d.path().join("a.raw");
        let b = d.path().join("b.raw");
        touch_all(src, "2001-02-03 04:05:06");
        pack(src, &a, extra);
        touch_all(src, "2019-09-09 09:09:09");
        pack(src, &b, extra);
        assert_eq!(
            sha256_file(&a),
            sha256_file(&b),
            "{extra:?} of {}",
            src.display()
        );
    }
    // SOURCE_DATE_EPOCH is every timestamp
    let img = d.path().join("e.raw");
    let o = Command::new(BIN)
        .args([
            "sysext",
            "pack",
            s(&plain),
            "--name",
            "app",
            "--version",
            "1",
            "--arch",
            "x86-64",
            "-o",
            s(&img),
        ])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let l = sh(Command::new("unsquashfs").arg("-lln").arg(&img));
    let l = String::from_utf8_lossy(&l.stdout).into_owned();
    let entries: Vec<&str> = l
        .lines()
        .filter(|x| x.starts_with(['d', '-', 'l']))
        // backhand gives the root directory (not merged by systemd-sysext) time 0
        .filter(|x| !x.ends_with(" squashfs-root"))
        .collect();
    assert!(entries.len() > 30, "{l}");
    assert!(
        entries.iter().all(|x| x.contains(" 2023-11-14 22:13 ")),
        "{l}"
    );
}

#[test]
fn packs_as_an_unprivileged_user() {
    let d = tempfile::tempdir().expect("tmp");
    let t = tree(d.path());
    let out = d.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    sh(Command::new("chmod").arg("-R").arg("a+rwX").arg(d.path()));
    for f in ["squashfs", "erofs"] {
        let img = out.join(format!("{f}.raw"));
        sh(Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args([
                "sysext",
                "pack",
                s(&t),
                "--name",
                "app",
                "--version",
                "1",
                "--arch",
                "x86-64",
                "--format",
                f,
                "-o",
                s(&img),
            ]));
        check_ok(&img);
    }
    sh(Command::new("unsquashfs")
        .arg("-s")
        .arg(out.join("squashfs.raw")));
    sh(Command::new("fsck.erofs").arg(out.join("erofs.raw")));
}
