//! flatbake's verdict on whether systemd-sysext merges an extension on a target, judged
//! against the real `systemd-sysext merge` on this machine over a matrix of
//! extension-release files (quoting, whitespace, unicode spaces, comments, `_any`,
//! missing keys, level against version, architectures, scopes, wrong release file
//! names, an os-release inside) and target os-releases; and `flatbake bake` refusing,
//! in one line and writing nothing, what systemd would not merge.

mod support;

use support::compat::{flatbake_accepts, host_arch, squashfs, systemd_merges};
use support::*;

const FLATCAR: &[u8] =
    b"NAME=\"Flatcar Container Linux by Kinvolk\"\nID=flatcar\nVERSION_ID=4593.2.5\nSYSEXT_LEVEL=1.0\n";
const NAME: &str = "ext";
const PROBE: &str = "/usr/share/flatbake-compat/probe";

struct Row {
    label: String,
    target: Vec<u8>,
    /// File name under usr/lib/extension-release.d (None: no release file).
    release_file: Option<String>,
    release: Vec<u8>,
    /// Also ship usr/lib/os-release in the extension.
    os_release_inside: bool,
    /// An EROFS image instead of squashfs.
    erofs: bool,
}

fn row(label: &str, release: &[u8]) -> Row {
    Row {
        label: label.into(),
        target: FLATCAR.to_vec(),
        release_file: Some(format!("extension-release.{NAME}")),
        release: release.to_vec(),
        os_release_inside: false,
        erofs: false,
    }
}

fn on(target: &[u8], label: &str, release: &[u8]) -> Row {
    Row {
        target: target.to_vec(),
        ..row(label, release)
    }
}

