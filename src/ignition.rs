//! Ignition configs given with `--ignition`: checked before baking (valid JSON, an
//! `ignition.version` of a spec Flatcar's Ignition reads, and the structural rules
//! Ignition itself enforces when it validates a config, whose failure stops the first
//! boot: absolute, simplified paths; one entry per path; links with a target; modes
//! within 07777; unit names with a unit type; drop-ins named `*.conf`; users with a
//! name), with a pointed error for Butane YAML, which must be converted with `butane`
//! first.

use std::path::Path;

/// Ignition spec versions Flatcar's Ignition accepts (spec 3.x; 2.x is translated).
pub const SUPPORTED: &[&str] = &[
    "2.0.0", "2.1.0", "2.2.0", "2.3.0", "3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0", "3.5.0",
];

/// Check the Ignition config at `path`; Err is a one-line problem naming the file.
pub fn check(path: &Path) -> Result<String, String> {
    let bytes = read(path)?;
    check_bytes(&bytes, path)
}

/// Read the config at `path` (a regular file, at most [`crate::input::JSON_CAP`] bytes).
pub fn read(path: &Path) -> Result<Vec<u8>, String> {
    crate::input::read_bytes(path, crate::input::JSON_CAP)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Check config bytes read from `path` (named in the problem).
pub fn check_bytes(bytes: &[u8], path: &Path) -> Result<String, String> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| format!("{}: not a text file", path.display()))?;
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            if text.lines().any(|l| l.trim_start().starts_with("variant:")) {
                return Err(format!(
                    "{}: this is a Butane config, not Ignition JSON; convert it first: butane --strict {} > {}",
                    path.display(),
                    shell_word(&path.display().to_string()),
                    shell_word(&converted_name(path).display().to_string())
                ));
            }
            return Err(format!("{}: not valid JSON: {e}", path.display()));
        }
    };
    let version = value
        .get("ignition")
        .and_then(|i| i.get("version"))
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            format!(
                "{}: no ignition.version; not an Ignition config",
                path.display()
            )
        })?;
    if !SUPPORTED.contains(&version) {
        return Err(format!(
            "{}: Ignition spec version {version} is not supported (supported: {})",
            path.display(),
            SUPPORTED.join(", ")
        ));
    }
    let problems = structure_problems(&value, version.starts_with("3."));
    if let Some(first) = problems.first() {
        let more = match problems.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        return Err(format!(
            "{}: {first}{more}; Ignition would refuse the config and stop the first boot",
            path.display()
        ));
    }
    Ok(version.to_owned())
}

/// Unit types systemd knows (the suffix of a unit name).
const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "device",
    "mount",
    "automount",
    "swap",
    "target",
    "path",
    "timer",
    "slice",
    "scope",
];

/// The rules Ignition applies to a config's storage, systemd and passwd sections, each
/// problem naming its JSON path: for every spec, absolute paths, link targets, modes,
/// unit and drop-in names, user names; for spec 3 (`v3`) also paths in their simplest
/// form and one entry per path. Bounded by the config's size (read with a cap): one
/// pass over each list.
fn structure_problems(v: &serde_json::Value, v3: bool) -> Vec<String> {
    let mut ps = Vec::new();
    let list = |ptr: &str| -> &[serde_json::Value] {
        v.pointer(ptr)
            .and_then(|l| l.as_array())
            .map_or(&[], Vec::as_slice)
    };
    let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for kind in ["files", "directories", "links"] {
        for (i, e) in list(&format!("/storage/{kind}")).iter().enumerate() {
            let at = format!("storage.{kind}[{i}]");
            let Some(p) = e.get("path").and_then(|p| p.as_str()) else {
                ps.push(format!("{at}: no path"));
                continue;
            };
            if let Some(why) = path_problem(p, v3) {
                ps.push(format!("{at}.path {p:?}: {why}"));
            } else if let (true, Some(first)) = (v3, seen.insert(p.to_owned(), at.clone())) {
                ps.push(format!("{at}.path {p:?}: also given as {first}"));
            }
            if let Some(m) = e.get("mode").filter(|m| !m.is_null()) {
                if m.as_u64().is_none_or(|m| m > 0o7777) {
                    ps.push(format!("{at}.mode {m}: not a file mode (0 to 4095, 07777)"));
                }
            }
            let target = e.get("target").and_then(|t| t.as_str()).unwrap_or_default();
            if kind == "links" && target.is_empty() {
                ps.push(format!("{at}: a link needs a target"));
            }
        }
    }
    for (i, u) in list("/systemd/units").iter().enumerate() {
        let at = format!("systemd.units[{i}]");
        let name = u.get("name").and_then(|n| n.as_str()).unwrap_or_default();
        let typ = name.rsplit_once('.').map(|(_, t)| t).unwrap_or_default();
        if !UNIT_TYPES.contains(&typ) {
            ps.push(format!(
                "{at}.name {name:?}: not a unit name (NAME.service, .timer, ...)"
            ));
        }
        let dropins = u
            .get("dropins")
            .and_then(|d| d.as_array())
            .map_or(&[][..], Vec::as_slice);
        for (j, d) in dropins.iter().enumerate() {
            let dn = d.get("name").and_then(|n| n.as_str()).unwrap_or_default();
            if !dn.ends_with(".conf") || dn.len() == ".conf".len() || dn.contains('/') {
                ps.push(format!(
                    "{at}.dropins[{j}].name {dn:?}: a drop-in is named NAME.conf"
                ));
            }
        }
    }
    for (i, u) in list("/passwd/users").iter().enumerate() {
        if u.get("name")
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .is_empty()
        {
            ps.push(format!("passwd.users[{i}]: no name"));
        }
    }
    ps
}

