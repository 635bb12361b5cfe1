//! End-to-end: the rest of the tool box. Replacing Flatcar's built-in Docker/containerd
//! and enabling its optional extensions (judged by debugfs reading ROOT back), the
//! docker recipe's variants, Torcx conversion, and Flix/Flatwrap images from OCI
//! fixtures (judged by `sysext check`, readelf, and running them from a merged root).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::*;

fn run(args: &[&str]) -> Output {
    run_sysext(args, &[])
}

fn ok(args: &[&str]) -> Output {
    ok_sysext(args, &[])
}

/// A minimal sysext named `name` for x86-64, packed by flatbake.
fn tiny_sysext(dir: &Path, name: &str) -> PathBuf {
    let t = dir.join(format!("tree-{name}"));
    write(
        &t.join(format!("usr/bin/{name}")),
        format!("#!/bin/sh\necho {name}\n").as_bytes(),
        0o755,
    );
    let out = dir.join(format!("{name}-1.0-x86-64.raw"));
    ok(&[
        "sysext",
        "pack",
        s(&t),
        "--name",
        name,
        "--version",
        "1.0",
        "--arch",
        "x86-64",
        "-o",
        s(&out),
    ]);
    out
}

/// Bake `args` into a copy of the current fixture image; returns (dir, output, stderr).
fn bake(backend: &str, args: &[&str]) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("out.bin");
    let input = fixtures().join("current.bin");
    let mut all = vec![
        "--backend",
        backend,
        "--image",
        s(&input),
        "--output",
        s(&out),
    ];
    all.extend_from_slice(args);
    let o = ok(&all);
    e2fsck_root(&out);
    (dir, out, stderr(&o))
}

fn root_exists(img: &Path, path: &str) -> bool {
    debugfs(img, &format!("stat {path}")).contains("Inode:")
}

// ---------------------------------------------------------------------------------------
// replacing built-ins, enabling official extensions
// ---------------------------------------------------------------------------------------

#[test]
fn replace_builtin_masks_with_dev_null_and_enables_official() {
    for backend in ["rootless", "mount"] {
        let (_d, out, err) = bake(
            backend,
            &[
                "--replace-builtin",
                "docker,containerd",
                "--enable-official",
                "zfs,podman",
            ],
        );
        for b in ["docker-flatcar", "containerd-flatcar"] {
            assert_eq!(
                root_link(&out, &format!("/etc/extensions/{b}.raw")).as_deref(),
                Some("/dev/null"),
                "{backend}: {b} not masked; stderr: {err}"
            );
        }
        assert_eq!(
            root_file(&out, "/etc/flatcar/enabled-sysext.conf"),
            b"zfs\npodman\n",
            "{backend}"
        );
        assert_eq!(
            root_owner_mode(&out, "/etc/flatcar/enabled-sysext.conf"),
            ("0644".to_owned(), 0, 0)
        );
        // a current release has no Torcx: its generator is left alone
        assert!(
            !root_exists(&out, "/etc/systemd/system-generators/torcx-generator"),
            "{backend}"
        );
        // inspect sees the masks
        let text = stdout(&ok(&["inspect", s(&out)]));
        assert!(
            text.contains("masked (symlink to /dev/null)"),
            "{backend}: {text}"
        );
    }
}

#[test]
fn torcx_era_masks_the_generator() {
    // by flag, with the mount backend
    let (_d, out, _) = bake("mount", &["--replace-builtin", "docker", "--torcx-era"]);
    assert!(root_exists(
        &out,
        "/etc/systemd/system-generators/torcx-generator"
    ));
    assert!(root_file(&out, "/etc/systemd/system-generators/torcx-generator").is_empty());
    assert_eq!(
        root_link(&out, "/etc/extensions/docker-flatcar.raw").as_deref(),
        Some("/dev/null")
    );
    assert_eq!(
        root_link(&out, "/etc/extensions/containerd-flatcar.raw"),
        None,
        "only docker was asked for"
    );
    // by the image's version
    let (_d, out, err) = bake(
        "rootless",
        &[
            "--replace-builtin",
            "containerd",
            "--flatcar-version",
            "3510.2.8",
        ],
    );
    assert!(err.contains("Flatcar 3510.2.8 still has Torcx"), "{err}");
    assert!(root_exists(
        &out,
        "/etc/systemd/system-generators/torcx-generator"
    ));
    assert!(
        debugfs(&out, "stat /etc/systemd/system-generators/torcx-generator").contains("Size: 0")
    );
}