fn rows() -> Vec<Row> {
    let arch = host_arch();
    let other_arch = if arch == "x86-64" { "arm64" } else { "x86-64" };
    let mut v = vec![
        row("level matches", b"ID=flatcar\nSYSEXT_LEVEL=1.0\n"),
        row("_any", b"ID=_any\n"),
        row("_any quoted", b"ID=\"_any\"\n"),
        row("SYSEXT_LEVEL=2.0", b"ID=flatcar\nSYSEXT_LEVEL=2.0\n"),
        row("SYSEXT_LEVEL=1", b"ID=flatcar\nSYSEXT_LEVEL=1\n"),
        row("SYSEXT_LEVEL quoted", b"ID=flatcar\nSYSEXT_LEVEL=\"1.0\"\n"),
        row(
            "SYSEXT_LEVEL trailing NBSP",
            "ID=flatcar\nSYSEXT_LEVEL=1.0\u{a0}\n".as_bytes(),
        ),
        row(
            "VERSION_ID matches, no level",
            b"ID=flatcar\nVERSION_ID=4593.2.5\n",
        ),
        row(
            "VERSION_ID other, no level",
            b"ID=flatcar\nVERSION_ID=4081.2.0\n",
        ),
        row(
            "empty level, VERSION_ID matches",
            b"ID=flatcar\nSYSEXT_LEVEL=\nVERSION_ID=4593.2.5\n",
        ),
        row("empty level, no version", b"ID=flatcar\nSYSEXT_LEVEL=\n"),
        row(
            "level wrong, version right",
            b"ID=flatcar\nSYSEXT_LEVEL=2.0\nVERSION_ID=4593.2.5\n",
        ),
        row(
            "level right, version wrong",
            b"ID=flatcar\nSYSEXT_LEVEL=1.0\nVERSION_ID=1.2.3\n",
        ),
        row("ID only", b"ID=flatcar\n"),
        row("no ID", b"SYSEXT_LEVEL=1.0\n"),
        row("empty ID", b"ID=\nSYSEXT_LEVEL=1.0\n"),
        row("other ID", b"ID=fedora\nSYSEXT_LEVEL=1.0\n"),
        row("ID upper case", b"ID=FLATCAR\nSYSEXT_LEVEL=1.0\n"),
        row("key lower case", b"id=flatcar\nSYSEXT_LEVEL=1.0\n"),
        row("ID NBSP", "ID=flatcar\u{a0}\nSYSEXT_LEVEL=1.0\n".as_bytes()),
        row(
            "ID leading NBSP",
            "ID=\u{a0}flatcar\nSYSEXT_LEVEL=1.0\n".as_bytes(),
        ),
        row(
            "ID em space",
            "ID=flatcar\u{2003}\nSYSEXT_LEVEL=1.0\n".as_bytes(),
        ),
        row(
            "ID zero-width space",
            "ID=flat\u{200b}car\nSYSEXT_LEVEL=1.0\n".as_bytes(),
        ),
        row(
            "ID BOM first",
            "\u{feff}ID=flatcar\nSYSEXT_LEVEL=1.0\n".as_bytes(),
        ),
        row("double quotes", b"ID=\"flatcar\"\nSYSEXT_LEVEL=\"1.0\"\n"),
        row("single quotes", b"ID='flatcar'\nSYSEXT_LEVEL='1.0'\n"),
        row(
            "spaces around",
            b"  ID =   flatcar   \nSYSEXT_LEVEL= 1.0\t\n",
        ),
        row(
            "space inside quotes",
            b"ID=\"flatcar \"\nSYSEXT_LEVEL=1.0\n",
        ),
        row("space before quote", b"ID= \"flatcar\"\nSYSEXT_LEVEL=1.0\n"),
        row("quote then text", b"ID=\"flat\"car\nSYSEXT_LEVEL=1.0\n"),
        row("quote space text", b"ID=\"flat\" car\nSYSEXT_LEVEL=1.0\n"),
        row("quote mid value", b"ID=flat\"car\"\nSYSEXT_LEVEL=1.0\n"),
        row("escaped space", b"ID=flatcar\\ \nSYSEXT_LEVEL=1.0\n"),
        row("escaped letter", b"ID=flat\\car\nSYSEXT_LEVEL=1.0\n"),
        row(
            "escape in double quotes",
            b"ID=\"flat\\car\"\nSYSEXT_LEVEL=1.0\n",
        ),
        row("escaped dollar", b"ID=\"flatcar\\$\"\nSYSEXT_LEVEL=1.0\n"),
        row("line continuation", b"ID=flat\\\ncar\nSYSEXT_LEVEL=1.0\n"),
        row("newline in quotes", b"ID=\"flat\ncar\"\nSYSEXT_LEVEL=1.0\n"),
        row("inner space", b"ID=flat car\nSYSEXT_LEVEL=1.0\n"),
        row(
            "unterminated quote, last",
            b"SYSEXT_LEVEL=1.0\nID=\"flatcar",
        ),
        row(
            "unterminated quote, newline",
            b"SYSEXT_LEVEL=1.0\nID=\"flatcar\n",
        ),
        row("no final newline", b"ID=flatcar\nSYSEXT_LEVEL=1.0"),
        row("CRLF", b"ID=flatcar\r\nSYSEXT_LEVEL=1.0\r\n"),
        row(
            "comments",
            b"# ID=fedora\n; ID=fedora\n  # x\nID=flatcar\nSYSEXT_LEVEL=1.0\n",
        ),
        row(
            "comment continued",
            b"# note \\\nID=flatcar\nSYSEXT_LEVEL=1.0\n",
        ),
        row("hash in value", b"ID=flatcar # comment\nSYSEXT_LEVEL=1.0\n"),
        row(
            "line without =",
            b"nonsense here\nID=flatcar\nSYSEXT_LEVEL=1.0\n",
        ),
        row("export prefix", b"export ID=flatcar\nSYSEXT_LEVEL=1.0\n"),
        row(
            "later ID wins",
            b"ID=fedora\nID=flatcar\nSYSEXT_LEVEL=1.0\n",
        ),
        row(
            "later ID loses",
            b"ID=flatcar\nID=fedora\nSYSEXT_LEVEL=1.0\n",
        ),
        row("later empty ID", b"ID=flatcar\nSYSEXT_LEVEL=1.0\nID=\n"),
        row(
            "invalid UTF-8 value",
            b"ID=flatcar\nSYSEXT_LEVEL=1.0\nNAME=caf\xe9\n",
        ),
        row(
            "invalid UTF-8 comment",
            b"# caf\xe9\nID=flatcar\nSYSEXT_LEVEL=1.0\n",
        ),
        row(
            "noncharacter value",
            "ID=flatcar\nSYSEXT_LEVEL=1.0\nX=\u{fffe}\n".as_bytes(),
        ),
        row(
            "NUL after data",
            b"ID=flatcar\nSYSEXT_LEVEL=1.0\n\0ID=fedora\n",
        ),
        row("NUL in ID line", b"ID=flatcar\0\nSYSEXT_LEVEL=1.0\n"),
        row("empty file", b""),
        row("only comments", b"# ID=flatcar\n"),
        row(
            "arch matches",
            format!("ID=flatcar\nSYSEXT_LEVEL=1.0\nARCHITECTURE={arch}\n").as_bytes(),
        ),
        row(
            "arch other",
            format!("ID=flatcar\nSYSEXT_LEVEL=1.0\nARCHITECTURE={other_arch}\n").as_bytes(),
        ),
        row(
            "arch _any",
            b"ID=flatcar\nSYSEXT_LEVEL=1.0\nARCHITECTURE=_any\n",
        ),
        row(
            "arch empty",
            b"ID=flatcar\nSYSEXT_LEVEL=1.0\nARCHITECTURE=\n",
        ),
        row("arch uname spelling", b"ID=_any\nARCHITECTURE=x86_64\n"),
        row("arch upper case", b"ID=_any\nARCHITECTURE=X86-64\n"),
        row(
            "_any with other arch",
            format!("ID=_any\nARCHITECTURE={other_arch}\n").as_bytes(),
        ),
        row(
            "scope system",
            b"ID=flatcar\nSYSEXT_LEVEL=1.0\nSYSEXT_SCOPE=system\n",
        ),
        row(
            "scope portable",
            b"ID=flatcar\nSYSEXT_LEVEL=1.0\nSYSEXT_SCOPE=portable\n",
        ),
        row(
            "scope initrd",
            b"ID=flatcar\nSYSEXT_LEVEL=1.0\nSYSEXT_SCOPE=initrd\n",
        ),
        row(
            "scope list",
            b"ID=flatcar\nSYSEXT_LEVEL=1.0\nSYSEXT_SCOPE=\"initrd system portable\"\n",
        ),
        row(
            "scope tab list",
            b"ID=flatcar\nSYSEXT_LEVEL=1.0\nSYSEXT_SCOPE=\"portable\tsystem\"\n",
        ),
        row(
            "scope empty",
            b"ID=flatcar\nSYSEXT_LEVEL=1.0\nSYSEXT_SCOPE=\n",
        ),
        row(
            "scope upper case",
            b"ID=flatcar\nSYSEXT_LEVEL=1.0\nSYSEXT_SCOPE=System\n",
        ),
        // targets other than a current Flatcar
        on(
            b"ID=flatcar\nVERSION_ID=4593.2.5\n",
            "target without level, ext level only",
            b"ID=flatcar\nSYSEXT_LEVEL=1.0\n",
        ),
        on(
            b"ID=flatcar\nVERSION_ID=4593.2.5\n",
            "target without level, ext version",
            b"ID=flatcar\nSYSEXT_LEVEL=1.0\nVERSION_ID=4593.2.5\n",
        ),
        on(
            b"ID=flatcar\nSYSEXT_LEVEL=1.0\n",
            "target without version, ext version only",
            b"ID=flatcar\nVERSION_ID=1\n",
        ),
        on(
            b"ID=flatcar\n",
            "target without version or level",
            b"ID=flatcar\n",
        ),
        on(
            b"ID=\"flatcar\"\nSYSEXT_LEVEL='1.0'\n",
            "target quoted",
            b"ID=flatcar\nSYSEXT_LEVEL=1.0\n",
        ),
        on(
            b"ID=flatcar\nSYSEXT_LEVEL=1.0 \n",
            "target trailing space",
            b"ID=flatcar\nSYSEXT_LEVEL=\"1.0\"\n",
        ),
        on(
            "ID=flatcar\nSYSEXT_LEVEL=1.0\u{a0}\n".as_bytes(),
            "target NBSP level",
            b"ID=flatcar\nSYSEXT_LEVEL=1.0\n",
        ),
        on(b"VERSION_ID=1\n", "target without ID", b"ID=_any\n"),
        on(
            b"ID=flatcar\nNAME=caf\xe9\n",
            "target invalid UTF-8",
            b"ID=_any\n",
        ),
    ];
    let mut named = |label: &str, file: Option<&str>| {
        let mut r = row(label, b"ID=flatcar\nSYSEXT_LEVEL=1.0\n");
        r.release_file = file.map(str::to_owned);
        v.push(r);
    };
    named(
        "release file for another name",
        Some("extension-release.other"),
    );
    named(
        "release file name with suffix",
        Some("extension-release.ext.conf"),
    );
    named("release file without name", Some("extension-release"));
    named("no release file", None);
    let mut inside = row("os-release inside", b"ID=flatcar\nSYSEXT_LEVEL=1.0\n");
    inside.os_release_inside = true;
    v.push(inside);
    let mut inside_any = row("os-release inside, _any", b"ID=_any\n");
    inside_any.os_release_inside = true;
    v.push(inside_any);
    // the same judgement on EROFS images
    for (label, release) in [
        (
            "erofs: level matches",
            &b"ID=flatcar\nSYSEXT_LEVEL=1.0\n"[..],
        ),
        ("erofs: SYSEXT_LEVEL=2.0", b"ID=flatcar\nSYSEXT_LEVEL=2.0\n"),
        (
            "erofs: VERSION_ID other",
            b"ID=flatcar\nVERSION_ID=4081.2.0\n",
        ),
        (
            "erofs: ID NBSP",
            "ID=flatcar\u{a0}\nSYSEXT_LEVEL=1.0\n".as_bytes(),
        ),
        ("erofs: quoted _any", b"ID='_any'\n"),
    ] {
        let mut r = row(label, release);
        r.erofs = true;
        v.push(r);
    }
    let mut r = row(
        "erofs: os-release inside",
        b"ID=flatcar\nSYSEXT_LEVEL=1.0\n",
    );
    r.erofs = true;
    r.os_release_inside = true;
    v.push(r);
    let mut r = row(
        "erofs: release file for another name",
        b"ID=flatcar\nSYSEXT_LEVEL=1.0\n",
    );
    r.erofs = true;
    r.release_file = Some("extension-release.other".into());
    v.push(r);
    v
}

