//! End-to-end: ROOT's ext4 is edited safely (issue 12, sections 3 and 4). Images are
//! crafted with debugfs (a journal that needs recovery, error and orphan states,
//! impossible geometry, features flatbake cannot edit, colliding install paths, old
//! links to files flatbake does not own) and the results judged by dumpe2fs, e2fsck
//! and debugfs, with both backends where the backend matters.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const WASM: &str = "wasmtime-v24.0.0-x86-64.raw";

fn ext(name: &str, file: &Path) -> String {
    format!("{name}:{}", file.display())
}

/// A copy of the `current` fixture in a fresh directory.
fn copy_fixture(dir: &Path) -> PathBuf {
    let img = dir.join("in.bin");
    sh(Command::new("cp")
        .arg("--sparse=always")
        .arg(fixtures().join("current.bin"))
        .arg(&img));
    img
}

/// Run debugfs `cmds` (one per line) read-write on ROOT of `img`.
fn debugfs_w(img: &Path, cmds: &str) {
    let (off, _) = part(img, ROOT);
    let script = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(script.path(), cmds).expect("write");
    let o = sh(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(script.path())
        .arg(format!("{}?offset={off}", img.display())));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.lines().all(|l| l.starts_with("debugfs ")),
        "crafting failed: {err}"
    );
}

/// `dumpe2fs -h` of ROOT.
fn dumpe2fs(img: &Path) -> String {
    let (off, _) = part(img, ROOT);
    let o = sh(Command::new("dumpe2fs")
        .arg("-h")
        .arg(format!("{}?offset={off}", img.display())));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Run a bake expected to be refused; check exit, output, leftovers, input hash.
fn refused(backend: &str, img: &Path, args: &[&str]) -> String {
    let before = sha256_file(img);
    let mut all = vec!["--backend", backend];
    all.extend_from_slice(args);
    let err = refused_bake(img, &all);
    assert_eq!(sha256_file(img), before, "input modified");
    err
}

/// Run a bake expected to succeed; returns (dir, output, stderr).
fn baked(backend: &str, img: &Path, args: &[&str]) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let before = sha256_file(img);
    let mut all = vec!["--backend", backend];
    all.extend_from_slice(args);
    let (out, o) = bake_into(dir.path(), img, &all);
    assert_eq!(sha256_file(img), before, "input modified");
    e2fsck_root(&out);
    (dir, out, stderr(&o))
}

/// An image whose ROOT journal holds a committed transaction that creates
/// `/crash-note` (as a VM that crashed after writing it leaves it): the blocks that
/// change when the file is added go into the journal, not in place.
fn crashed(dir: &Path) -> PathBuf {
    let img = copy_fixture(dir);
    let (off, size) = part(&img, ROOT);
    let a = dir.join("after.img");
    copy_partition(&img, off, size, &a);
    let note = dir.join("note");
    std::fs::write(&note, b"written before the crash\n").expect("w");
    sh(Command::new("debugfs")
        .arg("-w")
        .arg("-R")
        .arg(format!("write {} /crash-note", note.display()))
        .arg(&a));
    // blocks that differ, and their new content
    let bs = 4096usize;
    let (old, new) = (
        std::fs::read(&img).expect("read"),
        std::fs::read(&a).expect("read"),
    );
    let old = &old[off as usize..(off + size) as usize];
    let mut blocks = Vec::new();
    let mut content = Vec::new();
    for (i, (x, y)) in old.chunks(bs).zip(new.chunks(bs)).enumerate() {
        if x != y {
            blocks.push(i.to_string());
            content.extend_from_slice(y);
        }
    }
    assert!(blocks.len() >= 3, "{blocks:?}");
    let data = dir.join("journal-blocks");
    std::fs::write(&data, content).expect("w");
    debugfs_w(
        &img,
        &format!(
            "jo -c -v 3\njw -b {} {}\njc\n",
            blocks.join(","),
            data.display()
        ),
    );
    std::fs::remove_file(&a).expect("rm");
    img
}