#[test]
fn baking_docker_masks_builtins_by_default_unless_kept() {
    let d = tempfile::tempdir().expect("tmp");
    let docker = tiny_sysext(d.path(), "docker");
    let arg = format!("docker:{}", docker.display());
    let (_o, out, err) = bake("rootless", &[&arg]);
    assert!(
        err.contains(
            "baking docker: masking Flatcar's built-in docker-flatcar and containerd-flatcar"
        ),
        "no note on stderr: {err}"
    );
    assert_eq!(
        root_link(&out, "/etc/extensions/docker-flatcar.raw").as_deref(),
        Some("/dev/null")
    );
    assert_eq!(
        root_link(&out, "/etc/extensions/containerd-flatcar.raw").as_deref(),
        Some("/dev/null")
    );
    assert_eq!(
        root_link(&out, "/etc/extensions/docker.raw").as_deref(),
        Some("/opt/extensions/docker/docker-1.0-x86-64.raw")
    );

    let (_o, out, err) = bake("rootless", &["--keep-builtin", &arg]);
    assert!(!err.contains("masking"), "{err}");
    assert!(!root_exists(&out, "/etc/extensions/docker-flatcar.raw"));
    assert!(!root_exists(&out, "/etc/extensions/containerd-flatcar.raw"));
    assert!(root_exists(&out, "/etc/extensions/docker.raw"));

    // containerd alone masks only containerd-flatcar
    let containerd = tiny_sysext(d.path(), "containerd");
    let (_o, out, _) = bake(
        "rootless",
        &[&format!("containerd:{}", containerd.display())],
    );
    assert_eq!(
        root_link(&out, "/etc/extensions/containerd-flatcar.raw").as_deref(),
        Some("/dev/null")
    );
    assert!(!root_exists(&out, "/etc/extensions/docker-flatcar.raw"));
}

#[test]
fn enabled_sysext_conf_keeps_earlier_names_and_bad_requests_are_refused() {
    let (d, first, _) = bake("rootless", &["--enable-official", "zfs"]);
    let second = d.path().join("second.bin");
    ok(&[
        "--image",
        s(&first),
        "-o",
        s(&second),
        "--enable-official",
        "podman,zfs",
    ]);
    assert_eq!(
        root_file(&second, "/etc/flatcar/enabled-sysext.conf"),
        b"zfs\npodman\n"
    );

    let bad = d.path().join("bad.bin");
    let o = run(&[
        "--image",
        s(&first),
        "-o",
        s(&bad),
        "--replace-builtin",
        "podman",
        "--keep-builtin",
        "--enable-official",
        "../x",
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("--replace-builtin podman: not a Flatcar built-in extension"),
        "{err}"
    );
    assert!(
        err.contains("--keep-builtin and --replace-builtin exclude each other"),
        "{err}"
    );
    assert!(err.contains("--enable-official ../x"), "{err}");
    assert!(!bad.exists());
}

// ---------------------------------------------------------------------------------------
// docker recipe variants, against a loopback mirror
// ---------------------------------------------------------------------------------------

fn tar_gz(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    use std::io::Write;
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        b.append_data(&mut h, path, *data).expect("append");
    }
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&b.into_inner().expect("tar")).expect("gz");
    e.finish().expect("gz")
}

fn unsquashfs_list(img: &Path) -> String {
    stdout(&sh(Command::new("unsquashfs").arg("-lln").arg(img)))
}

