//! The OEM rebuild loses nothing: an OEM btrfs holding xattrs (user.*,
//! security.capability, the btrfs.compression property on every inode and on the root),
//! hard links, a FIFO, a socket, symlinks, odd modes and owners is baked into with both
//! backends (rootless as nobody), and the result, listed through a real kernel mount
//! (names, types, modes, owners, link counts, sizes, xattrs, contents), equals the
//! original plus the plan; `btrfs check` judges the filesystem. What the rootless
//! rebuild cannot carry (subvolumes, device nodes) is refused, nothing written.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

/// A copy of the fixture image with a rich OEM (see scripts/make-fixture-oem.sh).
fn rich_image(dir: &Path, extra: &[&str]) -> PathBuf {
    let img = dir.join("in.bin");
    std::fs::copy(fixtures().join("current.bin"), &img).expect("copy");
    sh(Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/make-fixture-oem.sh"
        ))
        .arg(&img)
        .args(extra));
    sh(Command::new("chmod").arg("0644").arg(&img));
    img
}

/// The OEM tree as the kernel shows it: path -> "type mode uid gid links size
/// link-group xattrs sha256".
fn listing(img: &Path) -> BTreeMap<String, String> {
    let (off, size) = part(img, OEM);
    let script = r#"set -e; m=$(mktemp -d); mount -o ro,loop,offset=$1,sizelimit=$2 "$0" "$m"; cd "$m"
        find . -printf '%p\t%y %m %U %G %n %s\t%i\n'
        echo ===
        find . -exec getfattr -h -d -m - -e hex --absolute-names {} + 2>/dev/null || true
        echo ===
        find . -type f -exec sha256sum {} +
        echo ===
        find . \( -type f -o -type d \) -exec lsattr -d {} +
        cd /; umount "$m"; rmdir "$m""#;
    let out = sh(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", script])
        .arg(img)
        .arg(off.to_string())
        .arg(size.to_string()));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = text.split("===\n");
    let (stat, xattr, sums, attrs) = (
        parts.next().expect("stat"),
        parts.next().expect("xattr"),
        parts.next().expect("sums"),
        parts.next().expect("lsattr"),
    );
    let attrs: BTreeMap<String, String> = attrs
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(a, p)| (p.to_owned(), a.to_owned())))
        .collect();
    let mut group: BTreeMap<String, String> = BTreeMap::new();
    let mut rows: BTreeMap<String, (String, String)> = BTreeMap::new();
    for l in stat.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        rows.insert(f[0].to_owned(), (f[1].to_owned(), f[2].to_owned()));
    }
    for (p, (_, ino)) in &rows {
        group.entry(ino.clone()).or_insert_with(|| p.clone());
    }
    let mut xattrs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cur = String::new();
    for l in xattr.lines() {
        if let Some(p) = l.strip_prefix("# file: ") {
            cur = p.to_owned();
        } else if !l.is_empty() {
            xattrs.entry(cur.clone()).or_default().push(l.to_owned());
        }
    }
    let sums: BTreeMap<String, String> = sums
        .lines()
        .filter_map(|l| {
            l.split_once("  ")
                .map(|(h, p)| (p.to_owned(), h.to_owned()))
        })
        .collect();
    rows.iter()
        .map(|(p, (st, ino))| {
            let mut x = xattrs.get(p).cloned().unwrap_or_default();
            x.sort();
            let row = format!(
                "{st} group={} xattrs=[{}] sha={} attrs={}",
                group[ino],
                x.join(","),
                sums.get(p).map_or("-", |s| s.as_str()),
                attrs.get(p).map_or("-", |s| s.as_str())
            );
            (p.clone(), row)
        })
        .collect()
}

/// The lsattr flags of a listing row ('c': btrfs compresses new writes).
fn attrs(row: &str) -> &str {
    row.rsplit("attrs=").next().unwrap_or("")
}

fn bake(backend: &str, input: &Path, out: &Path, args: &[&str]) -> std::process::Output {
    let mut c = if backend == "rootless" {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(BIN);
        c
    } else {
        Command::new(BIN)
    };
    c.args(["--backend", backend, "--image"])
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(args);
    c.env("HOME", out.parent().expect("parent"))
        .output()
        .expect("run flatbake")
}

fn workdir() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tmp");
    sh(Command::new("chmod").arg("0777").arg(d.path()));
    d
}

fn btrfs_check_oem(img: &Path) {
    let (off, size) = part(img, OEM);
    let _t = partition_tree(img, off, size); // runs btrfs check --readonly
}