#[test]
fn verdicts_agree_with_systemd_sysext_merge() {
    let rows = rows();
    let mut disagree = Vec::new();
    let (mut merged, mut refused) = (0, 0);
    for (i, r) in rows.iter().enumerate() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut files: Vec<(String, &[u8])> = vec![(PROBE[1..].to_owned(), b"probe\n")];
        if let Some(f) = &r.release_file {
            files.push((format!("usr/lib/extension-release.d/{f}"), &r.release));
        }
        if r.os_release_inside {
            files.push((
                "usr/lib/os-release".into(),
                b"ID=flatcar\nSYSEXT_LEVEL=1.0\n",
            ));
        }
        let files: Vec<(&str, &[u8])> = files.iter().map(|(p, c)| (p.as_str(), *c)).collect();
        let image = support::compat::image(dir.path(), NAME, &files, r.erofs);
        let target = dir.path().join("os-release");
        write(&target, &r.target, 0o644);
        let (sd, sd_out) = systemd_merges(&r.target, NAME, &image, PROBE);
        let (fb, fb_out) = flatbake_accepts(NAME, &target, &image);
        if sd {
            merged += 1;
        } else {
            refused += 1;
        }
        if sd != fb {
            disagree.push(format!(
                "row {i} '{}': systemd-sysext {} but flatbake {}\n  target: {:?}\n  {}: {:?}\n  systemd: {}\n  flatbake: {}",
                r.label,
                if sd { "merges" } else { "refuses" },
                if fb { "accepts" } else { "refuses" },
                String::from_utf8_lossy(&r.target),
                r.release_file.as_deref().unwrap_or("(no release file)"),
                String::from_utf8_lossy(&r.release),
                sd_out.trim(),
                fb_out.trim()
            ));
        }
    }
    assert!(
        disagree.is_empty(),
        "{} of {} rows disagree:\n{}",
        disagree.len(),
        rows.len(),
        disagree.join("\n")
    );
    // the matrix exercises both verdicts broadly
    assert!(
        merged >= 15 && refused >= 15,
        "merged {merged}, refused {refused}"
    );
}

