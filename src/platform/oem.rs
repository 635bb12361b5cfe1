//! The OEM partition of a vendor image: `grub.cfg` with the vendor's OEM id and kernel
//! settings, the release's OEM sysext installed as `sysext/oem-<id>-<VERSION>.raw`
//! with its `active-oem-<id>` flag, and `oem-release` as the release writes it: from
//! 4722 on derived from the sysext's extension-release the way Flatcar's
//! `vm_image_util.sh` does (`SYSEXT_` fields with the prefix dropped, `oem-` dropped
//! from the id, unquoted, `ID=` first), before that as the common-oem-files package
//! wrote it (`vendors/oem-release.toml`).

use super::registry::{self, Registry, Vendor};
use super::version::Ver;
use crate::fs::{Edits, Op};
use crate::sysext::release::ReleaseFile;
use std::path::{Path, PathBuf};

/// The grub.cfg header every Flatcar OEM grub.cfg starts with.
pub const GRUB_HEADER: &str = "# Flatcar GRUB settings\n\n";

/// The grub.cfg line adding kernel arguments while keeping the vendor's own.
pub fn kernel_args_line(args: &[String]) -> String {
    format!("set linux_append=\"$linux_append {}\"\n", args.join(" "))
}

/// Problems with kernel arguments that cannot be put in a grub.cfg string safely.
pub fn kernel_arg_problems(args: &[String]) -> Vec<String> {
    args.iter()
        .filter(|a| {
            a.is_empty()
                || a.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "\"$\\;`'".contains(c))
        })
        .map(|a| format!("--kernel-arg {a:?}: one argument without blanks, quotes, $, \\, ; or `"))
        .collect()
}

/// `oem-release` text from the OEM sysext's extension-release.
pub fn oem_release(oem_id: &str, rel: &ReleaseFile) -> String {
    let mut id = None;
    let mut rest = String::new();
    for (k, v) in &rel.fields {
        let Some(key) = k.strip_prefix("SYSEXT_") else {
            continue;
        };
        if key == "ID" {
            id = Some(v.strip_prefix("oem-").unwrap_or(v).to_owned());
        } else {
            rest.push_str(&format!("{key}={v}\n"));
        }
    }
    format!("ID={}\n{rest}", id.unwrap_or_else(|| oem_id.to_owned()))
}

/// `oem-release` as Flatcar `version` writes it for `oem_id`, whose OEM sysext has
/// the extension-release `rel`.
pub fn release_text(
    reg: &Registry,
    oem_id: &str,
    version: &str,
    rel: &ReleaseFile,
) -> Result<String, String> {
    let ver =
        Ver::parse(version).ok_or_else(|| format!("Flatcar version {version:?}: not X.Y.Z"))?;
    if ver.0 >= registry::SYSEXT_OEM_RELEASE_SINCE {
        return Ok(oem_release(oem_id, rel));
    }
    package_release_text(reg, oem_id, version)
}

/// `oem-release` as an OEM package of Flatcar `version` (before 4722) wrote it.
pub fn package_release_text(reg: &Registry, oem_id: &str, version: &str) -> Result<String, String> {
    let ver =
        Ver::parse(version).ok_or_else(|| format!("Flatcar version {version:?}: not X.Y.Z"))?;
    let row = reg.package_oem_release(oem_id, ver).ok_or_else(|| {
        format!(
            "vendor OEM {oem_id}: flatbake does not know the oem-release Flatcar {version} writes (vendors/oem-release.toml has no row for it)"
        )
    })?;
    Ok(package_oem_release(oem_id, row))
}

/// The common-oem-files package's `oem-release` (releases before 4722).
pub fn package_oem_release(oem_id: &str, row: &registry::PackageOemRelease) -> String {
    let mut s = format!("ID={oem_id}\nVERSION_ID={}\n", row.version);
    s.push_str(&format!(
        "NAME=\"{}\"\n",
        row.name.as_deref().unwrap_or(oem_id)
    ));
    if let Some(h) = row.home_url.as_deref().filter(|h| !h.is_empty()) {
        s.push_str(&format!("HOME_URL=\"{h}\"\n"));
    }
    s.push_str("BUG_REPORT_URL=\"https://issues.flatcar.org\"\n");
    s
}

/// What a vendor's OEM partition gets besides grub.cfg.
#[derive(Clone, Debug, Default)]
pub struct OemContent {
    /// the release's OEM sysext, when the release installs one
    pub sysext: Option<PathBuf>,
    /// `oem-release`, when the release writes one
    pub release: Option<String>,
    /// plain files an OEM package wrote: (path under the OEM partition, text)
    pub files: Vec<(String, String)>,
}

