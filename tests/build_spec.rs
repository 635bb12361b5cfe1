//! `flatbake build SPEC.toml`, driven as a pipeline drives it (no TTY): the checked-in
//! CI examples agree with `--list-variants`; `--dry-run` writes nothing; spec errors
//! name line and column; a variant bakes the same image the equivalent command line
//! bakes; variant selection by name, index and $JOB_COMPLETION_INDEX.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A YAML file as JSON, read by python3-yaml (the outside judge of the CI files).
fn yaml(path: &Path) -> Value {
    let out = sh(Command::new("python3")
        .arg("-c")
        .arg("import sys, json, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))")
        .arg(path));
    serde_json::from_slice(&out.stdout).expect("yaml as json")
}

fn build(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.arg("build").args(args).current_dir(repo());
    c.env_remove("JOB_COMPLETION_INDEX");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run flatbake")
}

fn ok_json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

fn variant_names(spec: &str) -> Vec<String> {
    let o = build(&[spec, "--list-variants"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn github_actions_example_runs_the_matrix_list_variants_prints() {
    let spec = "examples/ci/images.toml";
    let names = variant_names(spec);
    assert_eq!(names.len(), 9, "{names:?}");
    let wf = yaml(&repo().join("examples/ci/github-actions.yml"));
    let jobs = &wf["jobs"];

    // the plan job's step, run as the runner would run it (flatbake on PATH)
    let steps = jobs["plan"]["steps"].as_array().expect("plan steps");
    let run = steps
        .iter()
        .filter_map(|s| s["run"].as_str())
        .find(|r| r.contains("--list-variants"))
        .expect("a step running --list-variants");
    assert!(run.contains(spec), "{run}");
    let bin_dir = tempfile::tempdir().expect("tmp");
    std::os::unix::fs::symlink(BIN, bin_dir.path().join("flatbake")).expect("symlink");
    let gh_out = bin_dir.path().join("github_output");
    std::fs::write(&gh_out, b"").expect("write");
    let path = format!(
        "{}:{}",
        bin_dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    sh(Command::new("bash")
        .args(["-euo", "pipefail", "-c", run])
        .current_dir(repo())
        .env("PATH", path)
        .env("GITHUB_OUTPUT", &gh_out)
        .env_remove("JOB_COMPLETION_INDEX"));
    let text = std::fs::read_to_string(&gh_out).expect("read");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("matrix="))
        .expect("matrix= in GITHUB_OUTPUT");
    let matrix: Value = serde_json::from_str(line).expect("matrix json");
    let keys: Vec<&str> = matrix
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["include"], "only include: other keys are dimensions");
    let include = matrix["include"].as_array().expect("include");
    let listed: Vec<&str> = include
        .iter()
        .map(|e| e["variant"].as_str().expect("variant"))
        .collect();
    assert_eq!(listed, names);
    for (i, e) in include.iter().enumerate() {
        assert_eq!(e["index"], i);
    }

    // the build job uses that matrix, and every matrix.KEY it reads exists
    let b = &jobs["build"];
    assert_eq!(
        b["strategy"]["matrix"].as_str(),
        Some("${{ fromJSON(needs.plan.outputs.matrix) }}")
    );
    assert_eq!(b["needs"].as_str(), Some("plan"));
    let whole = std::fs::read_to_string(repo().join("examples/ci/github-actions.yml"))
        .expect("read workflow");
    for part in whole.split("matrix.").skip(1) {
        let key: String = part
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        assert!(
            include.iter().all(|e| e.get(&key).is_some()),
            "matrix.{key} is read but not in every include entry"
        );
    }
    let build_run = b["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["run"].as_str())
        .find(|r| r.contains("flatbake build"))
        .expect("a build step");
    assert!(build_run.contains(spec), "{build_run}");
    assert!(
        build_run.contains("--variant \"${{ matrix.variant }}\""),
        "{build_run}"
    );

    // the artifact path is where the spec writes each variant
    let upload = b["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact"))
        })
        .expect("upload step");
    let up_path = upload["with"]["path"].as_str().expect("path");
    let plan = ok_json(&build(&[spec, "--dry-run", "--json"], &[]));
    for v in plan["variants"].as_array().expect("variants") {
        let name = v["variant"].as_str().expect("name");
        let dir = v["output_dir"].as_str().expect("dir");
        let want = up_path
            .lines()
            .next()
            .expect("line")
            .trim()
            .replace("${{ matrix.variant }}", name);
        assert_eq!(
            format!("{}/", dir),
            format!("{}/{want}", repo().display()),
            "upload path of {name}"
        );
    }
}

