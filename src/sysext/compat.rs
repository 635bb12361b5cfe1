//! Whether systemd-sysext will merge an extension on a given target, decided exactly as
//! systemd (v252, the version Flatcar and our CI run) decides it: the `KEY=value` files
//! read with systemd's own env-file rules (no extra trimming, quoting and escapes as
//! `parse_env_file`, `#`/`;` comments, lines without `=` ignored, last assignment wins,
//! invalid UTF-8 in a key or value fails the file), and an extension-release compared
//! with the target's os-release as `extension_release_validate` does (`SYSEXT_SCOPE`,
//! `ARCHITECTURE`, `ID`/`_any`, `SYSEXT_LEVEL`, else `VERSION_ID`). The one predicate
//! behind `flatbake sysext check` and the pre-flight of `flatbake bake`.

use super::release::ReleaseFile;

/// What systemd treats as whitespace in env files (`WHITESPACE`).
const WHITESPACE: &[u8] = b" \t\n\r";
const NEWLINE: &[u8] = b"\n\r";
const COMMENTS: &[u8] = b"#;";
/// Characters a backslash escapes inside double quotes (`SHELL_NEED_ESCAPE`).
const SHELL_NEED_ESCAPE: &[u8] = b"\"\\`$";

/// Why systemd fails to read an env file as a whole.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("line {0}: invalid UTF-8 in a key or value, which systemd refuses")]
    Utf8(usize),
    #[error("contains a NUL byte, which systemd refuses")]
    Nul,
}

/// systemd's `unichar_is_valid`: stricter than Rust's `char` (no noncharacters).
fn unichar_ok(c: char) -> bool {
    let c = c as u32;
    !((0xFDD0..=0xFDEF).contains(&c) || (c & 0xFFFE) == 0xFFFE)
}

fn text(bytes: &[u8], line: usize) -> Result<String, EnvError> {
    let s = std::str::from_utf8(bytes).map_err(|_| EnvError::Utf8(line))?;
    if s.chars().all(unichar_ok) {
        Ok(s.to_owned())
    } else {
        Err(EnvError::Utf8(line))
    }
}

