//! The OEM partition of a vendor image: `grub.cfg` with the vendor's OEM id and kernel
//! settings, the release's OEM sysext installed as `sysext/oem-<id>-<VERSION>.raw`
//! with its `active-oem-<id>` flag, and `oem-release` derived from the sysext's
//! extension-release the way Flatcar's `vm_image_util.sh` does (`SYSEXT_` fields with
//! the prefix dropped, `oem-` dropped from the id, unquoted `ID=` first).

use super::registry::Vendor;
use crate::fs::{Edits, Op};
use crate::sysext::image;
use crate::sysext::release::ReleaseFile;
use std::path::{Path, PathBuf};

/// The grub.cfg header every Flatcar OEM grub.cfg starts with.
pub const GRUB_HEADER: &str = "# Flatcar GRUB settings\n\n";

/// Problems with an OEM sysext for `vendor` and Flatcar `version`; empty when usable.
pub fn check_sysext(oem_id: &str, sysext: &Path, version: &str, arch: Option<&str>) -> Result<ReleaseFile, String> {
    let name = format!("oem-{oem_id}");
    let img = image::open(sysext, &name).map_err(|e| e.to_string())?;
    let rel = img.release.ok_or_else(|| {
        format!("{}: no usr/lib/extension-release.d/extension-release.{name}", sysext.display())
    })?;
    // Flatcar's OEM sysexts pin VERSION_ID: one of another release is refused at boot.
    if let Some(v) = rel.get("VERSION_ID") {
        if v != version {
            return Err(format!(
                "{}: OEM sysext is for Flatcar {v} but the image is {version}; use the OEM sysext of the same release",
                sysext.display()
            ));
        }
    }
    if let (Some(want), Some(have)) = (arch, rel.get("ARCHITECTURE")) {
        if want != have {
            return Err(format!("{}: OEM sysext is for {have}, the image is {want}", sysext.display()));
        }
    }
    Ok(rel)
}

/// `oem-release` text from the OEM sysext's extension-release.
pub fn oem_release(oem_id: &str, rel: &ReleaseFile) -> String {
    let mut id = None;
    let mut rest = String::new();
    for (k, v) in &rel.fields {
        let Some(key) = k.strip_prefix("SYSEXT_") else { continue };
        if key == "ID" {
            id = Some(v.strip_prefix("oem-").unwrap_or(v).to_owned());
        } else {
            rest.push_str(&format!("{key}={v}\n"));
        }
    }
    format!("ID={}\n{rest}", id.unwrap_or_else(|| oem_id.to_owned()))
}

/// The OEM edits for `vendor`: files are staged in `work`.
pub fn edits(vendor: &Vendor, version: &str, sysext: &Path, rel: &ReleaseFile, work: &Path) -> std::io::Result<Edits> {
    let mut e = Edits::default();
    let (Some(oem_id), Some(grub)) = (&vendor.oem_id, &vendor.grub_cfg) else {
        return Ok(e);
    };
    let stage = |name: &str, text: &str| -> std::io::Result<PathBuf> {
        let p = work.join(name);
        std::fs::write(&p, text)?;
        Ok(p)
    };
    e.push(Op::Write { path: "/grub.cfg".into(), src: stage("grub.cfg", &format!("{GRUB_HEADER}{grub}"))?, mode: 0o644 });
    e.push(Op::Write { path: "/oem-release".into(), src: stage("oem-release", &oem_release(oem_id, rel))?, mode: 0o644 });
    e.push(Op::Write {
        path: format!("/sysext/oem-{oem_id}-{version}.raw"),
        src: sysext.to_owned(),
        mode: 0o644,
    });
    e.push(Op::Write { path: format!("/sysext/active-oem-{oem_id}"), src: stage("active", "")?, mode: 0o644 });
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oem_release_like_flatcar() {
        let rel = ReleaseFile::parse(
            "ID='flatcar'\nVERSION_ID='4593.2.5'\nARCHITECTURE='x86-64'\nEXTENSION_RELOAD_MANAGER=1\nSYSEXT_ID='oem-qemu'\nSYSEXT_NAME='QEMU OEM'\nSYSEXT_BUG_REPORT_URL='https://issues.flatcar.org'\n",
        )
        .unwrap();
        assert_eq!(oem_release("qemu", &rel), "ID=qemu\nNAME=QEMU OEM\nBUG_REPORT_URL=https://issues.flatcar.org\n");
        assert_eq!(oem_release("gce", &ReleaseFile::default()), "ID=gce\n");
    }
}
