//! systemd-sysupdate transfer files (`/etc/sysupdate.NAME.d/NAME.conf`): checking that a
//! given file is a unit-style file sysupdate can read, before it is baked in.

/// Problems with a sysupdate transfer file's text, empty when it looks usable.
pub fn problems(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut sections: Vec<String> = Vec::new();
    let mut in_section = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            match rest.strip_suffix(']') {
                Some(name) if !name.is_empty() => {
                    sections.push(name.to_owned());
                    in_section = true;
                }
                _ => out.push(format!("line {}: malformed section header", i + 1)),
            }
            continue;
        }
        match line.split_once('=') {
            Some((k, _)) if !k.trim().is_empty() && !k.trim().contains(char::is_whitespace) => {
                if !in_section {
                    out.push(format!("line {}: setting before any [Section]", i + 1));
                }
            }
            _ => out.push(format!(
                "line {}: not KEY=value: {:?}",
                i + 1,
                truncate(line)
            )),
        }
        if out.len() >= 3 {
            break;
        }
    }
    for need in ["Source", "Target"] {
        if out.is_empty() && !sections.iter().any(|s| s == need) {
            out.push(format!("no [{need}] section"));
        }
    }
    out
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// The bakery's transfer file for `name` served from `bakery` (notes section 5).
pub fn bakery_conf(name: &str, bakery: &str) -> String {
    let bakery = bakery.trim_end_matches('/');
    format!(
        "[Transfer]\nVerify=false\n[Source]\nType=url-file\nPath={bakery}/extensions/{name}/\nMatchPattern={name}-@v-%a.raw\n[Target]\nInstancesMax=3\nType=regular-file\nPath=/opt/extensions/{name}\nCurrentSymlink=/etc/extensions/{name}.raw\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bakery_format_is_valid() {
        assert!(problems(&bakery_conf("wasmtime", "https://extensions.flatcar.org")).is_empty());
    }

    #[test]
    fn rejects_non_unit_files() {
        assert!(!problems("hello world\n").is_empty());
        assert!(!problems("Key=value\n[Source]\n[Target]\n").is_empty());
        assert!(problems("[Source]\nPath=/x\n[Target]\nPath=/y\n").is_empty());
        assert_eq!(problems("[Source]\nPath=/x\n"), vec!["no [Target] section"]);
        assert!(!problems("{\"json\": true}").is_empty());
    }
}