/// `--target IMAGE` reads the image's own os-release from USR-A (the fixture is Flatcar
/// 4593.2.5 with SYSEXT_LEVEL=1.0), and agrees with systemd on it.
#[test]
fn check_reads_the_target_image() {
    let image = fixtures().join("current.bin");
    let (off, size) = part(&image, USR_A);
    let usr = partition_tree(&image, off, size);
    let os_release = std::fs::read(usr.path().join("tree/lib/os-release")).expect("os-release");
    let dir = tempfile::tempdir().expect("tmp");
    for (release, want) in [
        (&b"ID=flatcar\nVERSION_ID=4593.2.5\n"[..], true),
        (b"ID=flatcar\nVERSION_ID=4081.2.0\n", false),
        (b"ID=flatcar\nSYSEXT_LEVEL=1.0\n", true),
        (b"ID=flatcar\nSYSEXT_LEVEL=2.0\n", false),
    ] {
        let ext = squashfs(
            dir.path(),
            NAME,
            &[
                (&PROBE[1..], b"probe\n"),
                ("usr/lib/extension-release.d/extension-release.ext", release),
            ],
        );
        let (sd, sd_out) = systemd_merges(&os_release, NAME, &ext, PROBE);
        assert_eq!(
            sd,
            want,
            "systemd on {:?}: {sd_out}",
            String::from_utf8_lossy(release)
        );
        let o = flatbake(&[
            "sysext",
            "check",
            "--name",
            NAME,
            "--target",
            s(&image),
            s(&ext),
        ]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            o.status.success(),
            want,
            "flatbake on {:?}: {out}{}",
            String::from_utf8_lossy(release),
            stderr(&o)
        );
        assert!(
            out.contains("VERSION_ID=4593.2.5 SYSEXT_LEVEL=1.0"),
            "{out}"
        );
    }
}

