//! `extension-release` and `os-release` files: the parsed `KEY=value` list, and a strict
//! parser for the files flatbake reads for itself (oem-release, version.txt). What
//! systemd reads is parsed with systemd's own rules in [`super::compat`].

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
}
