//! `extension-release` and `os-release` files: parsing the `KEY=value` format
//! (os-release(5)) and judging an extension's metadata the way systemd-sysext does.

use std::fmt;

/// A parsed os-release style file, keys in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleaseFile {
    pub fields: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReleaseError {
    #[error("line {0}: not KEY=value")]
    Syntax(usize),
    #[error("line {0}: unterminated quote")]
    Quote(usize),
    #[error("not text (binary or not UTF-8)")]
    NotText,
    #[error("too large ({0} bytes; at most {MAX_RELEASE_BYTES})")]
    TooLarge(usize),
}

/// systemd reads these files whole; anything larger is not a real release file.
pub const MAX_RELEASE_BYTES: usize = 64 * 1024;

impl ReleaseFile {
    pub fn parse_bytes(bytes: &[u8]) -> Result<ReleaseFile, ReleaseError> {
        if bytes.len() > MAX_RELEASE_BYTES {
            return Err(ReleaseError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| ReleaseError::NotText)?;
        if text.contains('\0') {
            return Err(ReleaseError::NotText);
        }
        ReleaseFile::parse(text)
    }

    pub fn parse(text: &str) -> Result<ReleaseFile, ReleaseError> {
        let mut fields = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once('=').ok_or(ReleaseError::Syntax(i + 1))?;
            let k = k.trim();
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ReleaseError::Syntax(i + 1));
            }
            fields.push((k.to_owned(), unquote(v.trim(), i + 1)?));
        }
        Ok(ReleaseFile { fields })
    }

    /// The last value of `key`, as a shell would see it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn unquote(v: &str, line: usize) -> Result<String, ReleaseError> {
    let mut out = String::new();
    let mut chars = v.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => match chars.next() {
                Some(n) => out.push(n),
                None => return Err(ReleaseError::Quote(line)),
            },
            (_, c) => out.push(c),
        }
    }
    if quote.is_some() {
        return Err(ReleaseError::Quote(line));
    }
    Ok(out)
}

impl fmt::Display for ReleaseFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.fields {
            writeln!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// What an extension must match to be merged: the host OS as systemd-sysext sees it.
#[derive(Clone, Debug)]
pub struct HostOs<'a> {
    /// `ID` of the OS, `flatcar`.
    pub id: &'a str,
    /// systemd architecture name (`x86-64`, `arm64`), when known.
    pub arch: Option<&'a str>,
}

/// Every reason systemd-sysext would refuse an extension with this extension-release.
pub fn problems(rel: &ReleaseFile, host: &HostOs<'_>) -> Vec<String> {
    let mut out = Vec::new();
    match rel.get("ID") {
        None => out.push("extension-release has no ID= (use ID=flatcar or ID=_any)".to_owned()),
        Some("_any") => {}
        Some(id) if id == host.id => {
            if rel.get("SYSEXT_LEVEL").is_none() && rel.get("VERSION_ID").is_none() {
                out.push(format!(
                    "extension-release has ID={id} but neither SYSEXT_LEVEL= nor VERSION_ID="
                ));
            }
        }
        Some(id) => out.push(format!(
            "extension-release has ID={id}, expected {} or _any",
            host.id
        )),
    }
    if let (Some(want), Some(have)) = (host.arch, rel.get("ARCHITECTURE")) {
        if want != have {
            out.push(format!(
                "extension-release has ARCHITECTURE={have}, but the image is {want}"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quotes_and_comments() {
        let r = ReleaseFile::parse("# c\nID=flatcar\nNAME=\"Flat car\"\nX='a\"b'\nY=a\\ b\n\n")
            .unwrap();
        assert_eq!(r.get("ID"), Some("flatcar"));
        assert_eq!(r.get("NAME"), Some("Flat car"));
        assert_eq!(r.get("X"), Some("a\"b"));
        assert_eq!(r.get("Y"), Some("a b"));
        assert_eq!(r.get("Z"), None);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            ReleaseFile::parse("ID=flatcar\nnonsense\n"),
            Err(ReleaseError::Syntax(2))
        );
        assert_eq!(ReleaseFile::parse("ID=\"x\n"), Err(ReleaseError::Quote(1)));
        assert_eq!(
            ReleaseFile::parse_bytes(&[0xff, 0, 1]),
            Err(ReleaseError::NotText)
        );
        assert!(matches!(
            ReleaseFile::parse_bytes(&vec![b'#'; MAX_RELEASE_BYTES + 1]),
            Err(ReleaseError::TooLarge(_))
        ));
    }

    #[test]
    fn judges_like_systemd() {
        let host = HostOs {
            id: "flatcar",
            arch: Some("x86-64"),
        };
        let p = |s: &str| problems(&ReleaseFile::parse(s).unwrap(), &host);
        assert!(p("ID=_any\n").is_empty());
        assert!(p("ID=flatcar\nSYSEXT_LEVEL=1.0\nARCHITECTURE=x86-64\n").is_empty());
        assert_eq!(p("ID=fedora\nSYSEXT_LEVEL=1.0\n").len(), 1);
        assert!(p("ID=flatcar\n")[0].contains("SYSEXT_LEVEL"));
        assert!(p("ID=_any\nARCHITECTURE=arm64\n")[0].contains("ARCHITECTURE=arm64"));
        assert!(p("")[0].contains("no ID"));
    }
}