#[test]
fn journal_needing_recovery_is_replayed_into_the_output_only() {
    for backend in ["rootless", "mount"] {
        let dir = tempfile::tempdir().expect("tmp");
        let img = crashed(dir.path());
        assert!(
            dumpe2fs(&img).contains("needs_recovery"),
            "crafting did not leave a journal to recover"
        );
        // today's e2fsck -fn passes such an image: it skips the journal
        e2fsck_root(&img);
        assert!(!debugfs(&img, "ls /").contains("crash-note"));
        let (_d, out, err) = baked(backend, &img, &[&ext("wasmtime", &sysext(WASM))]);
        assert!(err.contains("journal needs recovery"), "{err}");
        let head = dumpe2fs(&out);
        assert!(
            !head.contains("needs_recovery"),
            "{backend}: output still needs recovery: {head}"
        );
        assert!(
            dumpe2fs(&img).contains("needs_recovery"),
            "input was replayed"
        );
        assert_eq!(
            root_file(&out, "/crash-note"),
            b"written before the crash\n"
        );
        let path = "/opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw";
        assert_eq!(
            root_file(&out, path),
            std::fs::read(sysext(WASM)).expect("read")
        );
        // what first boot would do (replay what is left) keeps the bake
        let (off, _) = part(&out, ROOT);
        sh(Command::new("e2fsck")
            .args(["-E", "journal_only", "-p"])
            .arg(format!("{}?offset={off}", out.display())));
        assert_eq!(
            root_file(&out, path),
            std::fs::read(sysext(WASM)).expect("read"),
            "{backend}"
        );
        assert_eq!(
            root_link(&out, "/etc/extensions/wasmtime.raw").as_deref(),
            Some(path)
        );
        e2fsck_root(&out);
    }
}

#[test]
fn unsafe_superblock_states_are_refused() {
    let cases: [(&str, &str); 9] = [
        ("ssv state 3", "records filesystem errors"),
        ("ssv state 0", "was not cleanly unmounted"),
        ("ssv last_orphan 12", "orphan inodes"),
        (
            "feature needs_recovery\nfeature -has_journal",
            "has no journal",
        ),
        ("ssv blocks_count 10241", "holds only"),
        ("ssv feature_incompat 0x12c2", "dirdata"),
        ("ssv feature_ro_compat 0x146b", "read-only"),
        ("ssv feature_ro_compat 0x8046b", "unknown 0x80000"),
        ("ssv journal_dev 0x801", "another device"),
    ];
    let dir = tempfile::tempdir().expect("tmp");
    for (cmds, why) in cases {
        let img = copy_fixture(dir.path());
        debugfs_w(&img, &format!("{cmds}\n"));
        for backend in ["rootless", "mount"] {
            let err = refused(backend, &img, &[&ext("wasmtime", &sysext(WASM))]);
            assert!(
                err.contains(why) && err.contains("ROOT (partition 9)"),
                "{cmds} ({backend}): {err}"
            );
            assert_eq!(
                err.lines().filter(|l| l.starts_with("error")).count(),
                1,
                "{err}"
            );
        }
    }
    // quota: debugfs does not update it, the kernel does
    let img = copy_fixture(dir.path());
    debugfs_w(&img, "feature quota\n");
    let err = refused("rootless", &img, &[&ext("wasmtime", &sysext(WASM))]);
    assert!(
        err.contains("quota") && err.contains("--backend mount"),
        "{err}"
    );
}