#[test]
fn docker_recipe_builds_only_docker_and_only_containerd() {
    let m = tempfile::tempdir().expect("tmp");
    let tgz = tar_gz(&[
        (
            "docker/docker",
            b"#!/bin/sh\necho Docker version 27.3.1\n",
            0o755,
        ),
        ("docker/dockerd", b"dockerd", 0o755),
        ("docker/docker-proxy", b"docker-proxy", 0o755),
        (
            "docker/containerd",
            b"#!/bin/sh\necho containerd 1.7\n",
            0o755,
        ),
        ("docker/containerd-shim-runc-v2", b"shim", 0o755),
        ("docker/ctr", b"ctr", 0o755),
        ("docker/runc", b"runc", 0o755),
    ]);
    write(
        &m.path()
            .join("download.docker.com/linux/static/stable/x86_64/docker-27.3.1.tgz"),
        &tgz,
        0o644,
    );
    let server = support::http::Server::serve(m.path());
    let d = tempfile::tempdir().expect("tmp");
    let create = |flag: &str, out: &Path| {
        let o = Command::new(BIN)
            .args([
                "sysext",
                "create",
                "docker",
                "27.3.1",
                flag,
                "--arch",
                "x86-64",
                "--sha256",
                &sha256(&tgz),
                "-o",
                s(out),
            ])
            .env("FLATBAKE_RECIPE_MIRROR", &server.url)
            .env("SOURCE_DATE_EPOCH", "0")
            .output()
            .expect("run");
        assert!(o.status.success(), "create {flag}: {}", stderr(&o));
    };
    let only_docker = d.path().join("docker-27.3.1-x86-64.raw");
    create("--only-docker", &only_docker);
    let only_containerd = d.path().join("containerd-27.3.1-x86-64.raw");
    create("--only-containerd", &only_containerd);

    let l = unsquashfs_list(&only_docker);
    for want in [
        "usr/bin/docker",
        "usr/bin/dockerd",
        "usr/bin/docker-proxy",
        "usr/lib/systemd/system/docker.service",
        "usr/lib/systemd/system/docker.socket",
        "usr/lib/systemd/system/sockets.target.d/10-docker-docker.socket.conf",
        "usr/lib/extension-release.d/extension-release.docker",
    ] {
        assert!(
            l.contains(&format!("squashfs-root/{want}")),
            "only-docker lacks {want}:\n{l}"
        );
    }
    for unwanted in ["containerd", "runc", "ctr"] {
        assert!(!l.contains(unwanted), "only-docker holds {unwanted}:\n{l}");
    }
    let l = unsquashfs_list(&only_containerd);
    for want in [
        "usr/bin/containerd",
        "usr/bin/containerd-shim-runc-v2",
        "usr/bin/ctr",
        "usr/bin/runc",
        "usr/lib/systemd/system/containerd.service",
        "usr/share/containerd/config.toml",
        "usr/lib/systemd/system/multi-user.target.d/10-containerd-containerd.service.conf",
        "usr/lib/extension-release.d/extension-release.containerd",
    ] {
        assert!(
            l.contains(&format!("squashfs-root/{want}")),
            "only-containerd lacks {want}:\n{l}"
        );
    }
    assert!(
        !l.contains("docker"),
        "only-containerd holds docker files:\n{l}"
    );

    // both check, under their own names, and load together
    let text = stdout(&ok(&[
        "sysext",
        "check",
        s(&only_docker),
        s(&only_containerd),
    ]));
    assert!(
        text.contains("ok: systemd-sysext would merge it as docker"),
        "{text}"
    );
    assert!(
        text.contains("ok: systemd-sysext would merge it as containerd"),
        "{text}"
    );
    let out = sysext_merge(
        &[("docker", &only_docker), ("containerd", &only_containerd)],
        "ROOT/usr/bin/docker; ROOT/usr/bin/containerd",
    );
    assert!(
        out.contains("Using extensions 'containerd', 'docker'"),
        "{out}"
    );
    assert!(
        out.contains("Docker version 27.3.1") && out.contains("containerd 1.7"),
        "{out}"
    );
    // a variant the recipe lacks is refused
    let o = run(&[
        "sysext",
        "create",
        "wasmtime",
        "1.0",
        "--variant",
        "x",
        "--arch",
        "x86-64",
    ]);
    assert!(
        stderr(&o).contains("has no variant x (it has no variants)"),
        "{}",
        stderr(&o)
    );
}

// ---------------------------------------------------------------------------------------
// Torcx conversion
// ---------------------------------------------------------------------------------------

