//! The bounded btrfs reader's `read_file` (how bake and `sysext check --target` read the
//! target's `/usr/lib/os-release` from USR-A) against `btrfs restore` on the same
//! filesystem: plain, zlib- and zstd-compressed (inline and regular extents), files past
//! the inline limit, holes, os-release as a chain of symlinks; LZO reported as
//! unsupported; corrupted images refused with an error, never a hang or panic.

mod support;

use flatbake::fs::btrfs_tree::{read_file, TreeError};
use std::fs::File;
use std::path::Path;
use std::process::Command;
use support::*;

const OS: &[u8] = b"NAME=\"Flatcar Container Linux by Kinvolk\"\nID=flatcar\nVERSION_ID=4593.2.5\nSYSEXT_LEVEL=1.0\n";

/// A compressible text of `n` bytes (os-release lines repeated).
fn text(n: usize) -> Vec<u8> {
    OS.iter().copied().cycle().take(n).collect()
}

/// A btrfs made as make-fixture-image.sh makes USR-A (`--mixed`, single profiles) from
/// `root`, unprivileged.
fn mkfs(dir: &Path, root: &Path, name: &str) -> std::path::PathBuf {
    let img = dir.join(name);
    File::create(&img).unwrap().set_len(256 << 20).unwrap();
    sh(Command::new("mkfs.btrfs")
        .args(["-q", "--mixed", "-m", "single", "-d", "single", "--rootdir"])
        .arg(root)
        .arg(&img));
    img
}

/// What `btrfs restore` unpacks at `rel` (no symlinks followed).
fn restored(img: &Path, rel: &str) -> Vec<u8> {
    let out = tempfile::tempdir().unwrap();
    sh(Command::new("btrfs")
        .arg("restore")
        .arg(img)
        .arg(out.path()));
    std::fs::read(out.path().join(rel)).unwrap()
}

fn read(img: &Path, path: &str) -> Result<Vec<u8>, TreeError> {
    let f = File::open(img).unwrap();
    let len = f.metadata().unwrap().len();
    read_file(&f, 0, len, "/usr", path, 1 << 20)
}

