//! Flatcar's OEM sysexts (`oem-<id>.raw`, one per vendor and release): whether one is
//! the right file for the image it goes into (its extension-release names the release
//! and architecture). Used where a release's files are fetched and where vendor images
//! are planned.

use super::image;
use super::release::ReleaseFile;
use std::path::Path;

/// The extension-release of the OEM sysext `sysext` for OEM id `oem_id`, when it is
/// the one of Flatcar `version` (and `arch`, when given); else the problem, one line.
pub fn check_sysext(
    oem_id: &str,
    sysext: &Path,
    version: &str,
    arch: Option<&str>,
) -> Result<ReleaseFile, String> {
    let name = format!("oem-{oem_id}");
    let img = image::open(sysext, &name).map_err(|e| e.to_string())?;
    let rel = img.release.ok_or_else(|| {
        format!(
            "{}: no usr/lib/extension-release.d/extension-release.{name}",
            sysext.display()
        )
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
            return Err(format!(
                "{}: OEM sysext is for {have}, the image is {want}",
                sysext.display()
            ));
        }
    }
    Ok(rel)
}
