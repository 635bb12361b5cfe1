//! Old spellings on the command line: `bake_flatcar_image.sh` and habit spell flags with
//! underscores (`--install_to`) and booleans with a value (`--sysupdate true`). Each is
//! rewritten to flatbake's spelling before parsing, with a note on stderr saying the
//! new one, so an old pipeline keeps working and learns the new form.

use std::ffi::OsString;

/// `argv` with old spellings rewritten; `notes` gets one line per rewrite.
pub fn rewrite(argv: Vec<OsString>, notes: &mut Vec<String>) -> Vec<OsString> {
    let longs = long_flags();
    let bools = bool_flags();
    let mut out: Vec<OsString> = Vec::with_capacity(argv.len());
    let mut it = argv.into_iter().peekable();
    if let Some(a0) = it.next() {
        out.push(a0);
    }
    while let Some(arg) = it.next() {
        let Some(text) = arg.to_str().map(str::to_owned) else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            out.push(arg);
            out.extend(it);
            break;
        }
        let Some(body) = text.strip_prefix("--") else {
            out.push(arg);
            continue;
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (body.to_owned(), None),
        };
        let mut flag = name.clone();
        if name.contains('_') && !longs.contains(&name) {
            let dashed = name.replace('_', "-");
            if longs.contains(&dashed) {
                notes.push(format!("--{name} is spelled --{dashed}"));
                flag = dashed;
            }
        }
        if bools.contains(&flag) {
            // --sysupdate true / --sysupdate=false
            let v = match &value {
                Some(v) => Some(v.clone()),
                None => it
                    .peek()
                    .and_then(|n| n.to_str())
                    .filter(|n| as_bool(n).is_some())
                    .map(str::to_owned)
                    .inspect(|_| {
                        it.next();
                    }),
            };
            if let Some(v) = v {
                match as_bool(&v) {
                    Some(true) => {
                        notes.push(format!("--{flag} {v} is spelled --{flag}"));
                        out.push(format!("--{flag}").into());
                    }
                    Some(false) => {
                        notes.push(format!("--{flag} {v} is spelled by leaving --{flag} out"));
                    }
                    // not a boolean: let clap say what is wrong
                    None => out.push(format!("--{flag}={v}").into()),
                }
                continue;
            }
        }
        match value {
            Some(v) => out.push(format!("--{flag}={v}").into()),
            None => out.push(format!("--{flag}").into()),
        }
    }
    out
}

fn as_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" => Some(true),
        "false" | "no" => Some(false),
        _ => None,
    }
}

fn all_args(cmd: &clap::Command, out: &mut Vec<clap::Arg>) {
    out.extend(cmd.get_arguments().cloned());
    for s in cmd.get_subcommands() {
        all_args(s, out);
    }
}

fn args() -> Vec<clap::Arg> {
    let mut v = Vec::new();
    all_args(
        &<crate::cli::Cli as clap::CommandFactory>::command(),
        &mut v,
    );
    v
}

/// Every long flag of every command.
fn long_flags() -> Vec<String> {
    args()
        .iter()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect()
}

/// Long flags that take no value (switches).
fn bool_flags() -> Vec<String> {
    args()
        .iter()
        .filter(|a| matches!(a.get_action(), clap::ArgAction::SetTrue))
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(a: &[&str]) -> (Vec<String>, Vec<String>) {
        let mut notes = Vec::new();
        let v = rewrite(a.iter().map(OsString::from).collect(), &mut notes);
        (
            v.into_iter().map(|s| s.into_string().unwrap()).collect(),
            notes,
        )
    }

    #[test]
    fn old_spellings_become_new_ones() {
        let (v, n) = rw(&["fb", "--install_to", "oem:/x", "--sysupdate", "true", "a:b"]);
        assert_eq!(v, ["fb", "--install-to", "oem:/x", "--sysupdate", "a:b"]);
        assert_eq!(n.len(), 2);
        let (v, _) = rw(&["fb", "--sysupdate=false", "--fetch", "a:b"]);
        assert_eq!(v, ["fb", "--fetch", "a:b"]);
        // a following NAME:FILE is not taken as the switch's value
        let (v, n) = rw(&["fb", "--sysupdate", "a:b"]);
        assert_eq!(v, ["fb", "--sysupdate", "a:b"]);
        assert!(n.is_empty());
        // after --, nothing is touched
        let (v, _) = rw(&["fb", "--", "--install_to"]);
        assert_eq!(v, ["fb", "--", "--install_to"]);
    }
}
