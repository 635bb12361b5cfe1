//! End-to-end: ready-to-boot settings — sysupdate wiring in ROOT, the Ignition config
//! and kernel arguments on OEM — judged by debugfs, btrfs, systemd-analyze, and the
//! refusals that must leave no output.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

fn bake(args: &[&str]) -> (tempfile::TempDir, PathBuf, std::process::Output) {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out.bin");
    let img = fixtures().join("current.bin");
    let mut all = vec![
        "--image",
        img.to_str().expect("p"),
        "-o",
        out.to_str().expect("p"),
    ];
    all.extend_from_slice(args);
    let o = flatbake(&all);
    (dir, out, o)
}

fn ign(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("config.ign");
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn sysupdate_wiring_is_valid_for_systemd() {
    let (_d, out, o) = bake(&["--sysupdate", &wasm()]);
    assert!(o.status.success(), "{}", stderr(&o));
    e2fsck_root(&out);
    assert_eq!(
        root_link(
            &out,
            "/etc/systemd/system/timers.target.wants/systemd-sysupdate.timer"
        )
        .as_deref(),
        Some("/usr/lib/systemd/system/systemd-sysupdate.timer")
    );
    let noop = String::from_utf8(root_file(&out, "/etc/sysupdate.d/noop.conf")).expect("utf8");
    assert!(
        noop.contains("[Source]") && noop.contains("[Target]"),
        "{noop}"
    );
    let d = "/etc/systemd/system/systemd-sysupdate.service.d";
    assert_eq!(
        String::from_utf8(root_file(&out, &format!("{d}/wasmtime.conf"))).expect("utf8"),
        "[Service]\nExecStartPre=/usr/lib/systemd/systemd-sysupdate -C wasmtime update\n"
    );
    assert_eq!(
        String::from_utf8(root_file(&out, &format!("{d}/sysext.conf"))).expect("utf8"),
        "[Service]\nExecStartPost=/usr/bin/systemctl restart systemd-sysext\n"
    );
    verify_dropins(&out, &["wasmtime.conf", "sysext.conf"]);
}

#[test]
fn sysupdate_reboot_required_action() {
    let (_d, out, o) = bake(&[
        "--sysupdate",
        "--sysupdate-action",
        "reboot-required",
        &wasm(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let d = "/etc/systemd/system/systemd-sysupdate.service.d";
    let dropin = String::from_utf8(root_file(&out, &format!("{d}/wasmtime.conf"))).expect("utf8");
    assert!(
        dropin.contains("ExecStartPre=/usr/lib/systemd/systemd-sysupdate -C wasmtime update"),
        "{dropin}"
    );
    assert!(dropin.contains("touch /run/reboot-required"), "{dropin}");
    assert!(
        !debugfs(&out, &format!("ls {d}")).contains("sysext.conf"),
        "no systemd-sysext restart with reboot-required"
    );
    verify_dropins(&out, &["wasmtime.conf"]);
}

/// systemd itself parses the drop-ins: a throwaway root with a stand-in unit.
fn verify_dropins(out: &Path, names: &[&str]) {
    let d = "/etc/systemd/system/systemd-sysupdate.service.d";
    let root = tempfile::tempdir().expect("tmp");
    let r = root.path();
    for sub in [
        "etc/systemd/system/systemd-sysupdate.service.d",
        "usr/lib/systemd/system",
        "usr/bin",
    ] {
        std::fs::create_dir_all(r.join(sub)).expect("mkdir");
    }
    for f in names {
        std::fs::write(
            r.join(format!(
                "etc/systemd/system/systemd-sysupdate.service.d/{f}"
            )),
            root_file(out, &format!("{d}/{f}")),
        )
        .expect("w");
    }
    std::fs::write(
        r.join("usr/lib/systemd/system/systemd-sysupdate.service"),
        "[Unit]\nDescription=stand-in\nDefaultDependencies=no\n[Service]\nType=oneshot\nExecStart=/usr/lib/systemd/systemd-sysupdate update\n",
    )
    .expect("w");
    std::fs::copy("/bin/true", r.join("usr/lib/systemd/systemd-sysupdate")).expect("cp");
    for b in ["systemctl", "sh"] {
        std::fs::copy("/bin/true", r.join(format!("usr/bin/{b}"))).expect("cp");
    }
    let v = sh(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", r.display()))
        .arg("systemd-sysupdate.service"));
    assert!(
        v.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&v.stderr)
    );
}

#[test]
fn ignition_and_kernel_args_on_oem() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = ign(
        dir.path(),
        r#"{"ignition":{"version":"3.4.0"},"passwd":{"users":[{"name":"core"}]}}"#,
    );
    let (_d, out, o) = bake(&[
        "--ignition",
        cfg.to_str().expect("p"),
        "--kernel-arg",
        "console=ttyS0,115200n8",
        "--kernel-arg",
        "flatcar.autologin",
        &wasm(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let oem = oem_tree(&out);
    let t = oem.path().join("tree");
    assert_eq!(
        std::fs::read(t.join("config.ign")).expect("ign"),
        std::fs::read(&cfg).expect("ign")
    );
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(t.join("config.ign")).expect("m");
    assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o600));
    let grub = std::fs::read_to_string(t.join("grub.cfg")).expect("grub");
    assert_eq!(grub, "# Flatcar GRUB settings\n\nset linux_append=\"$linux_append console=ttyS0,115200n8 flatcar.autologin\"\n");
}

#[test]
fn kernel_args_keep_the_vendor_lines() {
    let dir = tempfile::tempdir().expect("tmp");
    let img = fixtures().join("current.bin");
    let rel = fixtures().join("release");
    let o = flatbake(&[
        "--image",
        img.to_str().expect("p"),
        "--release-dir",
        rel.to_str().expect("p"),
        "--output-dir",
        dir.path().to_str().expect("p"),
        "--vendor",
        "gce",
        "--kernel-arg",
        "quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let x = dir.path().join("x");
    std::fs::create_dir(&x).expect("mkdir");
    sh(Command::new("tar")
        .arg("-xSzf")
        .arg(dir.path().join("flatcar_production_gce.tar.gz"))
        .arg("-C")
        .arg(&x));
    let grub = std::fs::read_to_string(oem_tree(&x.join("disk.raw")).path().join("tree/grub.cfg"))
        .expect("grub");
    // the vendor's own lines (Flatcar's build_library/oem/gce/grub.cfg) stay, in order
    let (id, console) = (
        grub.find("set oem_id=\"gce\"\n"),
        grub.find("set linux_console=\"console=ttyS0,115200n8\"\n"),
    );
    assert!(
        matches!((id, console), (Some(a), Some(b)) if a < b),
        "{grub}"
    );
    assert!(
        grub.ends_with("set linux_append=\"$linux_append quiet\"\n"),
        "{grub}"
    );
}

fn refused(args: &[&str], want: &str) {
    let (d, out, o) = bake(args);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    assert!(!out.exists());
    assert!(leftovers(d.path()).is_empty());
}

#[test]
fn bad_first_boot_settings_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let butane = dir.path().join("config.bu");
    std::fs::write(&butane, "variant: flatcar\nversion: 1.0.0\n").expect("w");
    refused(
        &["--ignition", butane.to_str().expect("p"), &wasm()],
        "config.bu: this is a Butane config",
    );
    let bad = ign(dir.path(), "{\"ignition\": ");
    refused(
        &["--ignition", bad.to_str().expect("p"), &wasm()],
        "config.ign: not valid JSON",
    );
    refused(
        &[
            "--sysupdate",
            &format!("myext:{}", sysext("myext-1.0-x86-64.raw").display()),
        ],
        "--sysupdate: no extension",
    );
    refused(&["--kernel-arg", "a\"b", &wasm()], "--kernel-arg");

    // an image whose first-boot flag is gone: Ignition would never run
    let img = dir.path().join("booted.bin");
    sh(Command::new("cp")
        .arg("--sparse=always")
        .arg(fixtures().join("current.bin"))
        .arg(&img));
    let (esp, _) = part(&img, ESP);
    sh(Command::new("mdel")
        .arg("-i")
        .arg(format!("{}@@{esp}", img.display()))
        .arg("::/flatcar/first_boot"));
    let good = ign(dir.path(), r#"{"ignition":{"version":"3.3.0"}}"#);
    let out = dir.path().join("out.bin");
    let o = flatbake(&[
        "--image",
        img.to_str().expect("p"),
        "-o",
        out.to_str().expect("p"),
        "--ignition",
        good.to_str().expect("p"),
        &wasm(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no /flatcar/first_boot flag"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

/// An Ignition config that Ignition itself would refuse when it validates it (a relative
/// path, a link without a target, a unit name without a type) stops the first boot, so
/// it is refused before baking: one line naming the file and the JSON path, no output.
#[test]
fn an_ignition_config_ignition_would_refuse_is_not_baked() {
    let d = tempfile::tempdir().expect("tmp");
    for (body, want) in [
        (
            r#""storage":{"files":[{"path":"etc/motd","contents":{"source":"data:,hi"}}]}"#,
            "storage.files[0].path \"etc/motd\": not absolute",
        ),
        (
            r#""storage":{"links":[{"path":"/etc/localtime"}]}"#,
            "storage.links[0]: a link needs a target",
        ),
        (
            r#""systemd":{"units":[{"name":"hello","contents":"[Service]"}]}"#,
            "systemd.units[0].name \"hello\": not a unit name",
        ),
    ] {
        let cfg = ign(
            d.path(),
            &format!(r#"{{"ignition":{{"version":"3.4.0"}},{body}}}"#),
        );
        let (dir, out, o) = bake(&["--ignition", cfg.to_str().expect("p")]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        one_line(&err);
        assert!(err.contains(&format!("{}: {want}", cfg.display())), "{err}");
        assert!(!out.exists(), "output written");
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );
    }
}
