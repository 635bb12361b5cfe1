//! Asking the real systemd-sysext whether it merges an extension on a given OS: squashfs
//! images built from a list of files, and a throwaway root (its own usr/lib/os-release,
//! the image in etc/extensions) merged in a private mount namespace.

use super::{s, sh, write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Build `dir/NAME.raw`, a root-owned squashfs holding `files` (path relative to the
/// image root, content).
pub fn squashfs(dir: &Path, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    image(dir, name, files, false)
}

/// Build `dir/NAME.raw` as [`squashfs`] does, or as EROFS (`mkfs.erofs`) when `erofs`.
pub fn image(dir: &Path, name: &str, files: &[(&str, &[u8])], erofs: bool) -> PathBuf {
    let tree = dir.join(format!("{name}.tree"));
    for (p, content) in files {
        write(&tree.join(p), content, 0o644);
    }
    std::fs::create_dir_all(tree.join("usr")).expect("mkdir usr");
    let out = dir.join(format!("{name}.raw"));
    pack_tree(&tree, &out, erofs);
    out
}

/// Pack `tree` into `out` (replaced) with mksquashfs, or mkfs.erofs when `erofs`, all
/// files owned by root; the tree is removed afterwards.
pub fn pack_tree(tree: &Path, out: &Path, erofs: bool) {
    let _ = std::fs::remove_file(out);
    if erofs {
        sh(Command::new("mkfs.erofs")
            .args(["--all-root", "--quiet"])
            .arg(out)
            .arg(tree));
    } else {
        sh(Command::new("mksquashfs").arg(tree).arg(out).args([
            "-all-root",
            "-noappend",
            "-quiet",
            "-no-progress",
        ]));
    }
    std::fs::remove_dir_all(tree).expect("rm tree");
}

/// `flatbake sysext check` of `image` as extension `name` against the os-release file
/// `target`: whether it accepts it, and what it printed. It never panics.
pub fn flatbake_accepts(name: &str, target: &Path, image: &Path) -> (bool, String) {
    let o = super::flatbake(&[
        "sysext",
        "check",
        "--name",
        name,
        "--arch",
        host_arch(),
        "--target-os-release",
        s(target),
        s(image),
    ]);
    assert!(
        !super::stderr(&o).contains("panicked"),
        "{}",
        super::stderr(&o)
    );
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            super::stderr(&o)
        ),
    )
}

/// systemd's name for this machine's architecture (what systemd-sysext compares
/// `ARCHITECTURE=` with).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "aarch64" => "arm64",
        other => panic!("no Flatcar architecture for {other}"),
    }
}

/// Whether systemd-sysext merges `image` installed as `/etc/extensions/NAME.raw` on a
/// root whose `/usr/lib/os-release` is `os_release`: true when the file `probe` (a path
/// under /usr that only the image holds) shows up in the merged root. Also returns
/// systemd-sysext's output, for messages.
pub fn systemd_merges(os_release: &[u8], name: &str, image: &Path, probe: &str) -> (bool, String) {
    let root = tempfile::tempdir().expect("tmp");
    let r = root.path();
    write(&r.join("usr/lib/os-release"), os_release, 0o644);
    std::fs::create_dir_all(r.join("etc/extensions")).expect("mkdir");
    std::fs::copy(image, r.join(format!("etc/extensions/{name}.raw"))).expect("copy");
    let script = format!(
        // systemd-sysext mounts from a child namespace: the root must be a shared mount
        // (of this namespace only) for the merged /usr to be seen here
        "mount -t tmpfs tmpfs /run; mount --bind {0} {0}; mount --make-shared {0}; \
         systemd-sysext --root={0} merge 2>&1; echo rc=$?; \
         if [ -e {0}{1} ]; then echo MERGED; fi; systemd-sysext --root={0} unmerge >/dev/null 2>&1; true",
        s(r),
        probe
    );
    let out = sh(Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (text.lines().any(|l| l == "MERGED"), text)
}