/// `flatbake bake` refuses an extension systemd would not merge on the image: one line
/// naming the file and the fix, non-zero exit, nothing at --output, no temp files, the
/// input untouched.
#[test]
fn bake_refuses_what_systemd_would_not_merge() {
    let image = fixtures().join("current.bin");
    let before = sha256_file(&image);
    let dir = tempfile::tempdir().expect("tmp");
    let cases: [(&str, &[u8], bool, &str); 6] = [
        (
            "level2",
            b"ID=flatcar\nSYSEXT_LEVEL=2.0\n",
            false,
            "SYSEXT_LEVEL=1.0",
        ),
        (
            "oldversion",
            b"ID=flatcar\nVERSION_ID=4081.2.0\n",
            false,
            "VERSION_ID=4593.2.5",
        ),
        (
            "nbsp",
            "ID=flatcar\u{a0}\nSYSEXT_LEVEL=1.0\n".as_bytes(),
            false,
            "ID=flatcar",
        ),
        (
            "portable",
            b"ID=_any\nSYSEXT_SCOPE=portable\n",
            false,
            "SYSEXT_SCOPE",
        ),
        (
            "carriesos",
            b"ID=flatcar\nSYSEXT_LEVEL=1.0\n",
            true,
            "/usr/lib/os-release",
        ),
        (
            "commented",
            b"# x \\\nID=flatcar\nSYSEXT_LEVEL=1.0\n",
            false,
            "ID=flatcar",
        ),
    ];
    for (name, release, os_inside, fix) in cases {
        let sub = dir.path().join(name);
        std::fs::create_dir(&sub).expect("mkdir");
        let rel = format!("usr/lib/extension-release.d/extension-release.{name}");
        let mut files: Vec<(&str, &[u8])> = vec![("usr/bin/tool", b"#!/bin/sh\n"), (&rel, release)];
        if os_inside {
            files.push(("usr/lib/os-release", b"ID=flatcar\n"));
        }
        let ext = squashfs(&sub, name, &files);
        let out = sub.join("out.bin");
        let o = flatbake(&[
            "bake",
            "--image",
            s(&image),
            "--output",
            s(&out),
            &format!("{name}:{}", ext.display()),
        ]);
        let err = stderr(&o);
        assert!(!o.status.success(), "{name}: baked: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{name}: not one line: {err}");
        assert!(
            lines[0].contains(s(&ext)),
            "{name}: does not name the file: {err}"
        );
        assert!(
            lines[0].contains(fix),
            "{name}: does not say the fix ({fix}): {err}"
        );
        assert!(!out.exists(), "{name}: output written");
        assert!(
            leftovers(&sub).is_empty(),
            "{name}: left {:?}",
            leftovers(&sub)
        );
    }
    assert_eq!(sha256_file(&image), before, "input changed");
}