#[test]
fn both_backends_carry_everything() {
    let d = workdir();
    let input = rich_image(d.path(), &["--root-xattr"]);
    let before = listing(&input);
    // the fixture really holds what a rebuild could lose
    let ping = &before["./bin/ping"];
    assert!(attrs(ping).contains('c'), "{ping}");
    assert!(
        ping.contains("security.capability=") && ping.contains("btrfs.compression=0x7a6c6962"),
        "{ping}"
    );
    assert!(
        before["."].contains("btrfs.compression=0x7a6c6962") && before["."].contains("user.oem="),
        "{}",
        before["."]
    );
    assert!(
        before["./share/a"].contains(" 3 ")
            && before["./share/fifo"].starts_with("p ")
            && before["./share/sock"].starts_with("s ")
    );
    let myext = sysext("myext-1.0-x86-64.raw");
    let args = [
        "--install-to",
        "myext=oem:/sysext/deep/new",
        &format!("myext:{}", myext.display()),
    ];
    let mut results = Vec::new();
    for backend in ["rootless", "mount"] {
        let out = d.path().join(format!("{backend}.bin"));
        let o = bake(backend, &input, &out, &args);
        assert!(o.status.success(), "{backend}: {}", stderr(&o));
        btrfs_check_oem(&out);
        let after = listing(&out);
        // the original, unchanged (the directories written into grow)
        for (p, row) in &before {
            let got = after
                .get(p)
                .unwrap_or_else(|| panic!("{backend}: {p} lost"));
            if p == "." || p == "./sysext" {
                assert_eq!(
                    got.split_once(' ').map(|x| x.0),
                    row.split_once(' ').map(|x| x.0)
                );
                assert_eq!(
                    got.split("group=").nth(1),
                    row.split("group=").nth(1),
                    "{backend}: {p}"
                );
                continue;
            }
            assert_eq!(got, row, "{backend}: {p} changed");
        }
        // plus the plan: the new directories and file, root's, inheriting compression
        let added: Vec<&String> = after.keys().filter(|p| !before.contains_key(*p)).collect();
        assert_eq!(
            added,
            [
                "./sysext/deep",
                "./sysext/deep/new",
                "./sysext/deep/new/myext-1.0-x86-64.raw"
            ],
            "{backend}"
        );
        let f = &after["./sysext/deep/new/myext-1.0-x86-64.raw"];
        assert!(attrs(f).contains('c'), "{backend}: {f}");
        assert!(
            f.starts_with("f 644 0 0 1 ")
                && f.contains("btrfs.compression=0x7a6c6962")
                && f.contains(&sha256_file(&myext)),
            "{backend}: {f}"
        );
        assert!(
            after["./sysext/deep"].starts_with("d 755 0 0 ")
                && after["./sysext/deep"].contains("btrfs.compression=0x7a6c6962")
        );
        results.push(after);
    }
    // and both backends agree on every byte of metadata they were asked to keep
    assert_eq!(results[0], results[1]);
}

#[test]
fn rootless_refuses_what_it_cannot_carry() {
    for (flag, name) in [("--subvolume", "/vol"), ("--device", "/share/null")] {
        let d = workdir();
        let input = rich_image(d.path(), &[flag]);
        let sum = sha256_file(&input);
        let out = d.path().join("out.bin");
        let o = bake(
            "rootless",
            &input,
            &out,
            &[
                "--install-to",
                "myext=oem:/sysext",
                &format!("myext:{}", sysext("myext-1.0-x86-64.raw").display()),
            ],
        );
        let err = stderr(&o);
        assert!(!o.status.success(), "{flag}: baked");
        assert!(
            err.contains(name)
                && err.contains("--backend mount")
                && err.lines().filter(|l| l.starts_with("error:")).count() == 1,
            "{flag}: {err}"
        );
        assert!(!out.exists(), "{flag}: output written");
        assert_eq!(sha256_file(&input), sum);
        assert!(leftovers(d.path()).is_empty(), "{:?}", leftovers(d.path()));
        // the way through works and keeps it
        let o = bake(
            "mount",
            &input,
            &out,
            &[
                "--install-to",
                "myext=oem:/sysext",
                &format!("myext:{}", sysext("myext-1.0-x86-64.raw").display()),
            ],
        );
        assert!(o.status.success(), "{flag} mount: {}", stderr(&o));
        btrfs_check_oem(&out);
        let before = listing(&input);
        let after = listing(&out);
        let p = format!(".{name}");
        assert_eq!(after.get(&p), before.get(&p), "{flag}");
    }
}