/// Why Ignition refuses `p` as a path: relative, or (spec 3) not in its simplest form.
fn path_problem(p: &str, v3: bool) -> Option<&'static str> {
    if !p.starts_with('/') {
        return Some("not absolute");
    }
    if !v3 {
        return None;
    }
    let simplified = p.len() == 1
        || (!p.ends_with('/') || p.len() == 1)
            && p[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
    (!simplified).then_some("not in its simplest form (no //, ., .. or trailing /)")
}

/// Where the hint tells `butane` to write: beside the input with `.ign`, and never the
/// input itself (a shell truncates the target before butane reads it).
fn converted_name(path: &Path) -> std::path::PathBuf {
    let candidate = path.with_extension("ign");
    if candidate == path {
        path.with_extension("converted.ign")
    } else {
        candidate
    }
}

/// `s` quoted for a POSIX shell when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:=@%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_text(t: &str) -> Result<String, String> {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), t).unwrap();
        check(f.path())
    }

    #[test]
    fn the_butane_hint_never_overwrites_its_input() {
        let d = tempfile::tempdir().unwrap();
        for (name, out) in [
            ("config.ign", "config.converted.ign"),
            ("config.bu", "config.ign"),
            ("my config.yaml", "my config.ign"),
            ("config", "config.ign"),
        ] {
            let p = d.path().join(name);
            std::fs::write(&p, "variant: flatcar\nversion: 1.0.0\n").unwrap();
            let e = check(&p).unwrap_err();
            let target = d.path().join(out).display().to_string();
            let input = p.display().to_string();
            assert!(
                e.ends_with(&format!("> {}", shell_word(&target))),
                "{name}: {e}"
            );
            assert!(!e.ends_with(&format!("> {}", shell_word(&input))), "{e}");
        }
    }

    #[test]
    fn accepts_and_refuses() {
        assert_eq!(
            check_text(r#"{"ignition":{"version":"3.3.0"}}"#).unwrap(),
            "3.3.0"
        );
        assert!(check_text("variant: flatcar\nversion: 1.0.0\n")
            .unwrap_err()
            .contains("Butane"));
        assert!(check_text("{not json")
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(check_text(r#"{"storage":{}}"#)
            .unwrap_err()
            .contains("no ignition.version"));
        assert!(check_text(r#"{"ignition":{"version":"9.9.9"}}"#)
            .unwrap_err()
            .contains("not supported"));
    }

    #[test]
    fn what_ignition_would_refuse_is_refused() {
        let ok = r#"{"ignition":{"version":"3.4.0"},
            "storage":{"files":[{"path":"/etc/hostname","mode":420,"contents":{"source":"data:,x"}}],
              "directories":[{"path":"/opt/x","mode":493}],
              "links":[{"path":"/etc/localtime","target":"/usr/share/zoneinfo/UTC"}]},
            "systemd":{"units":[{"name":"a.service","enabled":true,
              "dropins":[{"name":"10-x.conf","contents":"[Service]"}]},{"name":"b.timer"}]},
            "passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAA"]}]}}"#;
        assert_eq!(check_text(ok).unwrap(), "3.4.0");
        for (bad, want) in [
            (
                r#""storage":{"files":[{"path":"etc/x"}]}"#,
                "storage.files[0].path \"etc/x\": not absolute",
            ),
            (
                r#""storage":{"files":[{"path":"/etc//x"}]}"#,
                "not in its simplest form",
            ),
            (
                r#""storage":{"directories":[{"path":"/opt/../x"}]}"#,
                "not in its simplest form",
            ),
            (
                r#""storage":{"files":[{"path":"/etc/x"}],"links":[{"path":"/etc/x","target":"/y"}]}"#,
                "storage.links[0].path \"/etc/x\": also given as storage.files[0]",
            ),
            (
                r#""storage":{"links":[{"path":"/etc/x"}]}"#,
                "storage.links[0]: a link needs a target",
            ),
            (
                r#""storage":{"files":[{"path":"/etc/x","mode":8000}]}"#,
                "storage.files[0].mode 8000: not a file mode",
            ),
            (
                r#""storage":{"files":[{"mode":420}]}"#,
                "storage.files[0]: no path",
            ),
            (
                r#""systemd":{"units":[{"name":"docker"}]}"#,
                "systemd.units[0].name \"docker\": not a unit name",
            ),
            (
                r#""systemd":{"units":[{"name":"a.service","dropins":[{"name":"x"}]}]}"#,
                "dropins[0].name \"x\": a drop-in is named NAME.conf",
            ),
            (
                r#""passwd":{"users":[{"groups":["wheel"]}]}"#,
                "passwd.users[0]: no name",
            ),
        ] {
            let cfg = format!(r#"{{"ignition":{{"version":"3.4.0"}},{bad}}}"#);
            let e = check_text(&cfg).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
            assert!(
                e.ends_with("Ignition would refuse the config and stop the first boot"),
                "{e}"
            );
        }
        let two =
            r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"a"},{"path":"b"}]}}"#;
        assert!(check_text(two).unwrap_err().contains("(and 1 more)"));
    }
}
