//! End-to-end: verify's mismatch path. A debug build runs the debugfs commands in
//! `FLATBAKE_FAULT_ROOT_AFTER_APPLY` on the written copy's ROOT between apply and
//! verify (`src/bake/fault.rs`; a release build has no such hook), as a stray writer
//! would. Each kind of damage (a planned file gone, its bytes or mode changed, a
//! planned symlink pointing elsewhere, a planned removal undone) must make the bake
//! refuse in one line naming the path, with nothing renamed into place, no temporary
//! left and the input untouched. Without a fault the same bake succeeds (the hook
//! itself changes nothing).

mod support;

use std::path::Path;
use std::process::Command;
use support::refusal::{refused_cleanly, Before};
use support::*;

const FILE: &str = "/opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw";
const LINK: &str = "/etc/extensions/wasmtime.raw";

fn bake(out: &Path, fault: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--image")
        .arg(fixtures().join("current.bin"))
        .arg("-o")
        .arg(out)
        .arg(format!(
            "wasmtime:{}",
            sysext("wasmtime-v24.0.0-x86-64.raw").display()
        ));
    if let Some(f) = fault {
        cmd.env("FLATBAKE_FAULT_ROOT_AFTER_APPLY", f);
    }
    cmd.output().expect("run flatbake")
}

#[test]
fn damage_between_apply_and_verify_is_refused_and_nothing_is_renamed() {
    let dir = tempfile::tempdir().expect("tmp");
    let other = dir.path().join("other.raw");
    std::fs::write(&other, b"not the planned bytes\n").expect("write");
    let image = fixtures().join("current.bin");
    let cases: Vec<(&str, String, &str)> = vec![
        ("planned file removed", format!("rm {FILE}"), FILE),
        (
            "planned file's bytes replaced",
            format!("rm {FILE}\nwrite {} {FILE}", other.display()),
            FILE,
        ),
        (
            "planned file's mode changed",
            format!("sif {FILE} mode 0100600"),
            FILE,
        ),
        (
            "planned symlink points elsewhere",
            format!("rm {LINK}\nsymlink {LINK} /dev/null"),
            LINK,
        ),
        (
            "planned symlink replaced by a file",
            format!("rm {LINK}\nwrite {} {LINK}", other.display()),
            LINK,
        ),
    ];
    for (what, fault, path) in &cases {
        let out = dir.path().join("out.bin");
        let before = Before::take(&[&image, &other]);
        let o = bake(&out, Some(fault));
        let err = refused_cleanly(&o, what, &out, &before);
        assert!(
            err.contains("does not hold what was planned") && err.contains(path),
            "{what}: {err}"
        );
    }
    // the same bake without a fault succeeds and holds the plan (judged by e2fsck)
    let out = dir.path().join("good.bin");
    let o = bake(&out, None);
    assert!(o.status.success(), "{}", stderr(&o));
    e2fsck_root(&out);
    assert_eq!(root_link(&out, LINK).as_deref(), Some(FILE));
}
