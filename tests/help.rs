//! Help as a user reads it: `-h` short (at most 40 lines, 80 columns), `--help` long
//! with examples that are copy-pasteable (clap accepts them), every flag and command
//! with help text, `flatbake sysext` listing all its subcommands, and a Butane hint
//! that never writes over its own input.

mod support;

use clap::CommandFactory;
use std::process::Command;
use support::*;

fn out_of(args: &[&str]) -> String {
    let o = flatbake(args);
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn short_help_is_short_and_narrow() {
    let h = out_of(&["-h"]);
    assert!(h.lines().count() <= 40, "{} lines:\n{h}", h.lines().count());
    for l in h.lines() {
        assert!(l.chars().count() <= 80, "wider than 80: {l:?}");
    }
    for c in ["bake", "build", "inspect", "fetch", "sysext", "vendors"] {
        assert!(h.contains(&format!("  {c} ")), "{c} missing:\n{h}");
    }
    assert!(h.contains("--help"), "{h}");
}

#[test]
fn long_help_examples_fit_80_columns_and_parse() {
    let h = out_of(&["--help"]);
    for l in h.lines().filter(|l| !l.starts_with("Usage:")) {
        assert!(l.chars().count() <= 80, "wider than 80: {l:?}");
    }
    let ex = h.split("Examples:").nth(1).expect("an Examples section");
    // join continued lines, keep the commands
    let mut cmds: Vec<String> = Vec::new();
    let mut cur = String::new();
    for l in ex.lines().map(str::trim) {
        if l.starts_with('#') || l.is_empty() && cur.is_empty() {
            continue;
        }
        if let Some(part) = l.strip_suffix('\\') {
            cur.push_str(part);
            continue;
        }
        cur.push_str(l);
        if cur.starts_with("flatbake ") {
            cmds.push(std::mem::take(&mut cur));
        } else {
            cur.clear();
        }
    }
    assert!(cmds.len() >= 5, "{cmds:?}");
    let d = tempfile::tempdir().expect("tmp");
    for c in &cmds {
        let args: Vec<&str> = c.split_whitespace().skip(1).collect();
        // no tools and no files here: the run fails, but never as a usage error (2)
        let o = Command::new(BIN)
            .args(&args)
            .current_dir(d.path())
            .env("PATH", "")
            .env("FLATBAKE_RELEASE_URL", "http://127.0.0.1:9/{channel}")
            .env_remove("JOB_COMPLETION_INDEX")
            .output()
            .expect("run");
        assert_ne!(o.status.code(), Some(2), "{c}: {}", stderr(&o));
        assert!(
            std::fs::read_dir(d.path()).expect("dir").next().is_none(),
            "{c}"
        );
    }
    // build's own help has examples too
    assert!(out_of(&["build", "--help"]).contains("--list-variants --json"));
}

thread_local! {
    static MISSING: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn check_documented(cmd: &clap::Command, path: &str) {
    if cmd.is_hide_set() {
        return;
    }
    for a in cmd.get_arguments() {
        let builtin = matches!(
            a.get_action(),
            clap::ArgAction::Help
                | clap::ArgAction::HelpShort
                | clap::ArgAction::HelpLong
                | clap::ArgAction::Version
        );
        if a.is_hide_set() || builtin {
            continue;
        }
        let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
        if help.trim().is_empty() {
            MISSING.with(|m| m.borrow_mut().push(format!("{path} {}", a.get_id())));
        }
    }
    for s in cmd.get_subcommands() {
        let p = format!("{path} {}", s.get_name());
        if !s.is_hide_set() && s.get_name() != "help" {
            assert!(s.get_about().is_some(), "{p}: no about");
        }
        check_documented(s, &p);
    }
}

#[test]
fn every_flag_and_command_has_help_text() {
    check_documented(&flatbake::cli::Cli::command(), "flatbake");
    let missing = MISSING.with(|m| m.borrow().clone());
    assert!(missing.is_empty(), "no help text: {missing:?}");
}

#[test]
fn sysext_lists_all_its_subcommands() {
    let cmd = flatbake::cli::Cli::command();
    let sysext = cmd
        .get_subcommands()
        .find(|s| s.get_name() == "sysext")
        .expect("sysext");
    let shown = out_of(&["sysext"]);
    let top = out_of(&["--help"]);
    for s in sysext.get_subcommands().filter(|s| !s.is_hide_set()) {
        assert!(
            shown.contains(&format!("  {} ", s.get_name())),
            "{} missing:\n{shown}",
            s.get_name()
        );
        if s.get_name() != "help" {
            let long = out_of(&["sysext", "--help"]);
            assert!(long.contains(s.get_name()), "{}", s.get_name());
        }
    }
    assert!(top.contains("sysext"), "{top}");
}

#[test]
fn the_butane_hint_never_overwrites_its_input() {
    let img = fixtures().join("current.bin");
    let d = tempfile::tempdir().expect("tmp");
    let ign = d.path().join("config.ign");
    std::fs::write(&ign, "variant: flatcar\nversion: 1.0.0\n").expect("write");
    let out = d.path().join("out.bin");
    let err = flatbake_refused(&[
        "--image",
        s(&img),
        "-o",
        s(&out),
        "--ignition",
        s(&ign),
        &format!(
            "wasmtime:{}",
            sysext("wasmtime-v24.0.0-x86-64.raw").display()
        ),
    ]);
    assert!(err.contains("butane --strict"), "{err}");
    let target = err
        .split("> ")
        .nth(1)
        .expect("a redirect in the hint")
        .split(|c: char| c == ';' || c.is_whitespace())
        .next()
        .expect("target");
    assert_ne!(target, s(&ign), "{err}");
    assert!(target.ends_with(".ign"), "{err}");
    assert!(!out.exists());
}
