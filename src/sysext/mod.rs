//! systemd-sysext images: their metadata (`extension-release`), reading existing
//! images, the checks systemd applies before it merges one (plus lints for what it
//! would merge but not run), and building new ones
//! (`flatbake sysext`: packing a directory, recipes, Butane snippets, converting Torcx
//! images, bundling programs from container images with Flix, or whole root filesystems with
//! Flatwrap).

pub mod butane;
pub mod check;
pub mod compat;
pub mod erofs;
pub mod fetch;
pub mod flatwrap;
pub mod flix;
pub mod image;
pub mod lint;
pub mod oci;
pub mod oem;
pub mod pack;
pub mod recipe;
pub mod release;
pub mod squashfs;
pub mod sysupdate;
pub mod target;
pub mod torcx;
pub mod zip;

/// Give every directory under (and including) `dir` mode 0755, whatever the umask was
/// when a staging tree was made (recipes, Torcx conversion).
pub fn fix_dir_modes(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            fix_dir_modes(&e.path())?;
        }
    }
    Ok(())
}

/// Whether `name` is usable as an extension name: the file name of
/// `/etc/extensions/NAME.raw` and the suffix of `extension-release.NAME`.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the extension name is empty".into());
    }
    if name.starts_with('.') {
        return Some(format!("extension name '{name}' starts with '.'"));
    }
    if name.contains('/') || name.contains("..") {
        return Some(format!("extension name '{name}' contains '/' or '..'"));
    }
    if name.len() > 200 {
        let head: String = name.chars().take(20).collect();
        return Some(format!(
            "extension name '{head}...' is too long ({} bytes, at most 200)",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.+@".contains(*c)))
    {
        return Some(format!(
            "extension name '{name}' contains {c:?}; use letters, digits and - _ . + @"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        use super::name_problem as p;
        assert!(p("wasmtime").is_none());
        assert!(p("docker-flatcar").is_none());
        assert!(p("").is_some());
        assert!(p(".hidden").is_some());
        assert!(p("a/b").is_some());
        assert!(p("a..b").is_some());
        assert!(p("a b").is_some());
        // too long, with a multi-byte character across byte 20
        let long = "a".to_owned() + &"é".repeat(120);
        assert!(p(&long).is_some_and(|m| m.contains("is too long (241 bytes")));
    }
}