#[test]
fn torcx_image_converts_to_a_sysext() {
    let d = tempfile::tempdir().expect("tmp");
    let manifest = br#"{"kind":"image-manifest-v0","value":{"bin":["/bin/docker","/bin/dockerd","/bin/containerd","/libexec/docker/docker-init"],"network":[],"units":["/lib/systemd/system/docker.service","/lib/systemd/system/docker.socket","/lib/systemd/system/containerd.service","/lib/systemd/system/gone.service"]}}"#;
    let docker_service = b"[Unit]\nRequires=containerd.service\n[Service]\nEnvironment=TORCX_BINDIR=/run/torcx/bin\nExecStart=/run/torcx/bin/dockerd --containerd=/var/run/docker/libcontainerd/docker-containerd.sock\n[Install]\nWantedBy=multi-user.target\n";
    let containerd_service = b"[Service]\nEnvironment=PATH=/run/torcx/unpack/docker/bin:/usr/sbin:/usr/bin\nExecStart=/var/run/torcx/unpack/docker/bin/containerd --config /run/torcx/unpack/docker/usr/share/containerd/config.toml\n[Install]\nWantedBy=multi-user.target\n";
    let tgz = tar_gz(&[
        (".torcx/manifest.json", manifest, 0o644),
        (
            "bin/docker",
            b"#!/bin/sh\necho Docker version 20.10.24 from torcx\n",
            0o755,
        ),
        ("bin/dockerd", b"dockerd", 0o700),
        ("bin/containerd", b"containerd", 0o755),
        ("libexec/docker/docker-init", b"init", 0o755),
        ("lib/systemd/system/docker.service", docker_service, 0o644),
        (
            "lib/systemd/system/containerd.service",
            containerd_service,
            0o644,
        ),
        (
            "lib/systemd/system/docker.socket",
            b"[Socket]\nListenStream=/run/docker.sock\n[Install]\nWantedBy=sockets.target\n",
            0o644,
        ),
        ("usr/share/containerd/config.toml", b"version = 2\n", 0o644),
    ]);
    let archive = d.path().join("docker:20.10.torcx.tgz");
    write(&archive, &tgz, 0o644);
    let out = d.path().join("docker-20.10-x86-64.raw");
    let o = ok(&[
        "sysext",
        "convert-torcx",
        s(&archive),
        "docker",
        "--arch",
        "x86-64",
        "-o",
        s(&out),
    ]);
    let err = stderr(&o);
    assert!(
        err.contains("rewrote Torcx paths in usr/lib/systemd/system/docker.service"),
        "{err}"
    );
    assert!(
        err.contains("manifest unit /lib/systemd/system/gone.service is not in the image"),
        "{err}"
    );
    assert!(
        err.contains("drop-ins under /etc/systemd/system/ for ")
            && err.contains("containerd.service")
            && err.contains("still point at Torcx"),
        "{err}"
    );
    let cat = |p: &str| stdout(&sh(Command::new("unsquashfs").arg("-cat").arg(&out).arg(p)));
    let ds = cat("usr/lib/systemd/system/docker.service");
    assert!(
        ds.contains("ExecStart=/usr/bin/dockerd --containerd=")
            && ds.contains("TORCX_BINDIR=/usr/bin"),
        "{ds}"
    );
    let cs = cat("usr/lib/systemd/system/containerd.service");
    assert!(
        cs.contains("PATH=/usr/bin:/usr/sbin")
            && cs.contains(
                "ExecStart=/usr/bin/containerd --config /usr/share/containerd/config.toml"
            ),
        "{cs}"
    );
    assert!(!ds.contains("torcx") && !cs.contains("torcx"), "{ds}{cs}");
    assert_eq!(
        cat("usr/lib/systemd/system/sockets.target.d/10-docker-docker.socket.conf"),
        "[Unit]\nUpholds=docker.socket\n"
    );
    let l = unsquashfs_list(&out);
    assert!(
        l.contains("squashfs-root/usr/bin/docker-init -> /usr/libexec/docker/docker-init"),
        "{l}"
    );
    assert!(
        l.contains("squashfs-root/usr/share/containerd/config.toml"),
        "{l}"
    );
    assert!(
        !l.contains(".torcx") && !l.contains("squashfs-root/lib"),
        "{l}"
    );
    assert!(
        l.lines()
            .any(|x| x.starts_with("-rwxr-xr-x 0/0") && x.ends_with("usr/bin/dockerd")),
        "{l}"
    );
    let rel = cat("usr/lib/extension-release.d/extension-release.docker");
    assert!(
        rel.contains("ID=flatcar") && rel.contains("EXTENSION_RELOAD_MANAGER=1"),
        "{rel}"
    );

    let text = stdout(&ok(&["sysext", "check", s(&out)]));
    assert!(
        text.contains("ok: systemd-sysext would merge it as docker"),
        "{text}"
    );
    let merged = sysext_merge(&[("docker", &out)], "ROOT/usr/bin/docker");
    assert!(
        merged.contains("Docker version 20.10.24 from torcx"),
        "{merged}"
    );

    // not a Torcx image
    let bogus = d.path().join("bogus.tgz");
    write(&bogus, &tar_gz(&[("bin/x", b"x", 0o755)]), 0o644);
    let o = run(&[
        "sysext",
        "convert-torcx",
        s(&bogus),
        "x",
        "--version",
        "1",
        "--arch",
        "x86-64",
        "-o",
        s(&d.path().join("x.raw")),
    ]);
    assert!(
        !o.status.success()
            && stderr(&o).contains("not a Torcx image: no readable .torcx/manifest.json"),
        "{}",
        stderr(&o)
    );
}