/// The same extensions made right are baked, and systemd merges them from the output.
#[test]
fn bake_accepts_what_systemd_merges() {
    let image = fixtures().join("current.bin");
    let dir = tempfile::tempdir().expect("tmp");
    let ext = squashfs(
        dir.path(),
        "byversion",
        &[
            ("usr/bin/byversion", b"#!/bin/sh\n"),
            (
                "usr/lib/extension-release.d/extension-release.byversion",
                b"ID=\"flatcar\"\nVERSION_ID=4593.2.5 \n",
            ),
        ],
    );
    let out = dir.path().join("out.bin");
    let o = flatbake(&[
        "bake",
        "--image",
        s(&image),
        "--output",
        s(&out),
        &format!("byversion:{}", ext.display()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (off, size) = part(&image, USR_A);
    let usr = partition_tree(&image, off, size);
    let os_release = std::fs::read(usr.path().join("tree/lib/os-release")).expect("os-release");
    let (sd, sd_out) = systemd_merges(&os_release, "byversion", &ext, "/usr/bin/byversion");
    assert!(sd, "{sd_out}");
}

/// Unprivileged, bake reads the target's os-release from USR-A the same way (in place,
/// by the bounded btrfs reader): an extension for another level is refused, a matching one is baked.
#[test]
fn rootless_bake_checks_against_the_target() {
    use std::os::unix::fs::PermissionsExt;
    let image = fixtures().join("current.bin");
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    for (level, want) in [("2.0", false), ("1.0", true)] {
        let sub = dir.path().join(format!("l{level}"));
        std::fs::create_dir(&sub).expect("mkdir");
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let release = format!("ID=flatcar\nSYSEXT_LEVEL={level}\n");
        let ext = squashfs(
            &sub,
            "lvl",
            &[
                ("usr/bin/lvl", b"#!/bin/sh\n"),
                (
                    "usr/lib/extension-release.d/extension-release.lvl",
                    release.as_bytes(),
                ),
            ],
        );
        let out = sub.join("out.bin");
        let o = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
            .args(["bake", "--image", s(&image), "--output", s(&out)])
            .arg(format!("lvl:{}", ext.display()))
            .output()
            .expect("setpriv");
        let err = stderr(&o);
        assert_eq!(o.status.success(), want, "SYSEXT_LEVEL={level}: {err}");
        assert_eq!(out.exists(), want, "SYSEXT_LEVEL={level}: {err}");
        if !want {
            assert!(err.contains("use SYSEXT_LEVEL=1.0"), "{err}");
        }
        assert!(leftovers(&sub).is_empty(), "left {:?}", leftovers(&sub));
    }
}