#[test]
fn kubernetes_indexed_job_covers_every_variant_once() {
    let spec = "examples/ci/images.toml";
    let names = variant_names(spec);
    let job = yaml(&repo().join("examples/ci/k8s-indexed-job.yaml"));
    assert_eq!(job["kind"], "Job");
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    let completions = job["spec"]["completions"].as_u64().expect("completions") as usize;
    assert_eq!(completions, names.len(), "completions = number of variants");
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["command"][0], "flatbake");
    let args: Vec<String> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("str").to_owned())
        .collect();
    assert_eq!(args[0], "build");
    assert!(args[1].ends_with("/images.toml"), "{args:?}");
    assert!(
        !args.iter().any(|a| a.starts_with("--variant")),
        "the index comes from $JOB_COMPLETION_INDEX"
    );
    // each pod, as Kubernetes starts it (the ConfigMap's file at the spec path)
    let out = tempfile::tempdir().expect("tmp");
    let mut pod_args: Vec<String> = args[1..]
        .iter()
        .map(|a| {
            if a.ends_with("/images.toml") {
                spec.to_owned()
            } else if a == "/out" {
                s(out.path()).to_owned()
            } else {
                a.clone()
            }
        })
        .collect();
    pod_args.extend(["--dry-run".to_owned(), "--json".to_owned()]);
    let pod_args: Vec<&str> = pod_args.iter().map(String::as_str).collect();
    for (i, name) in names.iter().enumerate() {
        let idx = i.to_string();
        let plan = ok_json(&build(&pod_args, &[("JOB_COMPLETION_INDEX", &idx)]));
        let vs = plan["variants"].as_array().expect("variants");
        assert_eq!(vs.len(), 1);
        assert_eq!(vs[0]["variant"].as_str(), Some(name.as_str()));
        assert_eq!(vs[0]["index"], i);
        let dir = vs[0]["output_dir"].as_str().expect("dir");
        assert_eq!(Path::new(dir), out.path().join(name));
    }
    let idx = completions.to_string();
    let o = build(&pod_args, &[("JOB_COMPLETION_INDEX", &idx)]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("JOB_COMPLETION_INDEX"), "{err}");
    assert!(err.contains(&format!("{completions} variants")), "{err}");
    assert!(std::fs::read_dir(out.path()).expect("dir").next().is_none());
}

/// A spec baking the fixture image into `out`, with a local image and extensions.
fn fixture_spec(dir: &Path, out: &Path) -> PathBuf {
    let f = fixtures();
    let text = format!(
        r#"version = 1
[input]
image = "{img}"
release_dir = "{rel}"

[output]
dir = "{out}"

[extensions.wasmtime]
file = "{sx}/wasmtime-v24.0.0-{{arch}}.raw"

[extensions.myext]
file = "{sx}/myext-1.0-x86-64.raw"
install_to = "oem:/sysext"

[[variant]]
name = "plain"
extensions = ["wasmtime"]

[[variant]]
name = "both"
vendors = ["generic", "qemu-uefi"]
kernel_args = ["console=ttyS0"]
"#,
        img = f.join("current.bin").display(),
        rel = f.join("release").display(),
        out = out.display(),
        sx = f.join("sysexts").display(),
    );
    let p = dir.join("images.toml");
    std::fs::write(&p, text).expect("write spec");
    p
}