// ---------------------------------------------------------------------------------------
// Flix from an OCI image
// ---------------------------------------------------------------------------------------

/// Host paths of `bin`'s shared libraries and interpreter, as ldd reports them.
fn host_libs(bin: &str) -> Vec<String> {
    let out = stdout(&sh(Command::new("ldd").arg(bin)));
    out.lines()
        .filter_map(|l| {
            let l = l.trim();
            let p = match l.split_once("=>") {
                Some((_, r)) => r.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            p.starts_with('/').then(|| p.to_owned())
        })
        .collect()
}

fn tar_layer(entries: &[(String, Vec<u8>, u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_cksum();
        b.append_data(&mut h, path, data.as_slice())
            .expect("append");
    }
    b.into_inner().expect("tar")
}

/// An OCI image layout: layer 1 holds ls and env with their libraries (copied from the
/// host) and usr/bin/junk; layer 2 (gzip) whites junk out and adds usr/share/demo.
fn oci_layout(dir: &Path) -> PathBuf {
    oci_layout_with(dir, &[], &[])
}

/// [`oci_layout`] with more host binaries (and their libraries) in layer 1 and more
/// files (path, content) in layer 2.
fn oci_layout_with(dir: &Path, more_bins: &[&str], more_files: &[(&str, &[u8])]) -> PathBuf {
    let mut l1: Vec<(String, Vec<u8>, u32)> = Vec::new();
    for bin in ["/usr/bin/ls", "/usr/bin/env"].iter().chain(more_bins) {
        l1.push((
            bin.trim_start_matches('/').to_owned(),
            std::fs::read(bin).expect("bin"),
            0o755,
        ));
        for lib in host_libs(bin) {
            let rel = lib.trim_start_matches('/').to_owned();
            if !l1.iter().any(|(p, _, _)| *p == rel) {
                l1.push((rel, std::fs::read(&lib).expect("lib"), 0o755));
            }
        }
    }
    l1.push(("usr/bin/junk".into(), b"junk".to_vec(), 0o755));
    let mut l2: Vec<(&str, &[u8], u32)> = vec![
        ("usr/bin/.wh.junk", b"", 0o644),
        ("usr/share/demo/readme", b"from layer 2\n", 0o644),
    ];
    l2.extend(more_files.iter().map(|(p, c)| (*p, *c, 0o644)));
    let l2 = tar_gz(&l2);
    let l1 = tar_layer(&l1);
    let layout = dir.join("oci");
    let put = |data: &[u8]| -> String {
        let h = sha256(data);
        write(&layout.join(format!("blobs/sha256/{h}")), data, 0o644);
        format!("sha256:{h}")
    };
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}]}}"#,
        put(config),
        config.len(),
        put(&l1),
        l1.len(),
        put(&l2),
        l2.len()
    );
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{}}}]}}"#,
        put(manifest.as_bytes()),
        manifest.len()
    );
    write(&layout.join("index.json"), index.as_bytes(), 0o644);
    write(
        &layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
    );
    layout
}