#[test]
fn install_paths_that_collide_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let same = |sub: &str, from: &str, name: &str| {
        let p = dir.path().join(sub).join(name);
        std::fs::create_dir_all(p.parent().expect("p")).expect("mkdir");
        std::fs::copy(sysext(from), &p).expect("copy");
        p
    };
    let img = fixtures().join("current.bin");
    let a = same("a", WASM, "same.raw");
    let b = same("b", "myext-1.0-x86-64.raw", "same.raw");
    let err = refused(
        "rootless",
        &img,
        &[
            "--install-to",
            "root:/opt/ext",
            &ext("wasmtime", &a),
            &ext("myext", &b),
        ],
    );
    assert!(
        err.contains("would both be ROOT /opt/ext/same.raw"),
        "{err}"
    );
    let err = refused(
        "rootless",
        &img,
        &[
            "--install-to",
            "oem:/sysext",
            &ext("wasmtime", &a),
            &ext("myext", &b),
        ],
    );
    assert!(err.contains("would both be OEM /sysext/same.raw"), "{err}");
    for d in [
        "/etc/extensions",
        "/var/lib/extensions/{name}",
        "/run/x",
        "/usr/share",
        "/oem/x",
    ] {
        let err = refused(
            "rootless",
            &img,
            &[
                "--install-to",
                &format!("root:{d}"),
                &ext("wasmtime", &sysext(WASM)),
            ],
        );
        assert!(err.contains("--install-to for wasmtime"), "{d}: {err}");
    }
    // an image where the links' directory must be
    let e = same("c", WASM, "extensions");
    let err = refused(
        "rootless",
        &img,
        &["--install-to", "root:/etc", &ext("wasmtime", &e)],
    );
    assert!(err.contains("needs a directory"), "{err}");
    // OEM's own files
    let g = same("d", WASM, "grub.cfg");
    let err = refused(
        "rootless",
        &img,
        &["--install-to", "oem:/", &ext("wasmtime", &g)],
    );
    assert!(err.contains("OEM's GRUB settings"), "{err}");
    // what the image already has there
    let crafted = copy_fixture(dir.path());
    debugfs_w(&crafted, "mkdir /opt\nmkdir /opt/extensions\nmkdir /opt/extensions/wasmtime\nmkdir /opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw\nmkdir /etc\nwrite /etc/hostname /etc/passwd\n");
    for backend in ["rootless", "mount"] {
        let err = refused(backend, &crafted, &[&ext("wasmtime", &sysext(WASM))]);
        assert!(err.contains("is a directory in the image"), "{err}");
        let p = same("e", WASM, "passwd");
        let err = refused(
            backend,
            &crafted,
            &["--install-to", "wasmtime=root:/etc", &ext("wasmtime", &p)],
        );
        assert!(err.contains("/etc/passwd already exists"), "{err}");
    }
}

#[test]
fn rebake_keeps_what_the_old_link_points_at_unless_flatbake_owns_it() {
    let v25dir = tempfile::tempdir().expect("tmp");
    let v25 = v25dir.path().join("wasmtime-v25.0.0-x86-64.raw");
    std::fs::copy(sysext(WASM), &v25).expect("copy");
    let new = "/opt/extensions/wasmtime/wasmtime-v25.0.0-x86-64.raw";
    // (target of the old link, files to create first (path in ROOT), path that must survive)
    let cases: [(&str, &[&str], &str); 6] = [
        ("/home/core/note", &[], "/home/core/note"),
        (
            "/opt/extensions/wasmtime/../../../home/core/wasmtime-1.raw",
            &["/home/core/wasmtime-1.raw"],
            "/home/core/wasmtime-1.raw",
        ),
        (
            "../../home/core/wasmtime-1.raw",
            &["/home/core/wasmtime-1.raw"],
            "/home/core/wasmtime-1.raw",
        ),
        (
            "/opt/extensions/other/wasmtime-1.raw",
            &["/opt/extensions/other/wasmtime-1.raw"],
            "/opt/extensions/other/wasmtime-1.raw",
        ),
        (
            "/opt/extensions/wasmtime/wasmtime-old",
            &[],
            "/opt/extensions/wasmtime/wasmtime-old/inside",
        ),
        (
            "/opt/extensions/wasmtime/wasmtime-lnk.raw",
            &[],
            "/home/core/note",
        ),
    ];
    for backend in ["rootless", "mount"] {
        for (old, files, keep) in cases {
            let dir = tempfile::tempdir().expect("tmp");
            let img = copy_fixture(dir.path());
            let content = dir.path().join("content");
            std::fs::write(&content, b"not flatbake's\n").expect("w");
            let mut cmds = String::from("mkdir /home\nmkdir /home/core\nmkdir /opt\nmkdir /opt/extensions\nmkdir /opt/extensions/other\nmkdir /opt/extensions/wasmtime\nmkdir /opt/extensions/wasmtime/wasmtime-old\nmkdir /etc\nmkdir /etc/extensions\n");
            cmds.push_str(&format!("write {0} /home/core/note\nwrite {0} /opt/extensions/wasmtime/wasmtime-old/inside\n", content.display()));
            cmds.push_str("symlink /opt/extensions/wasmtime/wasmtime-lnk.raw /home/core/note\n");
            for f in files {
                cmds.push_str(&format!("write {} {f}\n", content.display()));
            }
            cmds.push_str(&format!("symlink /etc/extensions/wasmtime.raw {old}\n"));
            debugfs_w(&img, &cmds);
            let (_d, out, err) = baked(backend, &img, &[&ext("wasmtime", &v25)]);
            assert!(
                err.contains(&format!("kept {old:?}")),
                "{old} ({backend}): {err}"
            );
            assert_eq!(
                root_file(&out, keep),
                b"not flatbake's\n",
                "{old} ({backend}): {keep} lost"
            );
            assert_eq!(
                root_link(&out, "/etc/extensions/wasmtime.raw").as_deref(),
                Some(new)
            );
            assert_eq!(root_file(&out, new), std::fs::read(&v25).expect("read"));
        }
    }
}

