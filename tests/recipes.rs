//! The recipe catalogue against a loopback mirror of upstream-shaped fake artifacts: every
//! recipe builds (archives in upstream's layouts: .tar.gz, .tar.xz, .tar.zst, .zip, plain
//! binaries; checksums as upstream publishes them), its image holds what the bakery's image
//! holds (paths, units), and all of them merge with `systemd-sysext`. Then releases the
//! bakery's way (`sysext release`): the served layout, `sysext list --bakery`, and a bake
//! that fetches from the served directory.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::http::Server;
use support::*;

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().expect("run flatbake")
}

type Entry = (String, Vec<u8>, u32);

/// A fake executable that says what it is.
fn exe(path: &str, what: &str) -> Entry {
    (
        path.to_owned(),
        format!("#!/bin/sh\necho {what}\n").into_bytes(),
        0o755,
    )
}

fn text(path: &str, body: &str) -> Entry {
    (path.to_owned(), body.as_bytes().to_vec(), 0o644)
}

fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_mtime(1_600_000_000);
        h.set_uid(1001);
        h.set_cksum();
        b.append_data(&mut h, path, data.as_slice())
            .expect("append");
    }
    b.into_inner().expect("tar")
}

fn tgz(entries: &[Entry]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&tar(entries)).expect("gz");
    e.finish().expect("gz")
}

fn txz(entries: &[Entry]) -> Vec<u8> {
    use std::io::Write;
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(&tar(entries)).expect("xz");
    e.finish().expect("xz")
}

fn tzst(entries: &[Entry]) -> Vec<u8> {
    compress_with("zstd", &["-q", "-c"], &tar(entries))
}

/// A zip as HashiCorp ships them, made by Info-ZIP's zip.
fn zip(entries: &[Entry]) -> Vec<u8> {
    let d = tempfile::tempdir().expect("tmp");
    for (p, data, mode) in entries {
        write(&d.path().join(p), data, *mode);
    }
    let out = d.path().join("out.zip");
    let names: Vec<&str> = entries.iter().map(|(p, _, _)| p.as_str()).collect();
    let o = sh(Command::new("zip")
        .current_dir(d.path())
        .arg("-q")
        .arg(&out)
        .args(&names));
    assert!(o.status.success(), "zip failed");
    std::fs::read(out).expect("zip")
}

/// The mirror's directory: `https://HOST/PATH` is served as `HOST/PATH`.
struct Mirror {
    dir: tempfile::TempDir,
}

impl Mirror {
    fn new() -> Mirror {
        Mirror {
            dir: tempfile::tempdir().expect("tmp"),
        }
    }

    fn path(&self, url: &str) -> PathBuf {
        self.dir.path().join(url.split_once("://").expect("url").1)
    }

    fn put(&self, url: &str, data: &[u8]) -> String {
        write(&self.path(url), data, 0o644);
        sha256(data)
    }

    /// `url` with a `sha256sum` line for it at `sums` (appended to what is there).
    fn with_sums(&self, url: &str, data: &[u8], sums: &str) {
        let h = self.put(url, data);
        let file = url.rsplit('/').next().expect("file");
        let old = std::fs::read_to_string(self.path(sums)).unwrap_or_default();
        self.put(sums, format!("{old}{h}  {file}\n").as_bytes());
    }

    /// `url` with a file holding just its digest at `url` + `suffix`.
    fn with_bare_sum(&self, url: &str, data: &[u8], suffix: &str) {
        let h = self.put(url, data);
        self.put(&format!("{url}{suffix}"), format!("{h}\n").as_bytes());
    }

    /// `url` as a GitHub release asset, its digest recorded in the release JSON of `tag`.
    fn with_github_digest(&self, repo: &str, tag: &str, url: &str, data: &[u8]) {
        let h = self.put(url, data);
        let api = format!("https://api.github.com/repos/{repo}/releases/tags/{tag}");
        let mut assets: Vec<serde_json::Value> = std::fs::read_to_string(self.path(&api))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("assets").and_then(|a| a.as_array().cloned()))
            .unwrap_or_default();
        let file = url.rsplit('/').next().expect("file");
        assets.push(serde_json::json!({"name": file, "digest": format!("sha256:{h}")}));
        let v = serde_json::json!({"tag_name": tag, "assets": assets});
        self.put(&api, v.to_string().as_bytes());
    }
}

/// One recipe build: arguments after `create`, and what its image must hold (paths as the
/// bakery's image has them; `X -> T` for a symlink).
struct Case {
    name: &'static str,
    file_version: &'static str,
    args: Vec<String>,
    expect: Vec<&'static str>,
    absent: Vec<&'static str>,
}