#[test]
fn flix_bundles_binaries_from_an_oci_image_and_they_run_from_the_merged_extension() {
    let d = tempfile::tempdir().expect("tmp");
    let layout = oci_layout(d.path());
    let out = d.path().join("flixdemo-1-x86-64.raw");
    let o = ok(&[
        "sysext",
        "flix",
        s(&layout),
        "flixdemo",
        "/usr/bin/ls",
        "/usr/bin/env:/usr/bin/flixenv",
        "--resource",
        "/usr/share/demo",
        "--arch",
        "x86-64",
        "-o",
        s(&out),
    ]);
    assert!(
        stderr(&o).contains("flixed /usr/bin/ls, /usr/bin/flixenv"),
        "{}",
        stderr(&o)
    );
    let text = stdout(&ok(&["sysext", "check", s(&out)]));
    assert!(
        text.contains("ok: systemd-sysext would merge it as flixdemo"),
        "{text}"
    );
    let l = unsquashfs_list(&out);
    assert!(
        l.contains("squashfs-root/usr/bin/ls -> /usr/lib/flixdemo/bin/ls"),
        "{l}"
    );
    assert!(
        l.contains("squashfs-root/usr/bin/flixenv -> /usr/lib/flixdemo/bin/flixenv"),
        "{l}"
    );
    assert!(
        l.contains("squashfs-root/usr/lib/flixdemo/lib/libc.so.6"),
        "{l}"
    );
    assert!(
        l.contains("squashfs-root/usr/lib/flixdemo/lib/ld-linux-x86-64.so.2"),
        "{l}"
    );
    assert!(l.contains("squashfs-root/usr/share/demo/readme"), "{l}");

    // readelf on the packed binary: interpreter and run path point into the prefix
    let x = d.path().join("x");
    sh(Command::new("unsquashfs")
        .arg("-q")
        .arg("-d")
        .arg(&x)
        .arg(&out));
    let dynamic = stdout(&sh(Command::new("readelf")
        .arg("-d")
        .arg(x.join("usr/lib/flixdemo/bin/ls"))));
    assert!(
        dynamic.contains("Library runpath: [/usr/lib/flixdemo/lib]"),
        "{dynamic}"
    );
    let phdrs = stdout(&sh(Command::new("readelf")
        .arg("-l")
        .arg(x.join("usr/lib/flixdemo/bin/ls"))));
    assert!(
        phdrs.contains(
            "[Requesting program interpreter: /usr/lib/flixdemo/lib/ld-linux-x86-64.so.2]"
        ),
        "{phdrs}"
    );
    // every library the host's ls needs was bundled
    for lib in host_libs("/usr/bin/ls") {
        let base = lib.rsplit('/').next().expect("base");
        assert!(
            x.join("usr/lib/flixdemo/lib").join(base).is_file(),
            "{base} not bundled"
        );
    }

    // runs from the merged extension in a throwaway root that has nothing else;
    // the loader's --list (what ldd prints) resolves every library inside the prefix
    let merged = sysext_merge(
        &[("flixdemo", &out)],
        "chroot ROOT /usr/bin/ls /usr/share/demo; chroot ROOT /usr/bin/flixenv FLIX=works /usr/bin/flixenv; \
         echo LIST; chroot ROOT /usr/lib/flixdemo/lib/ld-linux-x86-64.so.2 --list /usr/bin/ls",
    );
    assert!(merged.contains("Using extensions 'flixdemo'"), "{merged}");
    assert!(merged.contains("readme"), "ls did not run: {merged}");
    assert!(merged.contains("FLIX=works"), "env did not run: {merged}");
    let list = merged.split("LIST").nth(1).expect("list");
    let resolved: Vec<&str> = list.lines().filter(|l| l.contains("=>")).collect();
    assert!(!resolved.is_empty(), "{list}");
    for l in resolved {
        assert!(
            l.contains("=> /usr/lib/flixdemo/lib/"),
            "resolved outside the prefix: {l}"
        );
    }

    // the whiteout removed junk; the same image as a tarball and as a directory
    let o = run(&[
        "sysext",
        "flix",
        s(&layout),
        "j",
        "/usr/bin/junk",
        "--arch",
        "x86-64",
        "-o",
        s(&d.path().join("j.raw")),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("/usr/bin/junk: not a file"),
        "{}",
        stderr(&o)
    );
    let tarball = d.path().join("oci.tar");
    sh(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&tarball)
        .arg("."));
    let from_tar = d.path().join("t.raw");
    ok(&[
        "sysext",
        "flix",
        s(&tarball),
        "flixdemo",
        "/usr/bin/ls",
        "--arch",
        "x86-64",
        "-o",
        s(&from_tar),
    ]);
    let rootfs = d.path().join("rootfs");
    std::fs::create_dir(&rootfs).expect("mkdir");
    sh(Command::new("cp").arg("-a").arg(x.join("usr")).arg(&rootfs));
    let from_dir = d.path().join("dir.raw");
    ok(&[
        "sysext",
        "flix",
        s(&rootfs),
        "again",
        "/usr/lib/flixdemo/bin/ls:/usr/bin/ls2",
        "--from-dir",
        "--arch",
        "x86-64",
        "-o",
        s(&from_dir),
    ]);
    assert!(
        unsquashfs_list(&from_dir).contains("squashfs-root/usr/bin/ls2 -> /usr/lib/again/bin/ls2")
    );
}

// ---------------------------------------------------------------------------------------
// Flatwrap from an OCI image
// ---------------------------------------------------------------------------------------