/// The OEM content of a release whose OEM package wrote plain files (no sysext):
/// `oem-release` when the vendor has one, and the vendor's OEM template rendered with
/// the package's version.
pub fn package_content(
    reg: &Registry,
    vendor: &Vendor,
    oem_id: &str,
    version: &str,
) -> Result<OemContent, String> {
    let release = if vendor.oem_release {
        Some(package_release_text(reg, oem_id, version)?)
    } else {
        None
    };
    let mut files = Vec::new();
    if let Some(t) = &vendor.oem_template {
        let ver =
            Ver::parse(version).ok_or_else(|| format!("Flatcar version {version:?}: not X.Y.Z"))?;
        let row = reg.package_oem_release(oem_id, ver).ok_or_else(|| {
            format!(
                "vendor {}: flatbake does not know the oem-{oem_id} package version of Flatcar {version} (vendors/oem-release.toml has no row for it)",
                vendor.name
            )
        })?;
        for (name, text) in registry::oem_files(t) {
            files.push((
                name.to_owned(),
                text.replace("@@OEM_VERSION_ID@@", &row.version),
            ));
        }
    }
    Ok(OemContent {
        sysext: None,
        release,
        files,
    })
}

/// The OEM edits for `vendor`: files are staged in `work`. `kernel_args` are appended
/// to linux_append in its grub.cfg. Without a sysext (a release whose OEM content
/// came from a package of plain files) grub.cfg, `oem-release` and the package's
/// files are written.
pub fn edits(
    vendor: &Vendor,
    version: &str,
    content: &OemContent,
    kernel_args: &[String],
    work: &Path,
) -> std::io::Result<Edits> {
    let sysext = content.sysext.as_deref();
    let oem_release = content.release.as_deref();
    let mut e = Edits::default();
    let (Some(oem_id), Some(grub)) = (&vendor.oem_id, &vendor.grub_cfg) else {
        return Ok(e);
    };
    let stage = |name: &str, text: &str| -> std::io::Result<PathBuf> {
        let p = work.join(name);
        std::fs::write(&p, text)?;
        Ok(p)
    };
    let mut cfg = format!("{GRUB_HEADER}{grub}");
    if !kernel_args.is_empty() {
        cfg.push_str(&kernel_args_line(kernel_args));
    }
    e.push(Op::Write {
        path: "/grub.cfg".into(),
        src: stage("grub.cfg", &cfg)?,
        mode: 0o644,
    });
    if let Some(text) = oem_release {
        e.push(Op::Write {
            path: "/oem-release".into(),
            src: stage("oem-release", text)?,
            mode: 0o644,
        });
    }
    for (i, (name, text)) in content.files.iter().enumerate() {
        e.push(Op::Write {
            path: format!("/{name}"),
            src: stage(&format!("package-{i}"), text)?,
            mode: 0o644,
        });
    }
    if let Some(sysext) = sysext {
        e.push(Op::Write {
            path: format!("/sysext/oem-{oem_id}-{version}.raw"),
            src: sysext.to_owned(),
            mode: 0o644,
        });
        e.push(Op::Write {
            path: format!("/sysext/active-oem-{oem_id}"),
            src: stage("active", "")?,
            mode: 0o644,
        });
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_args() {
        let a = vec!["console=ttyS0,115200n8".to_owned(), "quiet".to_owned()];
        assert_eq!(
            kernel_args_line(&a),
            "set linux_append=\"$linux_append console=ttyS0,115200n8 quiet\"\n"
        );
        assert!(kernel_arg_problems(&a).is_empty());
        assert_eq!(
            kernel_arg_problems(&["a\"b".to_owned(), "$x".to_owned(), "a b".to_owned()]).len(),
            3
        );
    }

    #[test]
    fn oem_release_like_flatcar() {
        let rel = ReleaseFile::parse(
            "ID='flatcar'\nVERSION_ID='4593.2.5'\nARCHITECTURE='x86-64'\nEXTENSION_RELOAD_MANAGER=1\nSYSEXT_ID='oem-qemu'\nSYSEXT_NAME='QEMU OEM'\nSYSEXT_BUG_REPORT_URL='https://issues.flatcar.org'\n",
        )
        .unwrap();
        assert_eq!(
            oem_release("qemu", &rel),
            "ID=qemu\nNAME=QEMU OEM\nBUG_REPORT_URL=https://issues.flatcar.org\n"
        );
        assert_eq!(oem_release("gce", &ReleaseFile::default()), "ID=gce\n");
    }
}