/// Parse an os-release style file exactly as systemd's `parse_env_file_internal` does.
/// A NUL byte anywhere fails the file (`read_full_stream` refuses embedded NULs).
pub fn parse_env(bytes: &[u8]) -> Result<ReleaseFile, EnvError> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum S {
        PreKey,
        Key,
        PreValue,
        Value,
        ValueEscape,
        Single,
        Double,
        DoubleEscape,
        Comment,
        CommentEscape,
    }
    if bytes.contains(&0) {
        return Err(EnvError::Nul);
    }
    let mut fields = Vec::new();
    let mut key: Vec<u8> = Vec::new();
    let mut value: Vec<u8> = Vec::new();
    let mut last_key_ws: Option<usize> = None;
    let mut last_value_ws: Option<usize> = None;
    let mut line = 1;
    let mut state = S::PreKey;
    let mut push = |key: &mut Vec<u8>,
                    value: &mut Vec<u8>,
                    last_key_ws: Option<usize>,
                    chomp: Option<usize>,
                    line: usize|
     -> Result<(), EnvError> {
        if let Some(n) = last_key_ws {
            key.truncate(n);
        }
        if let Some(n) = chomp {
            value.truncate(n);
        }
        let k = text(key, line)?;
        let v = text(value, line)?;
        key.clear();
        value.clear();
        fields.push((k, v));
        Ok(())
    };
    for &c in bytes {
        match state {
            S::PreKey => {
                if COMMENTS.contains(&c) {
                    state = S::Comment;
                } else if !WHITESPACE.contains(&c) {
                    state = S::Key;
                    last_key_ws = None;
                    key.push(c);
                }
            }
            S::Key => {
                if NEWLINE.contains(&c) {
                    state = S::PreKey;
                    line += 1;
                    key.clear();
                } else if c == b'=' {
                    state = S::PreValue;
                    last_value_ws = None;
                } else {
                    if !WHITESPACE.contains(&c) {
                        last_key_ws = None;
                    } else if last_key_ws.is_none() {
                        last_key_ws = Some(key.len());
                    }
                    key.push(c);
                }
            }
            S::PreValue => {
                if NEWLINE.contains(&c) {
                    state = S::PreKey;
                    push(&mut key, &mut value, last_key_ws, None, line)?;
                    line += 1;
                } else if c == b'\'' {
                    state = S::Single;
                } else if c == b'"' {
                    state = S::Double;
                } else if c == b'\\' {
                    state = S::ValueEscape;
                } else if !WHITESPACE.contains(&c) {
                    state = S::Value;
                    value.push(c);
                }
            }
            S::Value => {
                if NEWLINE.contains(&c) {
                    state = S::PreKey;
                    push(&mut key, &mut value, last_key_ws, last_value_ws, line)?;
                    line += 1;
                } else if c == b'\\' {
                    state = S::ValueEscape;
                    last_value_ws = None;
                } else {
                    if !WHITESPACE.contains(&c) {
                        last_value_ws = None;
                    } else if last_value_ws.is_none() {
                        last_value_ws = Some(value.len());
                    }
                    value.push(c);
                }
            }
            S::ValueEscape => {
                state = S::Value;
                if !NEWLINE.contains(&c) {
                    value.push(c);
                }
            }
            S::Single => {
                if c == b'\'' {
                    state = S::PreValue;
                } else {
                    value.push(c);
                }
            }
            S::Double => {
                if c == b'"' {
                    state = S::PreValue;
                } else if c == b'\\' {
                    state = S::DoubleEscape;
                } else {
                    value.push(c);
                }
            }
            S::DoubleEscape => {
                state = S::Double;
                if SHELL_NEED_ESCAPE.contains(&c) {
                    value.push(c);
                } else if c != b'\n' {
                    value.push(b'\\');
                    value.push(c);
                }
            }
            S::Comment => {
                if c == b'\\' {
                    state = S::CommentEscape;
                } else if NEWLINE.contains(&c) {
                    state = S::PreKey;
                    line += 1;
                }
            }
            S::CommentEscape => state = S::Comment,
        }
        if c == b'\n' && matches!(state, S::Single | S::Double) {
            line += 1;
        }
    }
    match state {
        S::Value => push(&mut key, &mut value, last_key_ws, last_value_ws, line)?,
        S::PreValue | S::ValueEscape | S::Single | S::Double | S::DoubleEscape => {
            push(&mut key, &mut value, last_key_ws, None, line)?
        }
        S::PreKey | S::Key | S::Comment | S::CommentEscape => {}
    }
    Ok(ReleaseFile { fields })
}

/// The target OS as systemd-sysext sees it: its os-release's `ID`, `VERSION_ID` and
/// `SYSEXT_LEVEL`, the machine's architecture and the scope systemd-sysext runs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetOs {
    pub id: String,
    pub version_id: String,
    pub sysext_level: String,
    /// systemd architecture name (`x86-64`, `arm64`), when known.
    pub arch: Option<String>,
    /// Where the os-release came from, for messages.
    pub source: String,
}

/// systemd-sysext on a booted Flatcar runs in the `system` scope (not the initrd's).
pub const SCOPE: &str = "system";

impl TargetOs {
    /// Any current Flatcar (`ID=flatcar`, `SYSEXT_LEVEL=1.0`), for a check that was given
    /// no target: an extension that pins a `VERSION_ID` cannot be judged against it.
    pub fn any_flatcar(arch: Option<&str>) -> TargetOs {
        TargetOs {
            id: "flatcar".into(),
            version_id: String::new(),
            sysext_level: "1.0".into(),
            arch: arch.map(str::to_owned),
            source: "any Flatcar (ID=flatcar, SYSEXT_LEVEL=1.0)".into(),
        }
    }

    fn is_generic(&self) -> bool {
        self.version_id.is_empty() && self.source.starts_with("any Flatcar")
    }

    /// The target from its os-release bytes; refused as systemd-sysext refuses to merge
    /// anything on it (unreadable file, empty or missing `ID`).
    pub fn from_os_release(
        bytes: &[u8],
        source: &str,
        arch: Option<&str>,
    ) -> Result<TargetOs, String> {
        let rel = parse_env(bytes).map_err(|e| format!("{source}: {e}"))?;
        let get = |k: &str| rel.get(k).unwrap_or("").to_owned();
        let id = get("ID");
        if id.is_empty() {
            return Err(format!(
                "{source}: no ID= (systemd-sysext merges nothing on an OS without one)"
            ));
        }
        Ok(TargetOs {
            id,
            version_id: get("VERSION_ID"),
            sysext_level: get("SYSEXT_LEVEL"),
            arch: arch.map(str::to_owned),
            source: source.to_owned(),
        })
    }

