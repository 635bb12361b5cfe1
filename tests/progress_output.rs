//! Progress and output: bars drawn on a terminal (a pseudo-terminal from util-linux
//! `script`), plain periodic `flatbake:` lines without one, `--quiet`, `--verbose`, and
//! the `--json [FILE]` convention (schema_version, absolute paths, stdout kept clean).

mod support;

use std::process::Command;
use support::*;

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn a_terminal_gets_spinners_with_whole_labels() {
    let img = fixtures().join("current.bin");
    let d = tempfile::tempdir().expect("tmp");
    let out = d.path().join("out.bin");
    let cmd = [
        BIN,
        "--image",
        s(&img),
        "-o",
        s(&out),
        "--kernel-arg",
        "console=ttyS0",
        &wasm(),
    ]
    .iter()
    .map(|a| sh_quote(a))
    .collect::<Vec<_>>()
    .join(" ");
    // `script` runs the command on a new pseudo-terminal and copies what it drew
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .env("COLUMNS", "80")
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("\u{1b}["),
        "no terminal control sequences, no bar drawn: {text:?}"
    );
    assert!(
        text.contains("flatbake: editing OEM (btrfs rebuild, check)"),
        "the whole label: {text:?}"
    );
    assert!(text.contains("done in"), "{text:?}");
    e2fsck_root(&out);
}

#[test]
fn a_pipeline_gets_plain_periodic_lines() {
    let img = fixtures().join("current.bin");
    let d = tempfile::tempdir().expect("tmp");
    let out = d.path().join("out.bin");
    let o = Command::new(BIN)
        .args([
            "--image",
            s(&img),
            "-o",
            s(&out),
            "--kernel-arg",
            "console=ttyS0",
        ])
        .arg(wasm())
        .env("FLATBAKE_PROGRESS_INTERVAL", "0.05")
        .output()
        .expect("run");
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "no escapes off a terminal: {err:?}"
    );
    assert!(!err.contains('\r'), "{err:?}");
    for l in err.lines() {
        assert!(
            l.starts_with("flatbake: "),
            "unprefixed line {l:?} in {err}"
        );
        assert!(!l.contains(".partial") && !l.contains(".unverified"), "{l}");
    }
    assert!(err.contains("flatbake: copying "), "{err}");
    assert!(
        err.contains("flatbake: editing OEM (btrfs rebuild, check): still running"),
        "{err}"
    );
}

#[test]
fn quiet_prints_the_result_only_and_verbose_the_commands() {
    let img = fixtures().join("current.bin");
    let d = tempfile::tempdir().expect("tmp");
    let out = d.path().join("out.bin");
    let o = flatbake(&["--quiet", "--image", s(&img), "-o", s(&out), &wasm()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("wrote {}\n", out.display())
    );
    // errors still come through
    let err = flatbake_refused(&["-q", "--image", s(&img), "-o", s(&out), &wasm()]);
    assert!(err.contains("already exists"), "{err}");

    let out2 = d.path().join("out2.bin");
    let o = flatbake(&["--verbose", "--image", s(&img), "-o", s(&out2), &wasm()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("flatbake: running debugfs "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn json_without_file_is_stdout_with_schema_and_absolute_paths() {
    let img = fixtures().join("current.bin");
    let d = tempfile::tempdir().expect("tmp");
    let o = Command::new(BIN)
        .current_dir(d.path())
        .args(["--image", s(&img), "-o", "out.bin", &wasm(), "--json"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["command"], "bake");
    let out = d.path().join("out.bin");
    assert_eq!(v["outputs"][0]["path"].as_str(), Some(s(&out)));
    assert_eq!(
        v["outputs"][0]["sha256"].as_str(),
        Some(sha256_file(&out).as_str())
    );
    // the human report moved to stderr
    assert!(stderr(&o).contains("wrote out.bin"), "{}", stderr(&o));
    // a NAME:FILE taken as --json's FILE is refused, not baked as "nothing to do"
    let err = flatbake_refused(&["--image", s(&img), "-o", "x.bin", "--json", &wasm()]);
    assert!(err.contains("--json took 'wasmtime:"), "{err}");
    // --json FILE still writes FILE
    let f = d.path().join("r.json");
    let o = flatbake(&[
        "--image",
        s(&img),
        "-o",
        s(&d.path().join("o2.bin")),
        "--json",
        s(&f),
        &wasm(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&f).expect("json")).expect("parse");
    assert_eq!(v["schema_version"], 1);
}
