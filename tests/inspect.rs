//! End-to-end: `flatbake inspect` reports what was baked — read back from raw and from
//! qcow2 outputs — and the `--json` summary of a bake lists every output with its sha256.

mod support;

use std::process::Command;
use support::*;

fn json(args: &[&str]) -> serde_json::Value {
    let o = flatbake(args);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("json")
}

#[test]
fn inspect_reports_what_was_baked_raw_and_qcow2() {
    let dir = tempfile::tempdir().expect("tmp");
    let ign = dir.path().join("config.ign");
    std::fs::write(&ign, r#"{"ignition":{"version":"3.3.0"}}"#).expect("w");
    let summary = dir.path().join("summary.json");
    let img = fixtures().join("current.bin");
    let o = flatbake(&[
        "--image",
        img.to_str().expect("p"),
        "--release-dir",
        fixtures().join("release").to_str().expect("p"),
        "--output-dir",
        dir.path().to_str().expect("p"),
        "--vendor",
        "qemu_uefi,hetzner",
        "--sysupdate",
        "--ignition",
        ign.to_str().expect("p"),
        "--install-to",
        "myext=oem:/sysext",
        "--json",
        summary.to_str().expect("p"),
        &format!(
            "wasmtime:{}",
            sysext("wasmtime-v24.0.0-x86-64.raw").display()
        ),
        &format!("myext:{}", sysext("myext-1.0-x86-64.raw").display()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let raw = dir.path().join("flatcar_production_hetzner_image.bin");
    let qcow = dir.path().join("flatcar_production_qemu_uefi_image.img");
    for (path, format, oem_id) in [(&raw, "raw", "hetzner"), (&qcow, "qcow2", "qemu")] {
        let r = json(&["inspect", "--json", path.to_str().expect("p")]);
        assert_eq!(r["format"], format);
        assert_eq!(r["flatcar"], true);
        assert_eq!(r["flatcar_version"], "4593.2.5");
        assert_eq!(r["arch"], "x86-64");
        assert_eq!(r["first_boot"], true);
        assert_eq!(r["sysupdate_timer"], true);
        let parts = r["partitions"].as_array().expect("parts");
        let root = parts.iter().find(|p| p["name"] == "ROOT").expect("ROOT");
        assert_eq!(root["filesystem"], "ext4");
        assert_eq!(root["sectors"].as_u64(), Some(12943360));
        let exts = r["extensions"].as_array().expect("exts");
        assert_eq!(exts.len(), 2, "{exts:?}");
        let w = exts
            .iter()
            .find(|e| e["name"] == "wasmtime")
            .expect("wasmtime");
        assert_eq!(
            w["target"],
            "/opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw"
        );
        assert_eq!(w["partition"], "ROOT");
        assert_eq!(w["format"], "squashfs");
        assert_eq!(w["extension_release"]["ID"], "flatcar");
        assert_eq!(
            w["sysupdate_conf"],
            "/etc/sysupdate.wasmtime.d/wasmtime.conf"
        );
        assert_eq!(
            w["size"].as_u64(),
            Some(
                std::fs::metadata(sysext("wasmtime-v24.0.0-x86-64.raw"))
                    .expect("m")
                    .len()
            )
        );
        let m = exts.iter().find(|e| e["name"] == "myext").expect("myext");
        assert_eq!(m["target"], "/oem/sysext/myext-1.0-x86-64.raw");
        assert_eq!(m["partition"], "OEM");
        assert_eq!(m["extension_release"]["ID"], "_any");
        assert!(m["problems"].as_array().expect("p").is_empty());
        assert_eq!(r["oem"]["id"], oem_id);
        assert_eq!(r["oem"]["ignition"], true);
        let files: Vec<&str> = r["oem"]["files"]
            .as_array()
            .expect("files")
            .iter()
            .filter_map(|f| f.as_str())
            .collect();
        assert!(
            files.contains(&format!("/sysext/oem-{oem_id}-4593.2.5.raw").as_str()),
            "{files:?}"
        );
        assert!(files.contains(&"/config.ign"), "{files:?}");
    }
    // text form names the same things
    let t = flatbake(&["inspect", qcow.to_str().expect("p")]);
    let text = String::from_utf8_lossy(&t.stdout);
    assert!(
        text.contains("qcow2")
            && text.contains("wasmtime")
            && text.contains("Ignition config present"),
        "{text}"
    );

    // the bake's --json summary: every output with the sha256 sha256sum computes
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("json");
    let outs = s["outputs"].as_array().expect("outputs");
    assert_eq!(
        outs.len(),
        std::fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(|e| e.ok())
            .filter(|e| e
                .file_name()
                .to_string_lossy()
                .starts_with("flatcar_production_"))
            .count()
    );
    for o in outs {
        let p = o["path"].as_str().expect("path");
        let sum = sh(Command::new("sha256sum").arg(p));
        let want = String::from_utf8_lossy(&sum.stdout)
            .split_whitespace()
            .next()
            .expect("sum")
            .to_owned();
        assert_eq!(o["sha256"].as_str(), Some(want.as_str()), "{p}");
    }
    assert_eq!(s["images"].as_array().expect("images").len(), 2);
}

#[test]
fn inspect_refuses_what_it_cannot_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let junk = dir.path().join("junk.img");
    std::fs::write(&junk, vec![7u8; 4096]).expect("w");
    let o = flatbake(&["inspect", junk.to_str().expect("p")]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("junk.img: not a disk image"),
        "{}",
        stderr(&o)
    );
}

/// A sound primary GPT with a damaged backup: the bake goes on but says so, and
/// inspect reports it.
#[test]
fn damaged_backup_gpt_is_reported() {
    let dir = tempfile::tempdir().expect("tmp");
    let img = dir.path().join("img.bin");
    sh(Command::new("cp")
        .arg("--sparse=always")
        .arg(fixtures().join("current.bin"))
        .arg(&img));
    let len = std::fs::metadata(&img).expect("m").len();
    // flip a byte in the backup header (last sector)
    sh(Command::new("sh").arg("-c").arg(format!(
        "printf 'Z' | dd of={} bs=1 seek={} conv=notrunc status=none",
        img.display(),
        len - 512 + 40
    )));
    let out = dir.path().join("out.bin");
    let o = flatbake(&[
        "--image",
        img.to_str().expect("p"),
        "-o",
        out.to_str().expect("p"),
        &format!("myext:{}", sysext("myext-1.0-x86-64.raw").display()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning:") && stderr(&o).contains("backup header CRC32"),
        "{}",
        stderr(&o)
    );
    let r = json(&["inspect", "--json", img.to_str().expect("p")]);
    assert!(
        r["gpt_backup_problem"]
            .as_str()
            .unwrap_or("")
            .contains("backup header CRC32"),
        "{r}"
    );
    let clean = json(&[
        "inspect",
        "--json",
        fixtures().join("current.bin").to_str().expect("p"),
    ]);
    assert!(clean["gpt_backup_problem"].is_null(), "{clean}");
}