#[test]
fn plain_files_symlinks_and_errors_match_btrfs_restore() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let lib = root.join("lib");
    std::fs::create_dir_all(lib.join("sub")).unwrap();
    std::fs::create_dir_all(root.join("share/flatcar")).unwrap();
    write(&lib.join("os-release"), OS, 0o644);
    // past the inline limit (2048 with 4 KiB sectors... any size above a page is a
    // regular extent), not a multiple of the sector size
    write(&lib.join("big"), &text(200_000 + 17), 0o644);
    write(&root.join("share/flatcar/release"), OS, 0o644);
    // a file with a hole in the middle: regular extents and an implicit hole
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = File::create(lib.join("holey")).unwrap();
        f.write_all(&text(5000)).unwrap();
        f.seek(SeekFrom::Start(300_000)).unwrap();
        f.write_all(&text(3000)).unwrap();
    }
    std::os::unix::fs::symlink("../share/flatcar/release", lib.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("/usr/lib/rel-link", lib.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("sub/../../lib/./abs-link", lib.join("chain")).unwrap();
    std::os::unix::fs::symlink("loop-b", lib.join("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", lib.join("loop-b")).unwrap();
    std::os::unix::fs::symlink("/etc/os-release", lib.join("outside")).unwrap();
    std::os::unix::fs::symlink("../../../usr/lib/os-release", lib.join("updown")).unwrap();
    let img = mkfs(dir.path(), &root, "plain.btrfs");

    for rel in [
        "lib/os-release",
        "lib/big",
        "lib/holey",
        "share/flatcar/release",
    ] {
        assert_eq!(
            read(&img, &format!("/usr/{rel}")).unwrap(),
            restored(&img, rel),
            "{rel}"
        );
    }
    assert_eq!(read(&img, "/usr/lib/os-release").unwrap(), OS);
    // symlinks: relative, absolute from the host root, chains, up and back into /usr
    for link in ["rel-link", "abs-link", "chain", "updown"] {
        let got = read(&img, &format!("/usr/lib/{link}")).unwrap();
        let want = if link == "updown" {
            restored(&img, "lib/os-release")
        } else {
            restored(&img, "share/flatcar/release")
        };
        assert_eq!(got, want, "{link}");
    }
    let err = |p: &str| read(&img, p).unwrap_err().to_string();
    assert!(err("/usr/lib/loop-a").contains("too many levels of symlinks"));
    assert!(err("/usr/lib/outside").contains("outside the filesystem"));
    assert!(err("/usr/lib/missing").contains("does not exist"));
    assert!(err("/usr/lib").contains("is a directory"));
    assert!(err("/usr/lib/os-release/x").contains("not a directory"));
    assert!(err("/etc/os-release").contains("outside the filesystem"));
    // the cap is enforced before anything is read
    let e = read_file(
        &File::open(&img).unwrap(),
        0,
        256 << 20,
        "/usr",
        "/usr/lib/big",
        65536,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("more than the 65536"), "{e}");
}

/// A btrfs whose files were written through a mount with `compress-force=ALG` (this
/// btrfs-progs' mkfs.btrfs has no --compress); needs root, as this machine runs tests.
fn compressed(dir: &Path, alg: &str) -> std::path::PathBuf {
    let empty = dir.join(format!("empty-{alg}"));
    std::fs::create_dir_all(&empty).unwrap();
    let img = mkfs(dir, &empty, &format!("{alg}.btrfs"));
    let mnt = tempfile::tempdir().unwrap();
    sh(Command::new("mount")
        .args(["-o", &format!("loop,compress-force={alg}")])
        .arg(&img)
        .arg(mnt.path()));
    let m = mnt.path();
    let result = std::panic::catch_unwind(|| {
        std::fs::create_dir_all(m.join("lib")).unwrap();
        std::fs::write(m.join("lib/os-release"), text(1000)).unwrap(); // inline
        std::fs::write(m.join("lib/big"), text(300_000 + 5)).unwrap(); // 3 extents
        std::os::unix::fs::symlink("big", m.join("lib/link")).unwrap();
    });
    sh(Command::new("umount").arg(m));
    result.unwrap();
    img
}

#[test]
fn compressed_data_matches_btrfs_restore() {
    let dir = tempfile::tempdir().unwrap();
    for alg in ["zlib", "zstd"] {
        let img = compressed(dir.path(), alg);
        // prove the fixture compresses: the file's extents say so
        let dump = sh(Command::new("btrfs")
            .args(["inspect-internal", "dump-tree", "-t", "fs"])
            .arg(&img));
        let dump = String::from_utf8_lossy(&dump.stdout).into_owned();
        let code = if alg == "zlib" {
            "compression 1"
        } else {
            "compression 3"
        };
        assert!(
            dump.contains("inline extent data size") && dump.contains(code),
            "{alg}: {dump}"
        );
        for rel in ["lib/os-release", "lib/big"] {
            assert_eq!(
                read(&img, &format!("/usr/{rel}")).unwrap(),
                restored(&img, rel),
                "{alg} {rel}"
            );
        }
        assert_eq!(read(&img, "/usr/lib/link").unwrap(), text(300_005), "{alg}");
    }
    // LZO is reported as unsupported (the caller falls back to btrfs restore)
    let img = compressed(dir.path(), "lzo");
    match read(&img, "/usr/lib/big") {
        Err(TreeError::Unsupported(m)) => assert!(m.contains("LZO"), "{m}"),
        other => panic!("LZO data: {other:?}"),
    }
}

#[test]
fn corrupted_images_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("lib")).unwrap();
    write(&root.join("lib/os-release"), OS, 0o644);
    write(&root.join("lib/big"), &text(50_000), 0o644);
    let img = mkfs(dir.path(), &root, "good.btrfs");
    // the metadata lives in the first MiBs (mixed block groups from the start)
    let good = {
        let mut b = vec![0u8; 8 << 20];
        use std::os::unix::fs::FileExt;
        File::open(&img).unwrap().read_exact_at(&mut b, 0).unwrap();
        b
    };
    let bad = dir.path().join("bad.btrfs");
    std::fs::copy(&img, &bad).unwrap();
    let badf = std::fs::OpenOptions::new().write(true).open(&bad).unwrap();
    // every tree block (4 KiB blocks carrying the filesystem's fsid at byte 32) and the
    // superblock are checksummed: a flipped byte there must give an error, or (a block
    // this read never visits) exactly the right content; never a panic, hang or wrong data
    let fsid = &good[0x10020..0x10030];
    let blocks: Vec<usize> = (0..good.len() / 4096)
        .map(|i| i * 4096)
        .filter(|&o| o == 0x10000 || &good[o + 32..o + 48] == fsid)
        .collect();
    assert!(blocks.len() > 3, "tree blocks found: {blocks:?}");
    let mut errors = 0;
    for (i, &o) in blocks.iter().enumerate() {
        for at in [o + 8, o + 100, o + 200 + i * 7, o + 3000] {
            use std::os::unix::fs::FileExt;
            badf.write_all_at(&[good[at] ^ 0x5a], at as u64).unwrap();
            let got = read(&bad, "/usr/lib/big");
            badf.write_all_at(&good[at..at + 1], at as u64).unwrap();
            match got {
                Ok(c) => assert!(c == text(50_000), "corruption at {at:#x} gave wrong data"),
                Err(_) => errors += 1,
            }
        }
    }
    assert!(errors >= 4, "only {errors} corruptions were noticed");
    // a partition shorter than the filesystem claims: nothing past it is read
    let e = read_file(
        &File::open(&img).unwrap(),
        0,
        0x20000,
        "/usr",
        "/usr/lib/big",
        1 << 20,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("past the end of the partition"), "{e}");
    // truncated: the trees point past the end of the file
    std::fs::write(&bad, &good[..0x11000]).unwrap();
    assert!(read(&bad, "/usr/lib/os-release").is_err());
    // not btrfs at all
    std::fs::write(&bad, vec![0u8; 0x20000]).unwrap();
    assert!(read(&bad, "/usr/lib/os-release")
        .unwrap_err()
        .to_string()
        .contains("no btrfs superblock"));
}

