//! The bake's plan and its verification: `--dry-run` checks everything, prints the
//! plan and writes nothing; the plan it prints is what a real bake then writes (judged
//! with debugfs and btrfs restore, not with flatbake's own reader); a real bake reports
//! what it read back.

mod support;

use support::*;

fn args<'a>(out: &'a str, wasm: &'a str, myext: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let input = fixtures().join("current.bin");
    let input: &'static str = Box::leak(input.display().to_string().into_boxed_str());
    let mut a = vec![
        "--image",
        input,
        "--output",
        out,
        "--install-to",
        "myext=oem:/sysext/",
        "--kernel-arg",
        "console=ttyS0",
        wasm,
        myext,
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn dry_run_writes_nothing_and_its_plan_is_what_a_bake_writes() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out.bin");
    let plan_json = dir.path().join("plan.json");
    let wasm_file = sysext("wasmtime-v24.0.0-x86-64.raw");
    let wasm = format!("wasmtime:{}", wasm_file.display());
    let myext_file = sysext("myext-1.0-x86-64.raw");
    let myext = format!("myext:{}", myext_file.display());

    let o = flatbake(&args(
        s(&out),
        &wasm,
        &myext,
        &["--dry-run", "--json", s(&plan_json)],
    ));
    assert!(o.status.success(), "dry run failed: {}", stderr(&o));
    assert!(!out.exists(), "a dry run wrote the output");
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
    let text = String::from_utf8_lossy(&o.stdout);
    for line in [
        "ROOT write   /opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw (mode 0644",
        "ROOT symlink /etc/extensions/wasmtime.raw -> /opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw",
        "ROOT symlink /etc/extensions/myext.raw -> /oem/sysext/myext-1.0-x86-64.raw",
        "OEM  write   /sysext/myext-1.0-x86-64.raw (mode 0644",
        "OEM  append  /grub.cfg",
    ] {
        assert!(text.contains(line), "plan lacks {line:?}:\n{text}");
    }
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&plan_json).expect("plan.json")).expect("json");
    assert_eq!(plan["dry_run"], true);

    // A real bake of the same request writes exactly what the plan says.
    let o = flatbake(&args(s(&out), &wasm, &myext, &[]));
    assert!(o.status.success(), "bake failed: {}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout
            .contains("verified against the plan (read back from the output): 3 files, 2 symlinks"),
        "{stdout}"
    );
    e2fsck_root(&out);
    let mut writes = 0;
    for op in plan["plan"]["root"].as_array().expect("root ops") {
        let path = op["path"].as_str().expect("path");
        match op["op"].as_str() {
            Some("write") => {
                let bytes = root_file(&out, path);
                assert_eq!(
                    format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&bytes)),
                    op["sha256"].as_str().expect("sha256"),
                    "{path}"
                );
                assert_eq!(
                    root_owner_mode(&out, path).0,
                    op["mode"].as_str().expect("mode")
                );
                writes += 1;
            }
            Some("symlink") => assert_eq!(
                root_link(&out, path).as_deref(),
                op["target"].as_str(),
                "{path}"
            ),
            _ => {}
        }
    }
    assert!(writes >= 2, "{plan}");
    let oem = oem_tree(&out);
    for op in plan["plan"]["oem"].as_array().expect("oem ops") {
        let path = op["path"].as_str().expect("path").trim_start_matches('/');
        let local = oem.path().join("tree").join(path);
        match op["op"].as_str() {
            Some("write") => assert_eq!(
                sha256_file(&local),
                op["sha256"].as_str().expect("sha256"),
                "{path}"
            ),
            Some("append") => {
                let text = std::fs::read_to_string(&local).expect("grub.cfg");
                assert!(text.contains(op["text"].as_str().expect("text")), "{text}");
            }
            _ => {}
        }
    }
}

#[test]
fn dry_run_refuses_what_a_bake_refuses() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out.bin");
    let bad = dir.path().join("bad.raw");
    std::fs::write(&bad, b"not a squashfs").expect("write");
    let bad_arg = format!("bad:{}", bad.display());
    let input = fixtures().join("current.bin");
    let err = flatbake_refused(&[
        "--dry-run",
        "--image",
        s(&input),
        "--output",
        s(&out),
        &bad_arg,
    ]);
    assert!(err.contains("bad.raw"), "{err}");
    assert!(!out.exists());
    assert!(leftovers(dir.path()).is_empty());
}

/// `--arch` names what the image is: the plan judges it against the ESP's boot loader
/// (the image's facts), with every other problem.
#[test]
fn an_arch_the_image_is_not_is_refused_with_the_rest() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out.bin");
    let bad = dir.path().join("bad.raw");
    std::fs::write(&bad, b"not a squashfs").expect("write");
    let bad_arg = format!("bad:{}", bad.display());
    let input = fixtures().join("current.bin");
    let err = flatbake_refused(&[
        "--image",
        s(&input),
        "--output",
        s(&out),
        "--arch",
        "arm64",
        &bad_arg,
    ]);
    assert!(
        err.contains("is a x86-64 image, not arm64; drop --arch arm64"),
        "{err}"
    );
    assert!(err.contains("bad.raw"), "{err}");
    assert!(!out.exists());
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn dry_run_of_vendor_images_names_them_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = fixtures().join("current.bin");
    let wasm = format!(
        "wasmtime:{}",
        sysext("wasmtime-v24.0.0-x86-64.raw").display()
    );
    let o = flatbake(&[
        "--dry-run",
        "--image",
        s(&input),
        "--release-dir",
        s(&fixtures().join("release")),
        "--vendor",
        "qemu_uefi",
        "--output-dir",
        s(dir.path()),
        &wasm,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("vendor images of: qemu_uefi"), "{text}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "a dry run wrote {left:?}");
}