fn case(name: &'static str, version: &'static str, expect: &[&'static str]) -> Case {
    Case {
        name,
        file_version: version,
        args: vec![name.to_owned(), version.to_owned()],
        expect: expect.to_vec(),
        absent: Vec::new(),
    }
}

const GH: &str = "https://github.com";

/// Upstream-shaped artifacts for every recipe (x86-64), and the builds to run.
fn catalogue(m: &Mirror, rootfs: &Path) -> Vec<Case> {
    let mut cases = Vec::new();

    // wasmtime: tar.xz, GitHub digest
    let url = format!(
        "{GH}/bytecodealliance/wasmtime/releases/download/v24.0.0/wasmtime-v24.0.0-x86_64-linux.tar.xz"
    );
    let data = txz(&[
        exe("wasmtime-v24.0.0-x86_64-linux/wasmtime", "wasmtime"),
        text("wasmtime-v24.0.0-x86_64-linux/LICENSE", "Apache-2.0"),
    ]);
    m.with_github_digest("bytecodealliance/wasmtime", "v24.0.0", &url, &data);
    let mut c = case("wasmtime", "v24.0.0", &["usr/bin/wasmtime"]);
    c.absent = vec!["LICENSE"];
    cases.push(c);

    // docker: tgz, no published checksum (--sha256)
    let url = "https://download.docker.com/linux/static/stable/x86_64/docker-27.3.1.tgz";
    let data = tgz(&[
        exe("docker/docker", "docker"),
        exe("docker/dockerd", "dockerd"),
        exe("docker/docker-proxy", "docker-proxy"),
        exe("docker/containerd", "containerd"),
        exe("docker/containerd-shim-runc-v2", "shim"),
        exe("docker/ctr", "ctr"),
        exe("docker/runc", "runc"),
    ]);
    let h = m.put(url, &data);
    let mut c = case(
        "docker",
        "27.3.1",
        &[
            "usr/bin/docker",
            "usr/bin/dockerd",
            "usr/bin/containerd",
            "usr/bin/runc",
            "usr/lib/systemd/system/docker.service",
            "usr/lib/systemd/system/docker.socket",
            "usr/lib/systemd/system/containerd.service",
            "usr/share/containerd/config.toml",
        ],
    );
    c.args
        .extend(["--sha256".into(), format!("docker-27.3.1.tgz={h}")]);
    cases.push(c);

    // containerd: static tgz + .sha256sum, runc named by the release's runc-version file
    let base = format!("{GH}/containerd/containerd/releases/download/v2.0.0");
    let url = format!("{base}/containerd-static-2.0.0-linux-amd64.tar.gz");
    m.with_sums(
        &url,
        &tgz(&[
            exe("bin/containerd", "containerd"),
            exe("bin/containerd-shim-runc-v2", "shim"),
            exe("bin/ctr", "ctr"),
        ]),
        &format!("{url}.sha256sum"),
    );
    m.put(
        "https://raw.githubusercontent.com/containerd/containerd/refs/tags/v2.0.0/script/setup/runc-version",
        b"v1.2.1\n",
    );
    let rb = format!("{GH}/opencontainers/runc/releases/download/v1.2.1");
    m.with_sums(
        &format!("{rb}/runc.amd64"),
        b"#!/bin/sh\necho runc\n",
        &format!("{rb}/runc.sha256sum"),
    );
    m.with_sums(
        &format!("{rb}/runc.arm64"),
        b"other",
        &format!("{rb}/runc.sha256sum"),
    );
    cases.push(case(
        "containerd",
        "2.0.0",
        &[
            "usr/bin/containerd",
            "usr/bin/containerd-shim-runc-v2",
            "usr/bin/ctr",
            "usr/bin/runc",
            "usr/lib/systemd/system/containerd.service",
            "usr/lib/systemd/system/multi-user.target.d/10-containerd-service.conf",
            "usr/share/containerd/config.toml",
            "usr/share/containerd/config-cgroupfs.toml",
        ],
    ));

    // docker-compose: plain binary + per-asset .sha256
    let url = format!("{GH}/docker/compose/releases/download/v2.24.5/docker-compose-linux-x86_64");
    m.with_sums(&url, b"#!/bin/sh\necho compose\n", &format!("{url}.sha256"));
    cases.push(case(
        "docker-compose",
        "2.24.5",
        &["usr/local/lib/docker/cli-plugins/docker-compose"],
    ));

    // docker-buildx: plain binary + checksums.txt
    let b = format!("{GH}/docker/buildx/releases/download/v0.25.0");
    m.with_sums(
        &format!("{b}/buildx-v0.25.0.linux-amd64"),
        b"#!/bin/sh\necho buildx\n",
        &format!("{b}/checksums.txt"),
    );
    cases.push(case(
        "docker-buildx",
        "0.25.0",
        &["usr/local/lib/docker/cli-plugins/docker-buildx"],
    ));

    // k3s: plain binary + sha256sum-amd64.txt
    let b = format!("{GH}/k3s-io/k3s/releases/download/v1.32.2+k3s1");
    m.with_sums(
        &format!("{b}/k3s"),
        b"#!/bin/sh\necho k3s\n",
        &format!("{b}/sha256sum-amd64.txt"),
    );
    cases.push(case(
        "k3s",
        "v1.32.2+k3s1",
        &[
            "usr/local/bin/k3s",
            "usr/local/bin/kubectl -> ./k3s",
            "usr/local/bin/ctr -> ./k3s",
            "usr/local/bin/crictl -> ./k3s",
            "usr/local/lib/systemd/system/k3s.service",
            "usr/local/lib/systemd/system/k3s-agent.service",
        ],
    ));

    // rke2: tarball unpacked into usr/local, uninstall script left out
    let b = format!("{GH}/rancher/rke2/releases/download/v1.32.2+rke2r1");
    m.with_sums(
        &format!("{b}/rke2.linux-amd64.tar.gz"),
        &tgz(&[
            exe("bin/rke2", "rke2"),
            exe("bin/rke2-killall.sh", "killall"),
            exe("bin/rke2-uninstall.sh", "uninstall"),
            text(
                "lib/systemd/system/rke2-server.service",
                "[Service]\nExecStart=/usr/local/bin/rke2 server\n",
            ),
            text(
                "lib/systemd/system/rke2-agent.service",
                "[Service]\nExecStart=/usr/local/bin/rke2 agent\n",
            ),
            text("share/rke2/rke2-cis-sysctl.conf", "x=1\n"),
        ]),
        &format!("{b}/sha256sum-amd64.txt"),
    );
    let mut c = case(
        "rke2",
        "v1.32.2+rke2r1",
        &[
            "usr/local/bin/rke2",
            "usr/local/bin/rke2-killall.sh",
            "usr/local/lib/systemd/system/rke2-server.service",
            "usr/local/lib/systemd/system/rke2-agent.service",
            "usr/local/share/rke2/rke2-cis-sysctl.conf",
        ],
    );
    c.absent = vec!["rke2-uninstall.sh"];
    cases.push(c);

    // kubernetes: three binaries with bare .sha256 files; CNI looked up (latest release)
    kubernetes_artifacts(m, "v1.32.2", "amd64");
    cases.push(case(
        "kubernetes",
        "v1.32.2",
        &[
            "usr/bin/kubelet",
            "usr/bin/kubeadm",
            "usr/bin/kubectl",
            "usr/local/bin/cni/bridge",
            "usr/local/bin/cni/host-local",
            "usr/local/share/kubernetes-version",
            "usr/local/share/kubernetes-cni-version",
            "usr/lib/systemd/system/kubelet.service",
            "usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf",
            "usr/lib/systemd/system/multi-user.target.d/10-kubelet-service.conf",
            "usr/libexec/kubernetes/kubelet-plugins/volume/exec -> /var/kubernetes/kubelet-plugins/volume/exec",
        ],
    ));

    // crio: the static bundle as cri-o's contrib/bundle/build lays it out (bin/, etc/,
    // contrib/, cni-plugins/, man/, completions/, install script), installed the bakery's way
    let url = "https://storage.googleapis.com/cri-o/artifacts/cri-o.amd64.v1.32.0.tar.gz";
    m.with_sums(
        url,
        &tgz(&[
            exe("cri-o/bin/crio", "crio"),
            exe("cri-o/bin/pinns", "pinns"),
            exe("cri-o/bin/crun", "crun"),
            exe("cri-o/bin/runc", "runc"),
            exe("cri-o/bin/conmon", "conmon"),
            exe("cri-o/bin/crictl", "crictl"),
            text(
                "cri-o/contrib/crio.service",
                "[Unit]\nDescription=Container Runtime Interface for OCI (CRI-O)\n[Service]\nEnvironmentFile=-/etc/sysconfig/crio\nExecStart=/usr/local/bin/crio \\\n          $CRIO_CONFIG_OPTIONS \\\n          $CRIO_METRICS_OPTIONS\nExecReload=/bin/kill -s HUP $MAINPID\n[Install]\nWantedBy=multi-user.target\n",
            ),
            text("cri-o/contrib/policy.json", "{\"default\": [{\"type\": \"insecureAcceptAnything\"}]}\n"),
            text("cri-o/contrib/11-crio-ipv4-bridge.conflist", "{\"cniVersion\": \"1.0.0\"}\n"),
            text("cri-o/etc/crio.conf", "# [crio]\n"),
            text("cri-o/etc/10-crun.conf", "[crio.runtime]\ndefault_runtime = \"crun\"\n"),
            text("cri-o/etc/crictl.yaml", "runtime-endpoint: unix:///var/run/crio/crio.sock\n"),
            text("cri-o/etc/crio-umount.conf", "/var/lib/containers/storage/*\n"),
            text("cri-o/man/crio.8", ".TH crio\n"),
            text("cri-o/completions/bash/crio", "complete -F _crio crio\n"),
            exe("cri-o/cni-plugins/bridge", "bridge"),
            exe("cri-o/cni-plugins/loopback", "loopback"),
            exe("cri-o/install", "install"),
            text("cri-o/Makefile", "install:\n"),
            text("cri-o/README.md", "# CRI-O static build bundle\n"),
        ]),
        &format!("{url}.sha256sum"),
    );
    let mut c = case(
        "crio",
        "v1.32.0",
        &[
            "usr/bin/crio",
            "usr/bin/crun",
            "usr/bin/runc",
            "usr/bin/conmon",
            "usr/bin/crictl",
            "usr/lib/systemd/system/crio.service",
            "usr/lib/systemd/system/crio.service.d/10-crio.conf",
            "usr/lib/systemd/system/multi-user.target.d/10-crio.conf",
            "usr/share/crio/etc/crio/crio.conf",
            "usr/share/crio/etc/crio/crio.conf.d/10-crun.conf",
            "usr/share/crio/etc/crictl.yaml",
            "usr/share/crio/etc/containers/policy.json",
            "usr/share/oci-umount/oci-umount.d/crio-umount.conf",
            "usr/share/crio/cni/bin/bridge",
            "usr/share/crio/cni/etc/net.d/11-crio-ipv4-bridge.conflist",
            "usr/share/crio/README-flatcar",
        ],
    );
    c.absent = vec!["usr/bin/install", "usr/share/crio/etc/crio.conf", "usr/man"];
    cases.push(c);

    // cilium: tgz + .sha256sum
    let url =
        format!("{GH}/cilium/cilium-cli/releases/download/v0.16.24/cilium-linux-amd64.tar.gz");
    m.with_sums(
        &url,
        &tgz(&[exe("cilium", "cilium")]),
        &format!("{url}.sha256sum"),
    );
    cases.push(case("cilium", "v0.16.24", &["usr/local/bin/cilium"]));

    // tailscale: tgz with a top directory, bare .sha256
    let url = "https://pkgs.tailscale.com/stable/tailscale_1.76.6_amd64.tgz";
    m.with_bare_sum(
        url,
        &tgz(&[
            exe("tailscale_1.76.6_amd64/tailscale", "tailscale"),
            exe("tailscale_1.76.6_amd64/tailscaled", "tailscaled"),
            text(
                "tailscale_1.76.6_amd64/systemd/tailscaled.service",
                "[Unit]\nDescription=Tailscale node agent\n[Service]\nEnvironmentFile=/etc/default/tailscaled\nExecStart=/usr/sbin/tailscaled --state=/var/lib/tailscale/tailscaled.state --socket=/run/tailscale/tailscaled.sock --port=${PORT} $FLAGS\nExecStopPost=/usr/sbin/tailscaled --cleanup\n[Install]\nWantedBy=multi-user.target\n",
            ),
            text(
                "tailscale_1.76.6_amd64/systemd/tailscaled.defaults",
                "PORT=\"41641\"\nFLAGS=\"\"\n",
            ),
        ]),
        ".sha256",
    );
    cases.push(case(
        "tailscale",
        "v1.76.6",
        &[
            "usr/bin/tailscale",
            "usr/bin/tailscaled",
            "usr/lib/systemd/system/tailscaled.service",
            "usr/share/tailscale/tailscaled.defaults",
            "usr/lib/systemd/system/multi-user.target.d/10-tailscale.conf",
            "usr/lib/tmpfiles.d/10-tailscale.conf",
            "usr/lib/systemd/network/50-tailscale.network",
        ],
    ));

    // wasmcloud v1: wasmcloud host binary + NATS (looked up)
    m.put(
        "https://api.github.com/repos/nats-io/nats-server/releases/latest",
        br#"{"tag_name":"v2.10.22"}"#,
    );
    let nb = format!("{GH}/nats-io/nats-server/releases/download/v2.10.22");
    m.with_sums(
        &format!("{nb}/nats-server-v2.10.22-linux-amd64.tar.gz"),
        &tgz(&[exe("nats-server-v2.10.22-linux-amd64/nats-server", "nats")]),
        &format!("{nb}/SHA256SUMS"),
    );
    m.with_github_digest(
        "wasmcloud/wasmcloud",
        "v1.2.1",
        &format!(
            "{GH}/wasmcloud/wasmcloud/releases/download/v1.2.1/wasmcloud-x86_64-unknown-linux-musl"
        ),
        b"#!/bin/sh\necho wasmcloud\n",
    );
    cases.push(case(
        "wasmcloud",
        "v1.2.1",
        &[
            "usr/bin/wasmcloud",
            "usr/bin/nats-server",
            "usr/lib/systemd/system/nats.service",
            "usr/lib/systemd/system/wasmcloud.service",
            "usr/lib/systemd/system/multi-user.target.d/10-nats-service.conf",
            "usr/lib/systemd/system/multi-user.target.d/10-wasmcloud-service.conf",
            "usr/share/nats/nats.conf",
        ],
    ));

    // wasmedge 0.14 (nested WasmEdge-VERSION-Linux/) and 0.15 (flat): version-conditional
    for (v, top) in [("0.14.1", "WasmEdge-0.14.1-Linux/"), ("0.15.0", "")] {
        m.with_github_digest(
            "WasmEdge/WasmEdge",
            v,
            &format!(
                "{GH}/WasmEdge/WasmEdge/releases/download/{v}/WasmEdge-{v}-ubuntu20.04_x86_64.tar.gz"
            ),
            &tgz(&[
                exe(&format!("{top}bin/wasmedge"), "wasmedge"),
                exe(&format!("{top}bin/wasmedgec"), "wasmedgec"),
                text(&format!("{top}lib/libwasmedge.so.0.1.0"), "ELF"),
                text(&format!("{top}include/wasmedge/wasmedge.h"), "/* */"),
            ]),
        );
    }
    for v in ["0.14.1", "0.15.0"] {
        let mut c = case(
            "wasmedge",
            v,
            &[
                "usr/bin/wasmedge",
                "usr/bin/wasmedgec",
                "usr/lib/libwasmedge.so.0.1.0",
            ],
        );
        c.absent = vec!["include", "WasmEdge-"];
        cases.push(c);
    }

    // nerdctl: tgz + SHA256SUMS; with --set with_cni also the CNI plugins
    let b = format!("{GH}/containerd/nerdctl/releases/download/v2.0.0");
    m.with_sums(
        &format!("{b}/nerdctl-2.0.0-linux-amd64.tar.gz"),
        &tgz(&[
            exe("nerdctl", "nerdctl"),
            exe("containerd-rootless.sh", "rootless"),
            exe("containerd-rootless-setuptool.sh", "setuptool"),
        ]),
        &format!("{b}/SHA256SUMS"),
    );
    let mut c = case(
        "nerdctl",
        "v2.0.0",
        &["usr/bin/nerdctl", "usr/bin/containerd-rootless.sh"],
    );
    c.absent = vec!["usr/libexec/cni", "usr/share/nerdctl"];
    cases.push(c);

    // falco: tgz with a top directory, no published checksum
    let url = "https://download.falco.org/packages/bin/x86_64/falco-0.39.1-x86_64.tar.gz";
    let h = m.put(
        url,
        &tgz(&[
            text(
                "falco-0.39.1-x86_64/etc/falco/falco.yaml",
                "rules_files: []\n",
            ),
            text(
                "falco-0.39.1-x86_64/etc/falco/falco_rules.yaml",
                "- rule: x\n",
            ),
            text("falco-0.39.1-x86_64/etc/falco/config.d/.keep", ""),
            text(
                "falco-0.39.1-x86_64/etc/falcoctl/falcoctl.yaml",
                "artifact: {}\n",
            ),
            exe("falco-0.39.1-x86_64/usr/bin/falco", "falco"),
            exe("falco-0.39.1-x86_64/usr/bin/falcoctl", "falcoctl"),
            text(
                "falco-0.39.1-x86_64/usr/share/falco/plugins/libjson.so",
                "ELF",
            ),
        ]),
    );
    let mut c = case(
        "falco",
        "0.39.1",
        &[
            "usr/bin/falco",
            "usr/bin/falcoctl",
            "usr/share/falco/plugins/libjson.so",
            "usr/share/falco/etc/falco/falco.yaml",
            "usr/share/falco/etc/falcoctl/falcoctl.yaml",
            "usr/lib/tmpfiles.d/10-falco.conf",
            "usr/local/lib/systemd/system/falco-modern-bpf.service",
            "usr/local/lib/systemd/system/falcoctl-artifact-follow.service",
        ],
    );
    c.args
        .extend(["--sha256".into(), format!("falco-0.39.1-x86_64.tar.gz={h}")]);
    cases.push(c);

    // HashiCorp: zip + PRODUCT_VERSION_SHA256SUMS
    for (p, v) in [
        ("nomad", "1.10.0"),
        ("consul", "1.21.4"),
        ("vault", "1.20.0"),
    ] {
        let b = format!("https://releases.hashicorp.com/{p}/{v}");
        m.with_sums(
            &format!("{b}/{p}_{v}_linux_amd64.zip"),
            &zip(&[exe(p, p)]),
            &format!("{b}/{p}_{v}_SHA256SUMS"),
        );
    }
    cases.push(case(
        "nomad",
        "1.10.0",
        &[
            "usr/bin/nomad",
            "usr/lib/systemd/system/nomad.service",
            "usr/lib/tmpfiles.d/10-nomad.conf",
            "usr/share/nomad/nomad.hcl",
        ],
    ));
    cases.push(case(
        "consul",
        "1.21.4",
        &[
            "usr/bin/consul",
            "usr/lib/systemd/system/consul.service",
            "usr/lib/sysusers.d/consul.conf",
            "usr/share/consul/consul.hcl",
        ],
    ));
    cases.push(case(
        "vault",
        "1.20.0",
        &[
            "usr/bin/vault",
            "usr/lib/systemd/system/vault.service",
            "usr/lib/sysusers.d/vault.conf",
            "usr/share/vault/vault.hcl",
        ],
    ));

    // ollama: .tgz before v0.14.0, .tar.zst from then on
    for (v, ext) in [("v0.13.5", "tgz"), ("v0.14.0", "tar.zst")] {
        let b = format!("{GH}/ollama/ollama/releases/download/{v}");
        let entries = [
            exe("bin/ollama", "ollama"),
            text("lib/ollama/libggml-base.so", "ELF"),
        ];
        let data = if ext == "tgz" {
            tgz(&entries)
        } else {
            tzst(&entries)
        };
        m.with_sums(
            &format!("{b}/ollama-linux-amd64.{ext}"),
            &data,
            &format!("{b}/sha256sum.txt"),
        );
    }
    for v in ["v0.13.5", "v0.14.0"] {
        cases.push(case(
            "ollama",
            v,
            &[
                "usr/local/bin/ollama",
                "usr/local/lib/ollama/libggml-base.so",
                "usr/lib/systemd/system/ollama.service",
                "usr/lib/systemd/system/multi-user.target.d/10-ollama.conf",
            ],
        ));
    }

    // ig: two tarballs, GitHub digests
    for t in ["ig", "gadgetctl"] {
        m.with_github_digest(
            "inspektor-gadget/inspektor-gadget",
            "v0.40.0",
            &format!(
                "{GH}/inspektor-gadget/inspektor-gadget/releases/download/v0.40.0/{t}-linux-amd64-v0.40.0.tar.gz"
            ),
            &tgz(&[exe(t, t)]),
        );
    }
    cases.push(case("ig", "v0.40.0", &["usr/bin/ig", "usr/bin/gadgetctl"]));

    // nebula: tgz + SHASUM256.txt
    let b = format!("{GH}/slackhq/nebula/releases/download/v1.9.5");
    m.with_sums(
        &format!("{b}/nebula-linux-amd64.tar.gz"),
        &tgz(&[exe("nebula", "nebula"), exe("nebula-cert", "nebula-cert")]),
        &format!("{b}/SHASUM256.txt"),
    );
    cases.push(case(
        "nebula",
        "v1.9.5",
        &[
            "usr/bin/nebula",
            "usr/bin/nebula-cert",
            "usr/lib/systemd/system/nebula.service",
            "usr/lib/systemd/system/multi-user.target.d/10-nebula.conf",
        ],
    ));

    // opkssh: plain binary, GitHub digest
    m.with_github_digest(
        "openpubkey/opkssh",
        "v0.8.0",
        &format!("{GH}/openpubkey/opkssh/releases/download/v0.8.0/opkssh-linux-amd64"),
        b"#!/bin/sh\necho opkssh\n",
    );
    cases.push(case("opkssh", "v0.8.0", &["usr/local/bin/opkssh"]));

    // coder: tgz + coder_VERSION_checksums.txt
    let b = format!("{GH}/coder/coder/releases/download/v2.20.0");
    m.with_sums(
        &format!("{b}/coder_2.20.0_linux_amd64.tar.gz"),
        &tgz(&[exe("coder", "coder"), text("README.md", "coder\n")]),
        &format!("{b}/coder_2.20.0_checksums.txt"),
    );
    cases.push(case(
        "coder",
        "v2.20.0",
        &[
            "usr/bin/coder",
            "usr/lib/systemd/system/coder.service",
            "usr/lib/systemd/system/coder-workspace-proxy.service",
            "usr/lib/sysusers.d/coder.conf",
            "usr/lib/tmpfiles.d/10-coder.conf",
        ],
    ));

    // cloud-hypervisor: two static binaries, GitHub digests
    for t in ["cloud-hypervisor-static", "ch-remote-static"] {
        m.with_github_digest(
            "cloud-hypervisor/cloud-hypervisor",
            "v44.0",
            &format!("{GH}/cloud-hypervisor/cloud-hypervisor/releases/download/v44.0/{t}"),
            format!("#!/bin/sh\necho {t}\n").as_bytes(),
        );
    }
    cases.push(case(
        "cloud-hypervisor",
        "v44.0",
        &["usr/bin/cloud-hypervisor", "usr/bin/ch-remote"],
    ));

    // kata-containers: tar.zst from 3.21.0, opt/kata with links in usr/bin
    m.with_github_digest(
        "kata-containers/kata-containers",
        "3.21.0",
        &format!(
            "{GH}/kata-containers/kata-containers/releases/download/3.21.0/kata-static-3.21.0-amd64.tar.zst"
        ),
        &tzst(&[
            exe("opt/kata/bin/kata-runtime", "kata-runtime"),
            exe("opt/kata/bin/containerd-shim-kata-v2", "shim"),
            text("opt/kata/share/defaults/kata-containers/configuration.toml", "[hypervisor.qemu]\n"),
        ]),
    );
    cases.push(case(
        "kata-containers",
        "3.21.0",
        &[
            "opt/kata/bin/kata-runtime",
            "opt/kata/share/defaults/kata-containers/configuration.toml",
            "usr/bin/kata-runtime -> ../../opt/kata/bin/kata-runtime",
            "usr/bin/containerd-shim-kata-v2 -> ../../opt/kata/bin/containerd-shim-kata-v2",
        ],
    ));

    // dataplaneapi: tgz + checksums.txt
    let b = format!("{GH}/haproxytech/dataplaneapi/releases/download/v3.1.0");
    m.with_sums(
        &format!("{b}/dataplaneapi_3.1.0_linux_x86_64.tar.gz"),
        &tgz(&[
            exe("dataplaneapi", "dataplaneapi"),
            text("LICENSE", "Apache\n"),
        ]),
        &format!("{b}/checksums.txt"),
    );
    cases.push(case(
        "dataplaneapi",
        "v3.1.0",
        &[
            "usr/bin/dataplaneapi",
            "usr/lib/systemd/system/dataplaneapi.service",
            "usr/share/dataplaneapi/dataplaneapi.yml",
        ],
    ));

    // programs from an OCI image (the test's tree, --from-dir): flix / flatwrap
    let from_image: [(&'static str, &'static str, &[&'static str]); 8] = [
        (
            "keepalived",
            "v2.3.1",
            &[
                "usr/bin/keepalived",
                "usr/lib/keepalived/bin/keepalived",
                "usr/lib/systemd/system/keepalived.service",
                "usr/lib/systemd/system/multi-user.target.d/10-keepalived.conf",
            ],
        ),
        (
            "haproxy",
            "3.1.5",
            &[
                "usr/bin/haproxy",
                "usr/lib/systemd/system/haproxy.service",
                "usr/share/haproxy/haproxy.cfg",
            ],
        ),
        (
            "bird",
            "3.1.2",
            &[
                "usr/bin/bird",
                "usr/bin/birdc",
                "usr/lib/systemd/system/bird.service",
            ],
        ),
        (
            "chrony",
            "4.8",
            &[
                "usr/bin/chronyd",
                "usr/bin/chronyc",
                "usr/lib/systemd/system/chronyd.service",
            ],
        ),
        (
            "scx",
            "v1.1.1",
            &[
                "usr/bin/scx_bpfland",
                "usr/bin/scx_lavd",
                "usr/share/scx/scx",
                "usr/lib/systemd/system/scx.service",
            ],
        ),
        ("btop", "1.4.0", &["usr/bin/btop", "usr/lib/btop/rootfs"]),
        (
            "tilde",
            "1.1.2",
            &["usr/bin/tilde", "usr/lib/tilde/bin/tilde"],
        ),
        (
            "nvidia-runtime",
            "v1.18.1",
            &[
                "usr/bin/nvidia-ctk",
                "usr/bin/nvidia-container-runtime",
                "usr/local/nvidia -> /opt/nvidia",
                "usr/share/flatcar/etc/nvidia-container-runtime/config.toml",
            ],
        ),
    ];
    for (name, v, expect) in from_image {
        let mut c = case(name, v, expect);
        c.args
            .extend(["--rootfs".into(), s(rootfs).to_owned(), "--from-dir".into()]);
        cases.push(c);
    }
    cases
}

/// Kubernetes `version` for `arch`: kubelet, kubeadm, kubectl with bare .sha256 files, and
/// CNI plugins v1.6.0 named by the latest-release look-up.
fn kubernetes_artifacts(m: &Mirror, version: &str, arch: &str) {
    for bin in ["kubelet", "kubeadm", "kubectl"] {
        m.with_bare_sum(
            &format!("https://dl.k8s.io/{version}/bin/linux/{arch}/{bin}"),
            format!("#!/bin/sh\necho {bin} {version}\n").as_bytes(),
            ".sha256",
        );
    }
    m.put(
        "https://api.github.com/repos/containernetworking/plugins/releases/latest",
        br#"{"tag_name":"v1.6.0","name":"v1.6.0"}"#,
    );
    let url = format!(
        "{GH}/containernetworking/plugins/releases/download/v1.6.0/cni-plugins-linux-{arch}-v1.6.0.tgz"
    );
    m.with_sums(
        &url,
        &tgz(&[
            exe("./bridge", "bridge"),
            exe("./host-local", "host-local"),
            exe("./loopback", "loopback"),
        ]),
        &format!("{url}.sha256"),
    );
}

/// A root filesystem tree holding the programs the OCI-image recipes take (copies of the
/// host's `true`, with its libraries).
fn rootfs_tree(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    let t = std::fs::read("/usr/bin/true").expect("true");
    for p in [
        "usr/sbin/keepalived",
        "usr/sbin/haproxy",
        "usr/sbin/bird",
        "usr/sbin/birdc",
        "usr/sbin/chronyd",
        "usr/bin/chronyc",
        "usr/bin/scx_bpfland",
        "usr/bin/scx_lavd",
        "usr/bin/scx_rusty",
        "usr/bin/btop",
        "usr/bin/tilde",
        "usr/bin/nvidia-ctk",
        "usr/bin/nvidia-container-runtime",
        "usr/bin/nvidia-container-runtime-hook",
    ] {
        write(&root.join(p), &t, 0o755);
    }
    let ldd = sh(Command::new("ldd").arg("/usr/bin/true"));
    for l in String::from_utf8_lossy(&ldd.stdout).lines() {
        let l = l.trim();
        let p = match l.split_once("=>") {
            Some((_, r)) => r.split_whitespace().next(),
            None => l.split_whitespace().next(),
        };
        if let Some(p) = p.filter(|p| p.starts_with('/')) {
            let data = std::fs::read(p).expect("lib");
            write(&root.join(p.trim_start_matches('/')), &data, 0o755);
        }
    }
    root
}

fn create(server: &Server, out: &Path, args: &[String]) -> Output {
    let mut all: Vec<&str> = vec!["sysext", "create"];
    all.extend(args.iter().map(String::as_str));
    all.extend(["-o", s(out)]);
    // no --arch: recipes build for this machine's architecture (x86-64 here)
    run(
        &all,
        &[
            ("FLATBAKE_RECIPE_MIRROR", &server.url),
            ("SOURCE_DATE_EPOCH", "0"),
        ],
    )
}

fn listing(img: &Path) -> String {
    let o = sh(Command::new("unsquashfs").args(["-lln"]).arg(img));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn has(listing: &str, want: &str) -> bool {
    listing.lines().any(|l| {
        l.ends_with(&format!("squashfs-root/{want}"))
            || l.contains(&format!("squashfs-root/{want} "))
            || l.contains(&format!("squashfs-root/{want}/"))
    })
}

#[test]
fn every_recipe_builds_from_its_mirror_and_merges() {
    assert_eq!(
        host_arch(),
        "x86-64",
        "the catalogue's fixtures are x86-64 artifacts"
    );
    let m = Mirror::new();
    let d = tempfile::tempdir().expect("tmp");
    let rootfs = rootfs_tree(d.path());
    let cases = catalogue(&m, &rootfs);
    let server = Server::serve(m.dir.path());

    // every recipe `sysext list` shows is covered here
    let names = String::from_utf8_lossy(&run(&["sysext", "list"], &[]).stdout).into_owned();
    let listed: Vec<&str> = names
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(listed.len() >= 34, "{names}");
    for n in &listed {
        assert!(
            cases.iter().any(|c| c.name == *n),
            "recipe {n} has no test case"
        );
        assert!(!names.contains("broken"), "{names}");
    }

    let mut merged: BTreeMap<&str, PathBuf> = BTreeMap::new();
    let mut checks = Vec::new();
    for c in &cases {
        let file = format!("{}-{}-x86-64.raw", c.name, c.file_version);
        let out = d.path().join(&file);
        let o = create(&server, &out, &c.args);
        assert!(
            o.status.success(),
            "create {:?} failed: {}",
            c.args,
            stderr(&o)
        );
        let l = listing(&out);
        for want in &c.expect {
            assert!(has(&l, want), "{file}: no {want} in\n{l}");
        }
        for no in &c.absent {
            assert!(!l.contains(no), "{file}: {no} should not be in\n{l}");
        }
        // systemd's own judgement of what was written
        let rel = sh(Command::new("unsquashfs")
            .arg("-cat")
            .arg(&out)
            .arg(format!(
                "usr/lib/extension-release.d/extension-release.{}",
                c.name
            )));
        let rel = String::from_utf8_lossy(&rel.stdout).into_owned();
        assert!(rel.contains("ID=_any"), "{file}: {rel}");
        assert!(rel.contains("ARCHITECTURE=x86-64"), "{file}: {rel}");
        // one image per extension name is merged (the last version built)
        merged.insert(c.name, out);
        for want in &c.expect {
            let p = want.split(" -> ").next().unwrap_or(want);
            checks.push(format!(
                "if [ -e ROOT/{p} ] || [ -L ROOT/{p} ]; then :; else echo MISSING {p}; fi"
            ));
        }
    }
    // nothing was fetched from anywhere but the mirror
    assert!(server.requested().iter().all(|p| p.starts_with('/')));

    // the kubernetes image records the looked-up CNI version
    let k = sh(Command::new("unsquashfs")
        .arg("-cat")
        .arg(&merged["kubernetes"])
        .arg("usr/local/share/kubernetes-cni-version"));
    assert_eq!(String::from_utf8_lossy(&k.stdout), "v1.6.0\n");
    // tailscale's unit was rewritten to where the binary is
    let t = sh(Command::new("unsquashfs")
        .arg("-cat")
        .arg(&merged["tailscale"])
        .arg("usr/lib/systemd/system/tailscaled.service"));
    let t = String::from_utf8_lossy(&t.stdout);
    assert!(
        t.contains("ExecStart=/usr/bin/tailscaled") && !t.contains("/usr/sbin"),
        "{t}"
    );

    // every image merges, together, and puts its files where the bakery's does
    let images: Vec<(&str, &Path)> = merged.iter().map(|(n, p)| (*n, p.as_path())).collect();
    // and systemd judges every unit they ship, with the programs the units run and the
    // host's targets present
    checks.push(
        "mkdir -p ROOT/bin ROOT/sbin ROOT/etc/systemd/system; for b in kill sh modprobe; do \
         cp /bin/true ROOT/bin/$b; cp /bin/true ROOT/sbin/$b; done; \
         cp /usr/lib/systemd/system/*.target ROOT/etc/systemd/system/; \
         for u in ROOT/usr/lib/systemd/system/*.service ROOT/usr/local/lib/systemd/system/*.service; do \
         systemd-analyze verify --root=ROOT $u 2>&1 | sed \"s|^|VERIFY $(basename $u): |\"; done"
            .into(),
    );
    let out = sysext_merge(&images, &checks.join("; "));
    eprintln!("{out}");
    assert!(!out.contains("VERIFY"), "{out}");
    for n in merged.keys() {
        assert!(out.contains(&format!("'{n}'")), "{n} not merged: {out}");
    }
    assert!(!out.contains("MISSING"), "{out}");
}

#[test]
fn recipe_inputs_conditions_and_refusals() {
    let m = Mirror::new();
    let d = tempfile::tempdir().expect("tmp");
    let rootfs = rootfs_tree(d.path());
    catalogue(&m, &rootfs);
    // nerdctl with the CNI plugins (--set) ships them and the files that go with them
    let url = format!(
        "{GH}/containernetworking/plugins/releases/download/v1.5.1/cni-plugins-linux-amd64-v1.5.1.tgz"
    );
    m.with_sums(
        &url,
        &tgz(&[exe("./bridge", "bridge"), exe("./portmap", "portmap")]),
        &format!("{url}.sha256"),
    );
    let server = Server::serve(m.dir.path());
    let out = d.path().join("nerdctl.raw");
    let args: Vec<String> = ["nerdctl", "2.0.0", "--set", "with_cni=v1.5.1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let o = create(&server, &out, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let l = listing(&out);
    for want in [
        "usr/bin/nerdctl",
        "usr/libexec/cni/bridge",
        "usr/libexec/cni/portmap",
        "usr/share/nerdctl/nerdctl-cni-version",
        "usr/lib/tmpfiles.d/10-nerdctl-etc.conf",
    ] {
        assert!(has(&l, want), "no {want} in {l}");
    }

    let refuse = |args: &[&str], want: &str| {
        let out = d.path().join("refused.raw");
        let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let o = create(&server, &out, &a);
        assert!(!o.status.success(), "{args:?} succeeded");
        let e = stderr(&o);
        let last = e.trim().lines().last().unwrap_or_default().to_owned();
        assert!(
            last.contains(want),
            "{args:?}: want '{want}' in the last line of {e}"
        );
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
        assert!(
            leftovers(d.path())
                .iter()
                .all(|l| !l.contains(".flatbake-recipe")),
            "{:?}",
            leftovers(d.path())
        );
    };
    refuse(
        &["nerdctl", "v2.0.0", "--set", "nope=1"],
        "has no variable nope",
    );
    refuse(&["keepalived", "v2.3.1"], "--rootfs");
    let rf = s(&rootfs).to_owned();
    refuse(
        &["wasmtime", "v24.0.0", "--rootfs", &rf, "--from-dir"],
        "applies only to recipes built from an OCI image",
    );
    // an image for another architecture is not bundled under this one's label
    refuse(
        &[
            "keepalived",
            "v2.3.1",
            "--rootfs",
            &rf,
            "--from-dir",
            "--arch",
            "arm64",
        ],
        "is for another architecture",
    );
    // a program the image lacks is named
    refuse(
        &[
            "tilde",
            "1.1.2",
            "--rootfs",
            s(&d.path().join("rootfs/usr")),
            "--from-dir",
        ],
        "not in the image",
    );
    // a substitution that no longer matches is an error, not a silently wrong unit
    let url = "https://pkgs.tailscale.com/stable/tailscale_1.76.7_amd64.tgz";
    m.with_bare_sum(
        url,
        &tgz(&[
            exe("tailscale_1.76.7_amd64/tailscale", "t"),
            exe("tailscale_1.76.7_amd64/tailscaled", "t"),
            text(
                "tailscale_1.76.7_amd64/systemd/tailscaled.service",
                "[Service]\nExecStart=/opt/elsewhere/tailscaled\n",
            ),
            text("tailscale_1.76.7_amd64/systemd/tailscaled.defaults", "\n"),
        ]),
        ".sha256",
    );
    refuse(&["tailscale", "v1.76.7"], "has no '/usr/sbin/tailscaled'");
    // an exclude that matches nothing says upstream moved things
    let b = format!("{GH}/rancher/rke2/releases/download/v1.33.0+rke2r1");
    m.with_sums(
        &format!("{b}/rke2.linux-amd64.tar.gz"),
        &tgz(&[exe("bin/rke2", "rke2")]),
        &format!("{b}/sha256sum-amd64.txt"),
    );
    refuse(&["rke2", "v1.33.0+rke2r1"], "nothing matches");
    // a tampered zip is caught by its checksum
    let url = "https://releases.hashicorp.com/nomad/1.10.0/nomad_1.10.0_linux_amd64.zip";
    m.put(url, &zip(&[exe("nomad", "evil")]));
    refuse(&["nomad", "1.10.0"], "sha256 mismatch");
    // an archive whose file is a symlink out of it does not put the host's file in the image
    let url =
        format!("{GH}/cilium/cilium-cli/releases/download/v0.16.25/cilium-linux-amd64.tar.gz");
    let evil = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "cilium", "/etc/passwd")
            .expect("link");
        let t = b.into_inner().expect("tar");
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&t).expect("gz");
        e.finish().expect("gz")
    };
    m.with_sums(&url, &evil, &format!("{url}.sha256sum"));
    refuse(&["cilium", "v0.16.25"], "leads out of the archive");
    // a look-up that answers nothing usable names the --set that fixes it
    m.put(
        "https://api.github.com/repos/containernetworking/plugins/releases/latest",
        b"{}",
    );
    refuse(&["kubernetes", "v1.32.2"], "pass --set cni_version=");
}

#[test]
fn versions_from_every_kind_of_source() {
    let m = Mirror::new();
    // GitHub releases, two pages of 100
    let mut page1: Vec<serde_json::Value> = (0..100)
        .map(|i| serde_json::json!({"tag_name": format!("v1.{i}.0"), "draft": false, "prerelease": false}))
        .collect();
    page1.push(serde_json::json!({"tag_name":"v9.0.0-rc1","prerelease":true}));
    page1.truncate(100);
    m.put(
        "https://api.github.com/repos/bytecodealliance/wasmtime/releases?per_page=100&page=1",
        serde_json::Value::Array(page1).to_string().as_bytes(),
    );
    m.put(
        "https://api.github.com/repos/bytecodealliance/wasmtime/releases?per_page=100&page=2",
        br#"[{"tag_name":"v0.9.0","draft":false,"prerelease":false},{"tag_name":"v200.0.0-rc1","prerelease":true}]"#,
    );
    // GitHub tags
    m.put(
        "https://api.github.com/repos/acassen/keepalived/tags?per_page=100&page=1",
        br#"[{"name":"v2.3.1"},{"name":"v2.2.8"},{"name":"v2.3.0"}]"#,
    );
    // GitLab tags
    m.put(
        "https://gitlab.nic.cz/api/v4/projects/6/repository/tags?per_page=100&page=1",
        br#"[{"name":"v3.1.2"},{"name":"v2.16.1"},{"name":"v3.0.0"}]"#,
    );
    // HashiCorp releases index, paginated by creation time
    let page: Vec<serde_json::Value> = (0..20)
        .map(|i| serde_json::json!({"version": format!("1.{}.0", 30 - i), "is_prerelease": false, "license_class": "oss", "timestamp_created": format!("2025-01-{:02}T00:00:00Z", 28 - i)}))
        .collect();
    m.put(
        "https://api.releases.hashicorp.com/v1/releases/vault?limit=20",
        serde_json::Value::Array(page).to_string().as_bytes(),
    );
    m.put(
        "https://api.releases.hashicorp.com/v1/releases/vault?limit=20&after=2025-01-09T00:00:00Z",
        br#"[{"version":"1.10.0","is_prerelease":false,"license_class":"oss","timestamp_created":"2024-01-01T00:00:00Z"},{"version":"1.31.0-rc1","is_prerelease":true},{"version":"1.19.0+ent","is_prerelease":false,"license_class":"enterprise"}]"#,
    );
    // k3s: only +k3s builds, latest per minor
    m.put(
        "https://api.github.com/repos/k3s-io/k3s/releases?per_page=100&page=1",
        br#"[{"tag_name":"v1.32.2+k3s1"},{"tag_name":"v1.32.1+k3s1"},{"tag_name":"v1.31.6+k3s1"},{"tag_name":"v1.30.9+k3s2"},{"tag_name":"v1.29.9+k3s1"},{"tag_name":"v1.32.3-rc1+k3s1"}]"#,
    );
    let server = Server::serve(m.dir.path());
    let env = [("FLATBAKE_RECIPE_MIRROR", server.url.as_str())];
    let list = |r: &str| -> Vec<String> {
        let o = run(&["sysext", "list", r], &env);
        assert!(o.status.success(), "{r}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let w = list("wasmtime");
    assert_eq!(w.len(), 101, "{w:?}");
    assert_eq!(w[0], "v1.99.0");
    assert_eq!(w[100], "v0.9.0");
    assert_eq!(list("keepalived"), vec!["v2.3.1", "v2.3.0", "v2.2.8"]);
    assert_eq!(list("bird"), vec!["3.1.2", "3.0.0", "2.16.1"]);
    let v = list("vault");
    assert_eq!(v.len(), 21, "{v:?}");
    assert_eq!(v[0], "1.30.0");
    assert_eq!(v[20], "1.10.0");
    assert_eq!(
        list("k3s"),
        vec![
            "v1.32.2+k3s1",
            "v1.32.1+k3s1",
            "v1.31.6+k3s1",
            "v1.30.9+k3s2",
            "v1.29.9+k3s1"
        ]
    );
}

#[test]
fn release_lays_out_a_bakery_that_flatbake_lists_and_bakes_from() {
    let m = Mirror::new();
    for arch in ["amd64", "arm64"] {
        kubernetes_artifacts(&m, "v1.32.2", arch);
    }
    let b = format!("{GH}/k3s-io/k3s/releases/download/v1.32.2+k3s1");
    for (arch, suffix) in [("amd64", ""), ("arm64", "-arm64")] {
        m.with_sums(
            &format!("{b}/k3s{suffix}"),
            format!("#!/bin/sh\necho k3s {arch}\n").as_bytes(),
            &format!("{b}/sha256sum-{arch}.txt"),
        );
    }
    // wasmtime's latest, from the releases listing
    m.put(
        "https://api.github.com/repos/bytecodealliance/wasmtime/releases?per_page=100&page=1",
        br#"[{"tag_name":"v24.0.0"},{"tag_name":"v23.0.1"}]"#,
    );
    for a in ["x86_64", "aarch64"] {
        let url = format!(
            "{GH}/bytecodealliance/wasmtime/releases/download/v24.0.0/wasmtime-v24.0.0-{a}-linux.tar.xz"
        );
        let data = txz(&[exe(&format!("wasmtime-v24.0.0-{a}-linux/wasmtime"), a)]);
        m.with_github_digest("bytecodealliance/wasmtime", "v24.0.0", &url, &data);
    }
    let server = Server::serve(m.dir.path());
    let d = tempfile::tempdir().expect("tmp");
    let served = d.path().join("www");
    let o = run(
        &[
            "sysext",
            "release",
            "kubernetes:v1.32.2",
            "k3s:1.32.2+k3s1",
            "wasmtime",
            "--output-dir",
            s(&served),
            "--bakery-url",
            "https://bakery.example",
        ],
        &[
            ("FLATBAKE_RECIPE_MIRROR", &server.url),
            ("SOURCE_DATE_EPOCH", "0"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let ext = served.join("extensions");
    let files = [
        "kubernetes-v1.32.2-x86-64.raw",
        "kubernetes-v1.32.2-arm64.raw",
        "k3s-v1.32.2+k3s1-x86-64.raw",
        "k3s-v1.32.2+k3s1-arm64.raw",
        "wasmtime-v24.0.0-x86-64.raw",
        "wasmtime-v24.0.0-arm64.raw",
    ];
    let global = std::fs::read_to_string(ext.join("SHA256SUMS")).expect("SHA256SUMS");
    for f in files {
        let name = f.split("-v").next().expect("name");
        let data = std::fs::read(ext.join(f)).unwrap_or_else(|_| panic!("no {f}"));
        assert_eq!(
            std::fs::read(ext.join(name).join(f)).expect("per-extension copy"),
            data
        );
        let line = format!("{}  {f}", sha256(&data));
        assert!(global.lines().any(|l| l == line), "{line} not in {global}");
        let own = std::fs::read_to_string(ext.join(name).join("SHA256SUMS")).expect("sums");
        assert!(own.lines().any(|l| l == line), "{line} not in {own}");
        assert!(
            own.lines().all(|l| l.contains(&format!("  {name}-"))),
            "{name}'s SHA256SUMS lists only its own images: {own}"
        );
        // each image is for its architecture, as systemd will check
        let arch = if f.ends_with("arm64.raw") {
            "arm64"
        } else {
            "x86-64"
        };
        let o = run(&["sysext", "check", s(&ext.join(f))], &[]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && out.contains(&format!("arch: {arch}")),
            "{out}"
        );
    }
    let conf = std::fs::read_to_string(ext.join("kubernetes/kubernetes.conf")).expect("conf");
    assert!(
        conf.contains("Path=https://bakery.example/extensions/kubernetes/")
            && conf.contains("MatchPattern=kubernetes-@v-%a.raw"),
        "{conf}"
    );
    let minor =
        std::fs::read_to_string(ext.join("kubernetes/kubernetes-v1.32.conf")).expect("minor");
    assert!(
        minor.contains("MatchPattern=kubernetes-v1.32.@v-%a.raw"),
        "{minor}"
    );
    assert!(ext.join("k3s/k3s-v1.32.conf").is_file());
    assert!(!ext.join("wasmtime/wasmtime-v24.0.conf").exists());
    for c in [
        "kubernetes/kubernetes.conf",
        "kubernetes/kubernetes-v1.32.conf",
    ] {
        let text = std::fs::read_to_string(ext.join(c)).expect("conf");
        for section in ["[Transfer]", "[Source]", "[Target]"] {
            assert!(text.contains(section), "{c}: {text}");
        }
    }
    // a second release of the same image is refused without --force, nothing changed
    let before = std::fs::read_to_string(ext.join("SHA256SUMS")).expect("sums");
    let o = run(
        &[
            "sysext",
            "release",
            "wasmtime:v24.0.0",
            "--output-dir",
            s(&served),
        ],
        &[("FLATBAKE_RECIPE_MIRROR", &server.url)],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already released"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(ext.join("SHA256SUMS")).expect("sums"),
        before
    );
    // one failing build publishes nothing of the run: not even the images that built
    let listing_before = list_files(&served);
    let o = run(
        &[
            "sysext",
            "release",
            "wasmtime:v24.0.0",
            "k3s:v1.33.0+k3s1",
            "--force",
            "--output-dir",
            s(&served),
        ],
        &[("FLATBAKE_RECIPE_MIRROR", &server.url)],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("404"), "{}", stderr(&o));
    let mut after = list_files(&served);
    let mut was = listing_before.clone();
    after.sort();
    was.sort();
    assert_eq!(after, was);
    assert_eq!(
        std::fs::read_to_string(ext.join("SHA256SUMS")).expect("sums"),
        before
    );

    // the served directory is a bakery: list it, and bake from it
    let bakery = Server::serve(&served);
    let o = run(&["sysext", "list", "--bakery", &bakery.url], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.lines()
            .any(|l| l.starts_with("kubernetes") && l.contains("v1.32.2 (arm64, x86-64)")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("k3s") && l.contains("v1.32.2+k3s1")),
        "{out}"
    );
    let o = run(
        &["sysext", "list", "--bakery"],
        &[("FLATBAKE_BAKERY_URL", &bakery.url)],
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("wasmtime"),
        "{}",
        stderr(&o)
    );

    let img = d.path().join("out.bin");
    let o = run(
        &[
            "--image",
            s(&fixtures().join("current.bin")),
            "--output",
            s(&img),
            "--fetch",
            "--image-cache",
            s(&d.path().join("cache")),
            "kubernetes:kubernetes-v1.32.2-x86-64.raw",
        ],
        &[("FLATBAKE_BAKERY_URL", &bakery.url)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let raw = std::fs::read(ext.join("kubernetes-v1.32.2-x86-64.raw")).expect("raw");
    assert_eq!(
        root_file(
            &img,
            "/opt/extensions/kubernetes/kubernetes-v1.32.2-x86-64.raw"
        ),
        raw
    );
    assert_eq!(
        root_file(&img, "/etc/sysupdate.kubernetes.d/kubernetes.conf"),
        std::fs::read(ext.join("kubernetes/kubernetes.conf")).expect("conf")
    );
    e2fsck_root(&img);
}

/// This machine's architecture as systemd names it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[test]
fn release_runs_unprivileged_and_the_image_is_root_owned() {
    let m = Mirror::new();
    let url = format!(
        "{GH}/bytecodealliance/wasmtime/releases/download/v24.0.0/wasmtime-v24.0.0-x86_64-linux.tar.xz"
    );
    let data = txz(&[exe("wasmtime-v24.0.0-x86_64-linux/wasmtime", "wasmtime")]);
    m.with_github_digest("bytecodealliance/wasmtime", "v24.0.0", &url, &data);
    let server = Server::serve(m.dir.path());
    let dir = tempfile::tempdir().expect("tmp");
    sh(Command::new("chmod").arg("0777").arg(dir.path()));
    let served = dir.path().join("www");
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(BIN)
        .args(["sysext", "release", "wasmtime:24.0.0", "--arch", "x86-64"])
        .arg("--output-dir")
        .arg(&served)
        .env("HOME", dir.path())
        .env("FLATBAKE_RECIPE_MIRROR", &server.url)
        .output()
        .expect("setpriv");
    assert!(
        o.status.success(),
        "unprivileged release failed: {}",
        stderr(&o)
    );
    let img = served.join("extensions/wasmtime-v24.0.0-x86-64.raw");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&img).expect("img").uid(), 65534);
    let l = listing(&img);
    assert!(
        l.lines()
            .filter(|l| l.contains("squashfs-root/"))
            .all(|l| l.contains(" 0/0 ")),
        "every file in the image is root's: {l}"
    );
    assert!(
        leftovers(&served.join("extensions"))
            .iter()
            .all(|f| !f.contains(".flatbake")),
        "{:?}",
        leftovers(&served.join("extensions"))
    );
    let out = sysext_merge(
        &[("wasmtime", &img)],
        "test -x ROOT/usr/bin/wasmtime && echo RUNS",
    );
    assert!(out.contains("RUNS"), "{out}");
}