/// `sysext check --target` on a Flatcar-shaped image whose USR-A was rewritten through a
/// `compress-force=ALG` mount with `lib/os-release` (a symlink when `link`): zstd is read
/// in place, LZO through the btrfs restore fallback; both give systemd's verdicts.
#[test]
fn check_target_reads_compressed_usr_a() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("flatcar.bin");
    sh(Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/make-fixture-image.sh"
        ))
        .arg(&image));
    let (off, size) = part(&image, 3);
    let ext = |level: &str| {
        let d = dir.path().join(format!("ext-{level}"));
        let rel = d.join("usr/lib/extension-release.d");
        std::fs::create_dir_all(&rel).unwrap();
        write(
            &rel.join("extension-release.ext"),
            format!("ID=flatcar\nSYSEXT_LEVEL={level}\n").as_bytes(),
            0o644,
        );
        let raw = dir.path().join(format!("ext-{level}.raw"));
        sh(Command::new("mksquashfs")
            .arg(&d)
            .arg(&raw)
            .args(["-quiet", "-noappend", "-all-root"]));
        raw
    };
    let (good, bad) = (ext("1.0"), ext("2.0"));
    for (alg, link) in [("zstd", true), ("zlib", false), ("lzo", false)] {
        let usr = dir.path().join(format!("usr-{alg}.btrfs"));
        File::create(&usr).unwrap().set_len(size).unwrap();
        sh(Command::new("mkfs.btrfs")
            .args([
                "-q", "--mixed", "-m", "single", "-d", "single", "-L", "USR-A",
            ])
            .arg(&usr));
        let mnt = tempfile::tempdir().unwrap();
        sh(Command::new("mount")
            .args(["-o", &format!("loop,compress-force={alg}")])
            .arg(&usr)
            .arg(mnt.path()));
        let m = mnt.path();
        let made = std::panic::catch_unwind(|| {
            std::fs::create_dir_all(m.join("lib")).unwrap();
            std::fs::create_dir_all(m.join("share/flatcar")).unwrap();
            let mut os = OS.to_vec();
            os.extend(std::iter::repeat_n(b'#', 6000)); // past the inline limit too
            os.push(b'\n');
            if link {
                std::fs::write(m.join("share/flatcar/os-release"), &os).unwrap();
                std::os::unix::fs::symlink("../share/flatcar/os-release", m.join("lib/os-release"))
                    .unwrap();
            } else {
                std::fs::write(m.join("lib/os-release"), &os).unwrap();
            }
        });
        sh(Command::new("umount").arg(m));
        made.unwrap();
        sh(Command::new("dd")
            .arg(format!("if={}", usr.display()))
            .arg(format!("of={}", image.display()))
            .args(["bs=1M", "conv=notrunc,sparse", "status=none"])
            .arg(format!("seek={off}"))
            .arg("oflag=seek_bytes"));
        let ok = flatbake(&[
            "sysext",
            "check",
            "--name",
            "ext",
            "--target",
            s(&image),
            s(&good),
        ]);
        assert!(ok.status.success(), "{alg}: {}", stderr(&ok));
        let no = flatbake(&[
            "sysext",
            "check",
            "--name",
            "ext",
            "--target",
            s(&image),
            s(&bad),
        ]);
        let out = String::from_utf8_lossy(&no.stdout);
        assert!(!no.status.success() && out.contains("2.0"), "{alg}: {out}");
        assert!(
            out.contains("1.0"),
            "{alg}: the target's level is read: {out}"
        );
    }
}