#[test]
fn rebake_keeps_oem_files_it_does_not_own() {
    let img = fixtures().join("current.bin");
    for backend in ["rootless", "mount"] {
        // first bake: myext into OEM, GRUB settings in OEM
        let (_d1, first, _) = baked(
            backend,
            &img,
            &[
                "--kernel-arg",
                "quiet",
                "--install-to",
                "myext=oem:/sysext",
                &ext("myext", &sysext("myext-1.0-x86-64.raw")),
            ],
        );
        for old in ["/oem/grub.cfg", "/oem/sysext/myext-1.0-x86-64.raw"] {
            let dir = tempfile::tempdir().expect("tmp");
            let crafted = dir.path().join("crafted.bin");
            sh(Command::new("cp")
                .arg("--sparse=always")
                .arg(&first)
                .arg(&crafted));
            debugfs_w(
                &crafted,
                &format!("symlink /etc/extensions/wasmtime.raw {old}\n"),
            );
            let (_d2, out, err) = baked(
                backend,
                &crafted,
                &[
                    "--install-to",
                    "wasmtime=oem:/sysext",
                    &ext("wasmtime", &sysext(WASM)),
                ],
            );
            assert!(err.contains("kept"), "{old}: {err}");
            let oem = oem_tree(&out);
            let t = oem.path().join("tree");
            assert!(std::fs::read_to_string(t.join("grub.cfg"))
                .expect("grub.cfg kept")
                .contains("quiet"));
            assert_eq!(
                sha256_file(&t.join("sysext/myext-1.0-x86-64.raw")),
                sha256_file(&sysext("myext-1.0-x86-64.raw"))
            );
            assert_eq!(
                sha256_file(&t.join("sysext").join(WASM)),
                sha256_file(&sysext(WASM))
            );
        }
    }
}

#[test]
fn space_preflight_counts_inodes() {
    // a ROOT with almost no free inodes: each new directory and file needs one
    let dir = tempfile::tempdir().expect("tmp");
    let img = copy_fixture(dir.path());
    let head = dumpe2fs(&img);
    assert!(head.contains("Free inodes:"), "{head}");
    debugfs_w(
        &img,
        "ssv free_inodes_count 3\nset_bg 0 free_inodes_count 3\nset_bg 0 checksum calc\n",
    );
    let err = refused("rootless", &img, &[&ext("wasmtime", &sysext(WASM))]);
    assert!(err.contains("3 inodes free"), "{err}");
}