#[test]
fn flatwrap_runs_programs_of_an_oci_image_in_their_own_root_from_the_merged_extension() {
    let d = tempfile::tempdir().expect("tmp");
    assert!(
        !Path::new("/flatwrap-marker").exists(),
        "the host must not have the image's marker"
    );
    let layout = oci_layout_with(
        d.path(),
        &["/usr/bin/cat"],
        &[
            ("flatwrap-marker", b"only in the image\n"),
            ("etc/flatwrap-etc", b"the image's etc\n"),
        ],
    );
    let host = d.path().join("fwhost-1-x86-64.raw");
    let o = ok(&[
        "sysext",
        "flatwrap",
        s(&layout),
        "fwhost",
        "/usr/bin/cat:/usr/bin/fwcat",
        "/usr/bin/ls:/usr/bin/fwls",
        "--arch",
        "x86-64",
        "-o",
        s(&host),
    ]);
    let e = stderr(&o);
    assert!(
        e.contains("wrapped /usr/bin/fwcat, /usr/bin/fwls around /usr/lib/fwhost/rootfs"),
        "{e}"
    );
    assert!(
        e.contains("from the host: /dev /etc /home /proc /run /sys /tmp /var /var/tmp"),
        "{e}"
    );
    let unit = d.path().join("fwchroot-demo.service");
    write(
        &unit,
        b"[Service]\nExecStart=/usr/bin/fwcatc /flatwrap-marker\n",
        0o644,
    );
    let chroot = d.path().join("fwchroot-1-x86-64.raw");
    ok(&[
        "sysext",
        "flatwrap",
        s(&layout),
        "fwchroot",
        "/usr/bin/cat:/usr/bin/fwcatc",
        "--etc-map",
        "chroot",
        "--unit",
        s(&unit),
        "--arch",
        "x86-64",
        "-o",
        s(&chroot),
    ]);
    for (name, img) in [("fwhost", &host), ("fwchroot", &chroot)] {
        let text = stdout(&ok(&["sysext", "check", s(img)]));
        assert!(
            text.contains(&format!("ok: systemd-sysext would merge it as {name}")),
            "{text}"
        );
    }
    let l = unsquashfs_list(&host);
    for want in [
        "squashfs-root/usr/bin/fwcat",
        "squashfs-root/usr/bin/fwls",
        "squashfs-root/usr/lib/fwhost/enter",
        "squashfs-root/usr/lib/fwhost/mnt",
        "squashfs-root/usr/lib/fwhost/rootfs/flatwrap-marker",
        "squashfs-root/usr/lib/fwhost/rootfs/etc/flatwrap-etc",
        "squashfs-root/usr/lib/fwhost/rootfs/usr/bin/cat",
        "squashfs-root/usr/lib/fwhost/rootfs/usr/share/demo/readme",
    ] {
        assert!(l.lines().any(|x| x.ends_with(want)), "{want} missing:\n{l}");
    }
    assert!(
        !l.contains("rootfs/usr/bin/junk"),
        "the whiteout was not applied:\n{l}"
    );
    assert!(unsquashfs_list(&chroot)
        .contains("squashfs-root/usr/lib/systemd/system/fwchroot-demo.service"));
    // the wrapper is a script that hands its program to enter
    let x = d.path().join("x");
    sh(Command::new("unsquashfs")
        .arg("-q")
        .arg("-d")
        .arg(&x)
        .arg(&host));
    let w = std::fs::read_to_string(x.join("usr/bin/fwcat")).expect("wrapper");
    assert!(
        w.starts_with("#!/bin/sh\n")
            && w.contains(r#"exec "${FLATWRAP_ROOT-}"'/usr/lib/fwhost/enter' '/usr/bin/cat' "$@""#),
        "{w}"
    );

    // run for real from a throwaway root where both are merged (FLATWRAP_ROOT=the root: the
    // scripts run with the test host's sh, unshare and bwrap, the programs in the image's
    // root): as root with unshare --mount, through the user-namespace path, with bwrap
    // (installed by scripts/setup.sh; FLATWRAP_NO_BWRAP=1 takes the unshare paths), and
    // with --etc-map chroot
    assert!(
        Path::new("/usr/bin/bwrap").exists(),
        "bwrap missing: run scripts/setup.sh"
    );
    let passwd = std::fs::read_to_string("/etc/passwd").expect("passwd");
    let first = passwd.lines().next().expect("a line");
    let cmds = "cd /tmp; for mode in ROOT USERNS BWRAP; do \
        nb=1; if [ $mode = USERNS ]; then export FLATWRAP_USERNS=1; fi; if [ $mode = BWRAP ]; then nb=; fi; \
        export FLATWRAP_NO_BWRAP=$nb; echo \"== $mode\"; \
        FLATWRAP_ROOT={R} {R}/usr/bin/fwcat /flatwrap-marker /etc/passwd 2>&1; \
        FLATWRAP_ROOT={R} {R}/usr/bin/fwcat /etc/flatwrap-etc 2>&1 || echo NO-IMAGE-ETC; \
        FLATWRAP_ROOT={R} {R}/usr/bin/fwls -a / | tr '\\n' ' '; echo; \
        echo TMPFS=$(FLATWRAP_ROOT={R} {R}/usr/bin/fwcat /proc/self/mountinfo | grep -c ' flatwrap-fwhost ' || true); \
        done; unset FLATWRAP_USERNS; export FLATWRAP_NO_BWRAP=1; echo '== CHROOT'; \
        FLATWRAP_ROOT={R} {R}/usr/bin/fwcatc /flatwrap-marker /etc/flatwrap-etc 2>&1; \
        FLATWRAP_ROOT={R} {R}/usr/bin/fwcatc /etc/passwd 2>&1 || echo NO-HOST-ETC; \
        echo '== AFTER'; ls {R}/usr/lib/fwhost/mnt | wc -l";
    let merged = sysext_merge_as(&[("fwhost", &host), ("fwchroot", &chroot)], cmds, "{R}");
    assert!(
        merged.contains("Using extensions 'fwchroot', 'fwhost'"),
        "{merged}"
    );
    let part = |tag: &str| {
        merged
            .split(&format!("== {tag}"))
            .nth(1)
            .expect(tag)
            .split("== ")
            .next()
            .expect(tag)
            .to_owned()
    };
    for mode in ["ROOT", "USERNS", "BWRAP"] {
        let p = part(mode);
        // unshare builds the root on the tmpfs flatwrap-fwhost (seen more than once when the
        // rbound host /tmp holds the throwaway root); bwrap on a tmpfs of its own
        let tmpfs = p
            .lines()
            .find_map(|l| l.strip_prefix("TMPFS="))
            .unwrap_or_else(|| panic!("{mode}: no TMPFS= line:\n{merged}"));
        assert_eq!(
            tmpfs == "0",
            mode == "BWRAP",
            "{mode}: not the expected way in (TMPFS={tmpfs}):\n{merged}"
        );
        assert!(
            p.contains("only in the image"),
            "{mode}: the program did not see the image's root:\n{merged}"
        );
        assert!(
            p.contains(first),
            "{mode}: /etc is not the host's:\n{merged}"
        );
        assert!(
            p.contains("NO-IMAGE-ETC") && !p.contains("the image's etc"),
            "{mode}: the image's /etc leaked through:\n{merged}"
        );
        let ls = p
            .lines()
            .rfind(|l| l.contains(" usr "))
            .unwrap_or_else(|| panic!("{mode}: ls / did not run:\n{merged}"));
        let names: Vec<&str> = ls.split_whitespace().collect();
        for n in [
            "flatwrap-marker",
            "lib64",
            "usr",
            "etc",
            "dev",
            "proc",
            "tmp",
        ] {
            assert!(
                names.contains(&n),
                "{mode}: {n} missing from / in the private root: {ls}"
            );
        }
        assert!(
            !names.contains(&"root") && !names.contains(&"boot"),
            "{mode}: the host's root shows through: {ls}"
        );
    }
    let c = part("CHROOT");
    assert!(
        c.contains("only in the image") && c.contains("the image's etc"),
        "--etc-map chroot: {merged}"
    );
    assert!(
        c.contains("NO-HOST-ETC") && !c.contains(first),
        "--etc-map chroot saw the host's /etc: {merged}"
    );
    assert_eq!(
        part("AFTER").trim(),
        "0",
        "mounts leaked out of the wrapper's namespace: {merged}"
    );

    // --from-dir takes the same tree; a program that is not in the image is refused
    let rootfs = x.join("usr/lib/fwhost/rootfs");
    let again = d.path().join("again.raw");
    ok(&[
        "sysext",
        "flatwrap",
        s(&rootfs),
        "again",
        "/usr/bin/cat",
        "--from-dir",
        "--arch",
        "x86-64",
        "-o",
        s(&again),
    ]);
    assert!(unsquashfs_list(&again).contains("squashfs-root/usr/lib/again/rootfs/flatwrap-marker"));
    let o = run(&[
        "sysext",
        "flatwrap",
        s(&layout),
        "j",
        "/usr/bin/junk",
        "--arch",
        "x86-64",
        "-o",
        s(&d.path().join("j.raw")),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("/usr/bin/junk: not a file"),
        "{}",
        stderr(&o)
    );
}
