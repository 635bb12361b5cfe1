//! Hostile sysext shapes, judged against the real `systemd-sysext merge`: the
//! extension-release file as a symlink (relative, absolute, escaping the image,
//! dangling, looping), a FIFO, a directory, its directory a symlink; symlinks in the
//! payload that point out of the image or loop. flatbake's `sysext check` verdict must
//! be systemd's on every row, on squashfs and EROFS alike (a FIFO release file is the
//! exception: systemd-sysext 252 blocks forever reading it, so flatbake must refuse);
//! and a bake of each refused one exits 1 in one line naming the file, writing
//! nothing. (The release directory as a symlink was refused by flatbake, merged by
//! systemd: it is now followed inside the image as systemd's chase does.)

mod support;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use support::compat::{flatbake_accepts, pack_tree, systemd_merges};
use support::refusal::{refused_cleanly, Before};
use support::*;

const TARGET: &[u8] = b"ID=flatcar\nVERSION_ID=4593.2.5\nSYSEXT_LEVEL=1.0\n";
const NAME: &str = "ext";
const PROBE: &str = "/usr/share/flatbake-hostile/probe";
const RELEASE: &[u8] = b"ID=flatcar\nSYSEXT_LEVEL=1.0\n";
const REL_DIR: &str = "usr/lib/extension-release.d";

/// What a row puts at (or around) `usr/lib/extension-release.d/extension-release.ext`.
type Shape = fn(&Path);

fn rel(t: &Path) -> std::path::PathBuf {
    t.join(REL_DIR).join(format!("extension-release.{NAME}"))
}

fn shapes() -> Vec<(&'static str, Shape)> {
    vec![
        ("regular file", |t| write(&rel(t), RELEASE, 0o644)),
        ("relative symlink to a file in the image", |t| {
            write(&t.join("usr/share/rel/release"), RELEASE, 0o644);
            symlink("../../share/rel/release", rel(t)).expect("ln");
        }),
        ("absolute symlink to a file in the image", |t| {
            write(&t.join("usr/share/rel/release"), RELEASE, 0o644);
            symlink("/usr/share/rel/release", rel(t)).expect("ln");
        }),
        ("symlink escaping the image with ..", |t| {
            write(&t.join("usr/share/rel/release"), RELEASE, 0o644);
            symlink("../../../../../../../../etc/os-release", rel(t)).expect("ln");
        }),
        ("absolute symlink to the host's os-release", |t| {
            symlink("/usr/lib/os-release", rel(t)).expect("ln");
        }),
        ("dangling symlink", |t| {
            symlink("nowhere", rel(t)).expect("ln");
        }),
        ("symlink loop", |t| {
            symlink(format!("extension-release.{NAME}"), rel(t)).expect("ln");
        }),
        ("two-link loop", |t| {
            symlink("other", rel(t)).expect("ln");
            symlink(
                format!("extension-release.{NAME}"),
                t.join(REL_DIR).join("other"),
            )
            .expect("ln");
        }),
        ("FIFO", |t| {
            sh(Command::new("mkfifo").arg(rel(t)));
        }),
        ("directory", |t| {
            std::fs::create_dir_all(rel(t)).expect("mkdir");
            write(&rel(t).join("x"), RELEASE, 0o644);
        }),
        ("release directory is a symlink loop", |t| {
            std::fs::remove_dir(t.join(REL_DIR)).expect("rmdir");
            symlink("../lib/extension-release.d", t.join(REL_DIR)).expect("ln");
        }),
        ("release directory is an absolute symlink", |t| {
            write(
                &t.join("usr/share/reldir")
                    .join(format!("extension-release.{NAME}")),
                RELEASE,
                0o644,
            );
            std::fs::remove_dir(t.join(REL_DIR)).expect("rmdir");
            symlink("/usr/share/reldir", t.join(REL_DIR)).expect("ln");
        }),
        ("release directory is a symlink", |t| {
            write(
                &t.join("usr/share/reldir")
                    .join(format!("extension-release.{NAME}")),
                RELEASE,
                0o644,
            );
            std::fs::remove_dir(t.join(REL_DIR)).expect("rmdir");
            symlink("../share/reldir", t.join(REL_DIR)).expect("ln");
        }),
        ("payload symlinks out of the image and looping", |t| {
            write(&rel(t), RELEASE, 0o644);
            std::fs::create_dir_all(t.join("usr/bin")).expect("mkdir");
            symlink("/etc/shadow", t.join("usr/bin/abs")).expect("ln");
            symlink("../../../../../../etc/shadow", t.join("usr/bin/up")).expect("ln");
            symlink("loop", t.join("usr/bin/loop")).expect("ln");
        }),
    ]
}

/// Build `dir/ext.raw` from a tree shaped by `shape`, as squashfs or EROFS.
fn build(dir: &Path, shape: Shape, erofs: bool) -> std::path::PathBuf {
    let tree = dir.join("tree");
    let _ = std::fs::remove_dir_all(&tree);
    write(&tree.join(&PROBE[1..]), b"probe\n", 0o644);
    std::fs::create_dir_all(tree.join(REL_DIR)).expect("mkdir");
    shape(&tree);
    let out = dir.join(format!("{NAME}.raw"));
    pack_tree(&tree, &out, erofs);
    out
}

#[test]
fn release_file_shapes_agree_with_systemd_sysext_merge() {
    let mut disagree = Vec::new();
    let (mut merged, mut refused) = (0, 0);
    let mut refused_images = Vec::new();
    let keep = tempfile::tempdir().expect("tmp");
    for erofs in [false, true] {
        for (i, (label, shape)) in shapes().into_iter().enumerate() {
            let dir = tempfile::tempdir().expect("tmp");
            let image = build(dir.path(), shape, erofs);
            let target = dir.path().join("os-release");
            write(&target, TARGET, 0o644);
            // systemd-sysext 252 blocks forever reading a FIFO release file: a boot
            // would hang, so flatbake must refuse it (systemd is not asked)
            let (sd, sd_out) = if label == "FIFO" {
                (false, "(not asked: it blocks reading the FIFO)".into())
            } else {
                systemd_merges(TARGET, NAME, &image, PROBE)
            };
            let (fb, fb_out) = flatbake_accepts(NAME, &target, &image);
            let kind = if erofs { "erofs" } else { "squashfs" };
            if sd {
                merged += 1;
            } else {
                refused += 1;
                let kept = keep.path().join(format!("{kind}-{i}.raw"));
                std::fs::copy(&image, &kept).expect("keep");
                refused_images.push((format!("{kind}: {label}"), kept));
            }
            if sd != fb {
                disagree.push(format!(
                    "{kind} '{label}': systemd-sysext {} but flatbake {}\n  systemd: {}\n  flatbake: {}",
                    if sd { "merges" } else { "refuses" },
                    if fb { "accepts" } else { "refuses" },
                    sd_out.trim(),
                    fb_out.trim()
                ));
            }
        }
    }
    assert!(disagree.is_empty(), "{}", disagree.join("\n"));
    assert!(
        merged >= 4 && refused >= 4,
        "merged {merged}, refused {refused}"
    );
    // a bake of each refused shape: one line naming the file, nothing written
    let image = fixtures().join("current.bin");
    for (label, ext) in refused_images {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path().join("out.bin");
        let before = Before::take(&[&image, &ext]);
        let o = flatbake(&[
            "--image",
            s(&image),
            "-o",
            s(&out),
            &format!("{NAME}:{}", s(&ext)),
        ]);
        let err = refused_cleanly(&o, &label, &out, &before);
        assert!(
            err.contains(s(&ext)),
            "{label}: does not name the file: {err}"
        );
    }
}