#[test]
fn dry_run_prints_every_plan_and_writes_nothing() {
    let d = tempfile::tempdir().expect("tmp");
    let out = d.path().join("out");
    let spec = fixture_spec(d.path(), &out);
    let o = build(&[s(&spec), "--dry-run"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("variant plain (1 of 2)"), "{text}");
    assert!(text.contains("variant both (2 of 2)"), "{text}");
    assert!(
        text.contains(&format!(
            "writes:     {}",
            out.join("both/flatcar_production_qemu_uefi_image.img")
                .display()
        )),
        "{text}"
    );
    assert!(text.contains("-> oem:/sysext"), "{text}");
    let plan = ok_json(&build(&[s(&spec), "--dry-run", "--json"], &[]));
    assert_eq!(plan["schema_version"], 1);
    let both = &plan["variants"][1];
    assert_eq!(both["vendors"], serde_json::json!(["generic", "qemu_uefi"]));
    for o in both["outputs"].as_array().expect("outputs") {
        assert!(Path::new(o.as_str().expect("str")).is_absolute(), "{o}");
    }
    assert!(!out.exists(), "dry run created {}", out.display());
    assert_eq!(
        std::fs::read_dir(d.path()).expect("dir").count(),
        1,
        "only the spec"
    );
    // a missing local input is found by the dry run too
    let bad = d.path().join("bad.toml");
    let t = std::fs::read_to_string(&spec)
        .expect("read")
        .replace("myext-1.0-x86-64.raw", "nothere.raw");
    std::fs::write(&bad, t).expect("write");
    let o = build(&[s(&bad), "--dry-run", "--variant", "both"], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nothere.raw"), "{}", stderr(&o));
}

#[test]
fn spec_errors_name_line_and_column() {
    let d = tempfile::tempdir().expect("tmp");
    let cases: &[(&str, &str)] = &[
        (
            "[input]\nrelease = \"stable\"\n[bake]\nvendors = [\"qemu_uefu\"]\n",
            ":4:12: unknown vendor 'qemu_uefu' (did you mean 'qemu_uefi'?)",
        ),
        ("[input]\nrelease = \"stabel\"\n", ":2:11: "),
        ("[input]\nrelease = \"stable\"\n\n[bake]\nsysupdat = true\n", ":5:1: "),
        ("[input]\nrelease = \"stable\"\n[bake]\nkernel_args = [\n", ":4:"),
        (
            "[input]\nrelease = \"stable\"\n[matrix]\narch = [\"x86-64\", \"riscv\"]\n",
            ":4:19: unknown architecture 'riscv'",
        ),
        (
            "[input]\nrelease = \"stable\"\n[extensions.a]\nfile = \"a.raw\"\ninstall_to = \"usr:/x\"\n",
            ":5:14: install_to",
        ),
    ];
    for (text, want) in cases {
        let p = d.path().join("s.toml");
        std::fs::write(&p, text).expect("write");
        let o = build(&[s(&p), "--dry-run"], &[]);
        assert!(!o.status.success(), "{text}");
        let err = stderr(&o);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!("error: {}{want}", p.display())),
            "{text}\nwant {want}\ngot {err}"
        );
    }
}

