//! Ignition configs given with `--ignition`: checked before baking (valid JSON, an
//! `ignition.version` of a spec Flatcar's Ignition reads), with a pointed error for
//! Butane YAML, which must be converted with `butane` first.

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
    Ok(version.to_owned())
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
}
