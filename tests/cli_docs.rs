//! The shell and reader side of the CLI: completion scripts the shells accept, man
//! pages groff renders without warnings for every command, and stdout closed early.

mod support;

use std::process::{Command, Stdio};
use support::*;

#[test]
fn bash_completion_is_valid_bash_and_knows_the_commands() {
    let out = sh(Command::new(BIN).args(["completions", "bash"]));
    let script = String::from_utf8(out.stdout).expect("utf-8");
    for word in [
        "inspect",
        "vendors",
        "sysext",
        "--vendor",
        "--install-to",
        "--sysupdate",
    ] {
        assert!(script.contains(word), "completion lacks {word}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flatbake.bash");
    std::fs::write(&path, &script).expect("write");
    // bash parses it, and sourcing it registers the completion function
    sh(Command::new("bash").arg("-n").arg(&path));
    let o = sh(Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p flatbake", path.display())));
    assert!(String::from_utf8_lossy(&o.stdout).contains("flatbake"));
}

#[test]
fn zsh_and_fish_completions_name_flatbake() {
    let zsh = sh(Command::new(BIN).args(["completions", "zsh"]));
    assert!(String::from_utf8_lossy(&zsh.stdout).starts_with("#compdef flatbake"));
    let fish = sh(Command::new(BIN).args(["completions", "fish"]));
    assert!(String::from_utf8_lossy(&fish.stdout).contains("complete -c flatbake"));
    let bad = flatbake(&["completions", "tcsh"]);
    assert!(!bad.status.success());
}

#[test]
fn man_pages_cover_every_command_and_render_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    sh(Command::new(BIN).arg("man").arg(dir.path()));
    for page in [
        "flatbake.1",
        "flatbake-bake.1",
        "flatbake-inspect.1",
        "flatbake-fetch.1",
        "flatbake-vendors.1",
        "flatbake-completions.1",
        "flatbake-sysext.1",
        "flatbake-sysext-pack.1",
        "flatbake-sysext-check.1",
        "flatbake-sysext-create.1",
    ] {
        let p = dir.path().join(page);
        assert!(p.is_file(), "{page} missing");
        let o = sh(Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&p));
        assert!(
            o.stderr.is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // the hidden internal worker gets no page
    assert!(!dir.path().join("flatbake-__mount-apply.1").exists());
    let bake = std::fs::read_to_string(dir.path().join("flatbake-bake.1")).expect("read");
    assert!(bake.contains("install\\-to"), "bake page lacks its flags");
}

#[test]
fn a_closed_stdout_ends_the_output_quietly() {
    // the reading end is closed before the program starts, so its first write fails
    // with EPIPE, deterministically
    for args in [&["vendors"][..], &["completions", "bash"], &["--help"]] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let o = Command::new(BIN)
            .args(args)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .expect("run flatbake");
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        if args[0] != "--help" {
            // clap's own help printer is outside our writer; the rest must end cleanly
            assert!(o.status.success(), "{args:?}: {:?} {err}", o.status);
            assert!(err.is_empty(), "{args:?}: {err}");
        }
    }
}