#[test]
fn a_variant_bakes_what_the_command_line_bakes() {
    let d = tempfile::tempdir().expect("tmp");
    let out = d.path().join("out");
    let spec = fixture_spec(d.path(), &out);
    let json = d.path().join("result.json");
    let o = build(
        &[s(&spec), "--json", s(&json)],
        &[("JOB_COMPLETION_INDEX", "1")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!out.join("plain").exists(), "only variant 1 is built");
    let both = out.join("both");
    let generic = both.join("flatcar_production_image.bin");
    let qcow = both.join("flatcar_production_qemu_uefi_image.img");
    sgdisk_verify(&generic);
    e2fsck_root(&generic);
    sh(Command::new("qemu-img").arg("check").arg(&qcow));
    assert_eq!(
        root_link(&generic, "/etc/extensions/myext.raw").as_deref(),
        Some("/oem/sysext/myext-1.0-x86-64.raw")
    );
    assert_eq!(
        root_link(&generic, "/etc/extensions/wasmtime.raw").as_deref(),
        Some("/opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw")
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("parse");
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["command"], "build");
    let outs = doc["variants"][0]["outputs"].as_array().expect("outputs");
    let gen_entry = outs
        .iter()
        .find(|o| o["path"] == s(&generic))
        .expect("generic image in the summary");
    assert_eq!(
        gen_entry["sha256"].as_str(),
        Some(sha256_file(&generic).as_str())
    );

    // the same request on the command line gives the same image content
    let cli_out = d.path().join("cli");
    std::fs::create_dir(&cli_out).expect("mkdir");
    let f = fixtures();
    let o = flatbake(&[
        "--image",
        s(&f.join("current.bin")),
        "--release-dir",
        s(&f.join("release")),
        "--output-dir",
        s(&cli_out),
        "--vendor",
        "generic,qemu_uefi",
        "--kernel-arg",
        "console=ttyS0",
        "--install-to",
        "myext=oem:/sysext",
        &format!("myext:{}", sysext("myext-1.0-x86-64.raw").display()),
        &format!(
            "wasmtime:{}",
            sysext("wasmtime-v24.0.0-x86-64.raw").display()
        ),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let inspect = |p: &Path| -> Value {
        let o = flatbake(&["inspect", "--json", s(p)]);
        let mut v: Value = serde_json::from_slice(&o.stdout).expect("inspect json");
        v["image"] = Value::Null;
        v
    };
    for name in [
        "flatcar_production_image.bin",
        "flatcar_production_qemu_uefi_image.img",
    ] {
        assert_eq!(
            inspect(&both.join(name)),
            inspect(&cli_out.join(name)),
            "{name}"
        );
    }
    let list = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(list(&both), list(&cli_out));
    assert!(leftovers(&both).is_empty());
}

#[test]
fn variants_are_chosen_by_name_or_index_and_typos_are_answered() {
    let d = tempfile::tempdir().expect("tmp");
    let out = d.path().join("out");
    let spec = fixture_spec(d.path(), &out);
    let o = build(&[s(&spec), "--variant", "bth", "--dry-run"], &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("did you mean 'both'?"),
        "{}",
        stderr(&o)
    );
    let o = build(&[s(&spec), "--variant-index", "2", "--dry-run"], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("has 2 variants"), "{}", stderr(&o));
    let o = build(&[s(&spec), "--dry-run"], &[("JOB_COMPLETION_INDEX", "x")]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a variant index"), "{}", stderr(&o));
    // --variant wins over the environment's index
    let plan = ok_json(&build(
        &[s(&spec), "--variant", "plain", "--dry-run", "--json"],
        &[("JOB_COMPLETION_INDEX", "1")],
    ));
    assert_eq!(plan["variants"][0]["variant"], "plain");
    assert!(!out.exists());
}

#[test]
fn a_fetched_release_with_bakery_and_local_extensions() {
    use std::collections::BTreeMap;
    const V: &str = "4593.2.5";
    let gpg = Gpg::subkey_signer("flatbake test <t@localhost>");
    let mut t: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let img = std::fs::read(fixtures().join("current.bin")).expect("fixture");
    let rel = fixtures().join("release");
    let base = format!("/amd64-usr/{V}");
    for (name, data) in [
        (
            "flatcar_production_image.bin.bz2",
            compress_with("lbzip2", &["-c"], &img),
        ),
        (
            "version.txt",
            std::fs::read(rel.join("version.txt")).expect("v"),
        ),
        (
            "oem-hetzner.raw",
            std::fs::read(rel.join("oem-hetzner.raw")).expect("oem"),
        ),
    ] {
        t.insert(format!("{base}/{name}.sig"), gpg.sign(&data));
        t.insert(format!("{base}/{name}"), data);
    }
    // the channel head is signed like every release file (it names the release)
    let head = std::fs::read(rel.join("version.txt")).expect("v");
    t.insert("/amd64-usr/current/version.txt.sig".into(), gpg.sign(&head));
    t.insert("/amd64-usr/current/version.txt".into(), head);
    let wasm = std::fs::read(sysext("wasmtime-v24.0.0-x86-64.raw")).expect("w");
    t.insert(
        "/extensions/SHA256SUMS".into(),
        format!("{}  wasmtime-v24.0.0-x86-64.raw\n", sha256(&wasm)).into_bytes(),
    );
    t.insert(
        "/extensions/wasmtime-v24.0.0-x86-64.raw".into(),
        wasm.clone(),
    );
    t.insert(
        "/extensions/wasmtime/wasmtime.conf".into(),
        std::fs::read(sysext("wasmtime.conf")).expect("c"),
    );
    let server = Server::start(t);
    let d = tempfile::tempdir().expect("tmp");
    let key = d.path().join("key.asc");
    std::fs::write(&key, gpg.public_key()).expect("key");
    let spec = d.path().join("images.toml");
    std::fs::write(
        &spec,
        format!(
            r#"[input]
release = "stable"
signing_key = "key.asc"
[output]
dir = "out"
[extensions.wasmtime]
bakery = "wasmtime-v24.0.0-{{arch}}.raw"
[extensions.myext]
file = "{myext}"
install_to = "oem:/sysext"
[[variant]]
name = "hetzner"
vendors = ["hetzner"]
"#,
            myext = sysext("myext-1.0-x86-64.raw").display()
        ),
    )
    .expect("spec");
    let o = Command::new(BIN)
        .args(["build", s(&spec), "--json", "-"])
        .env("FLATBAKE_RELEASE_URL", server.url())
        .env("FLATBAKE_BAKERY_URL", server.url())
        .env("FLATBAKE_CACHE", d.path().join("cache"))
        .env_remove("JOB_COMPLETION_INDEX")
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: Value = serde_json::from_slice(&o.stdout).expect("stdout is the JSON");
    let img = d
        .path()
        .join("out/hetzner/flatcar_production_hetzner_image.bin");
    assert_eq!(
        doc["variants"][0]["outputs"][0]["path"].as_str(),
        Some(s(&img))
    );
    sgdisk_verify(&img);
    e2fsck_root(&img);
    assert_eq!(
        root_file(&img, "/opt/extensions/wasmtime/wasmtime-v24.0.0-x86-64.raw"),
        wasm
    );
    // the bakery's sysupdate config came with it
    assert_eq!(
        root_file(&img, "/etc/sysupdate.wasmtime.d/wasmtime.conf"),
        std::fs::read(sysext("wasmtime.conf")).expect("c")
    );
    assert_eq!(
        root_link(&img, "/etc/extensions/myext.raw").as_deref(),
        Some("/oem/sysext/myext-1.0-x86-64.raw")
    );
    let oem = oem_tree(&img);
    assert!(oem
        .path()
        .join("tree/sysext/myext-1.0-x86-64.raw")
        .is_file());
    assert!(oem
        .path()
        .join(format!("tree/sysext/oem-hetzner-{V}.raw"))
        .is_file());
}

#[test]
fn a_spec_builds_rootless_as_nobody() {
    let d = tempfile::tempdir().expect("tmp");
    sh(Command::new("chmod").arg("0777").arg(d.path()));
    let out = d.path().join("out");
    let spec = fixture_spec(d.path(), &out);
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args([BIN, "build", s(&spec), "--variant", "both"])
        .env("HOME", d.path())
        .env_remove("JOB_COMPLETION_INDEX")
        .output()
        .expect("setpriv");
    assert!(o.status.success(), "rootless build failed: {}", stderr(&o));
    let plain = out.join("both/flatcar_production_image.bin");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&plain).expect("out").uid(), 65534);
    e2fsck_root(&plain);
    let oem = oem_tree(&plain);
    assert!(oem
        .path()
        .join("tree/sysext/myext-1.0-x86-64.raw")
        .is_file());
    assert_eq!(
        root_owner_mode(&plain, "/etc/extensions/myext.raw").1,
        0,
        "owned by root inside the image"
    );
}

#[test]
fn a_rebuild_keeps_existing_outputs_unless_forced() {
    let d = tempfile::tempdir().expect("tmp");
    let out = d.path().join("out");
    let spec = fixture_spec(d.path(), &out);
    let o = build(&[s(&spec), "--variant", "plain"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = out.join("plain/flatcar_production_image.bin");
    let before = sha256_file(&img);
    let o = build(&[s(&spec), "--variant", "plain"], &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    let last = err.trim().lines().last().expect("a line");
    assert!(last.starts_with("error: "), "{err}");
    assert!(last.contains("already exists; pass --force"), "{err}");
    assert_eq!(sha256_file(&img), before);
    assert!(leftovers(&out.join("plain")).is_empty());
    let o = build(&[s(&spec), "--variant", "plain", "--force"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    e2fsck_root(&img);
}