    /// One line describing the target, for reports.
    pub fn describe(&self) -> String {
        if self.is_generic() {
            return self.source.clone();
        }
        let mut s = format!("ID={}", self.id);
        if !self.version_id.is_empty() {
            s += &format!(" VERSION_ID={}", self.version_id);
        }
        if !self.sysext_level.is_empty() {
            s += &format!(" SYSEXT_LEVEL={}", self.sysext_level);
        }
        format!("{s} (from {})", self.source)
    }
}

/// A value as shown in a message: as is when plain ASCII, else quoted with escapes, so
/// stray spaces and look-alike characters are visible.
fn shown(v: &str) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        v.to_owned()
    } else {
        format!("{v:?}")
    }
}

/// Every reason systemd-sysext would skip an extension whose extension-release is `rel`
/// on `target` (empty: it merges). Mirrors `extension_release_validate`.
pub fn problems(rel: &ReleaseFile, target: &TargetOs) -> Vec<String> {
    let get = |k: &str| rel.get(k).unwrap_or("");
    let mut out = Vec::new();
    if rel.fields.is_empty() {
        return vec![
            "extension-release holds no KEY=value data (add ID=flatcar and SYSEXT_LEVEL=1.0)"
                .into(),
        ];
    }
    if let Some(scope) = rel.get("SYSEXT_SCOPE") {
        let words: Vec<&str> = scope
            .split(|c: char| c.is_ascii() && WHITESPACE.contains(&(c as u8)))
            .filter(|w| !w.is_empty())
            .collect();
        if !words.contains(&SCOPE) {
            out.push(format!(
                "extension-release has SYSEXT_SCOPE={}, which does not include {SCOPE} (add {SCOPE} or drop the key)",
                shown(scope)
            ));
        }
    }
    let arch = get("ARCHITECTURE");
    if !arch.is_empty() && arch != "_any" {
        match &target.arch {
            Some(want) if want == arch => {}
            Some(want) => out.push(format!(
                "extension-release has ARCHITECTURE={}, but the target is {want} (use ARCHITECTURE={want} or _any)",
                shown(arch)
            )),
            None => out.push(format!(
                "extension-release has ARCHITECTURE={} but the target's architecture is unknown; pass --arch",
                shown(arch)
            )),
        }
    }
    let id = get("ID");
    if id.is_empty() {
        out.push(format!(
            "extension-release has no ID= (use ID={} or ID=_any)",
            target.id
        ));
        return out;
    }
    if id == "_any" {
        return out;
    }
    if id != target.id {
        out.push(format!(
            "extension-release has ID={}, but the target is ID={} (use ID={} or ID=_any)",
            shown(id),
            target.id,
            target.id
        ));
        return out;
    }
    let (tv, tl) = (&target.version_id, &target.sysext_level);
    if tv.is_empty() && tl.is_empty() {
        return out;
    }
    let level = get("SYSEXT_LEVEL");
    if !tl.is_empty() && !level.is_empty() {
        if level != tl {
            out.push(format!(
                "extension-release has SYSEXT_LEVEL={}, but the target's is {tl} (use SYSEXT_LEVEL={tl})",
                shown(level)
            ));
        }
    } else if !tv.is_empty() {
        // no level on one side: systemd compares the whole VERSION_ID
        let version = get("VERSION_ID");
        let why = if tl.is_empty() {
            "the target has no SYSEXT_LEVEL, so systemd compares VERSION_ID".to_owned()
        } else {
            format!("it has no SYSEXT_LEVEL, so systemd compares VERSION_ID instead of SYSEXT_LEVEL={tl}")
        };
        let fix = if tl.is_empty() {
            format!("use VERSION_ID={tv}")
        } else {
            format!("add SYSEXT_LEVEL={tl} or use VERSION_ID={tv}")
        };
        if version.is_empty() {
            out.push(format!(
                "extension-release has ID={id} and no VERSION_ID; {why}, which must be the target's {tv} ({fix})"
            ));
        } else if version != tv {
            out.push(format!(
                "extension-release has VERSION_ID={}; {why}, which must be the target's {tv} ({fix})",
                shown(version)
            ));
        }
    } else if target.is_generic() {
        // systemd would compare VERSION_ID with the target's, which we do not know
        let version = get("VERSION_ID");
        out.push(format!(
            "extension-release has no SYSEXT_LEVEL=, so systemd compares VERSION_ID={} with the target's, which is not known here (add SYSEXT_LEVEL={tl}, or check with --target IMAGE or --target-os-release FILE)",
            shown(version)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(s: &str) -> Vec<(String, String)> {
        parse_env(s.as_bytes()).unwrap().fields
    }
    fn kv(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn parses_like_systemd() {
        assert_eq!(env("ID=flatcar\n"), vec![kv("ID", "flatcar")]);
        assert_eq!(env("  ID =  flatcar  \n"), vec![kv("ID", "flatcar")]);
        assert_eq!(env("ID=\"flat\" car \n"), vec![kv("ID", "flatcar")]);
        assert_eq!(env("ID=\"a \"\n"), vec![kv("ID", "a ")]);
        assert_eq!(env("ID=a\\ \n"), vec![kv("ID", "a ")]);
        assert_eq!(env("ID=flat\"car\"\n"), vec![kv("ID", "flat\"car\"")]);
        assert_eq!(env("ID='a\\b'\n"), vec![kv("ID", "a\\b")]);
        assert_eq!(env("ID=\"a\\b\\$\"\n"), vec![kv("ID", "a\\b$")]);
        assert_eq!(
            env("# c\n; c\nnonsense\nID=x\nID=y"),
            vec![kv("ID", "x"), kv("ID", "y")]
        );
        assert_eq!(env("ID=\"open\n"), vec![kv("ID", "open\n")]);
        assert_eq!(env("ID=flatcar\r\n"), vec![kv("ID", "flatcar")]);
        assert_eq!(env("ID=flatcar\u{a0}\n"), vec![kv("ID", "flatcar\u{a0}")]);
        assert_eq!(env("# a \\\nID=x\n"), Vec::<(String, String)>::new());
        assert_eq!(parse_env(b"ID=a\n\0"), Err(EnvError::Nul));
        assert_eq!(parse_env(b"ID=\xff\n"), Err(EnvError::Utf8(1)));
        assert!(parse_env("ID=\u{fffe}\n".as_bytes()).is_err());
        assert!(parse_env(b"# \xff\nID=x\n").is_ok());
    }

    #[test]
    fn judges_like_systemd() {
        let t = TargetOs::from_os_release(
            b"ID=flatcar\nVERSION_ID=4593.2.5\nSYSEXT_LEVEL=1.0\n",
            "os-release",
            Some("x86-64"),
        )
        .unwrap();
        let p = |s: &str| problems(&parse_env(s.as_bytes()).unwrap(), &t);
        assert!(p("ID=_any\n").is_empty());
        assert!(p("ID=flatcar\nSYSEXT_LEVEL=1.0\nARCHITECTURE=x86-64\n").is_empty());
        assert!(p("ID=flatcar\nVERSION_ID=4593.2.5\n").is_empty());
        assert_eq!(p("ID=flatcar\nSYSEXT_LEVEL=2.0\n").len(), 1);
        assert_eq!(p("ID=flatcar\nVERSION_ID=4081.2.0\n").len(), 1);
        assert_eq!(p("ID=flatcar\n").len(), 1);
        assert_eq!(p("ID=fedora\nSYSEXT_LEVEL=1.0\n").len(), 1);
        assert_eq!(p("ID=_any\nARCHITECTURE=arm64\n").len(), 1);
        assert!(p("ID=_any\nARCHITECTURE=_any\n").is_empty());
        assert_eq!(p("ID=_any\nSYSEXT_SCOPE=portable\n").len(), 1);
        assert!(p("ID=_any\nSYSEXT_SCOPE='portable system'\n").is_empty());
        assert_eq!(p("# only a comment\n").len(), 1);
        let any = TargetOs::any_flatcar(None);
        let q = |s: &str| problems(&parse_env(s.as_bytes()).unwrap(), &any);
        assert!(q("ID=flatcar\nSYSEXT_LEVEL=1.0\n").is_empty());
        assert!(q("ID=flatcar\nVERSION_ID=1\n")[0].contains("--target"));
        assert!(q("ID=flatcar\nARCHITECTURE=x86-64\nSYSEXT_LEVEL=1.0\n")[0].contains("--arch"));
        assert!(TargetOs::from_os_release(b"VERSION_ID=1\n", "x", None).is_err());
    }
}
