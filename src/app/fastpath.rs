//! The fast path of `--fetch --vendor V`: when Flatcar publishes V's disk image as it is
//! (`release::published`), bake that instead of the generic `.bin.bz2`, and write V's
//! qcow2 keeping every untouched compressed cluster verbatim (`format::reuse`). This
//! module decides when the fast path applies, says in one line when it falls back,
//! and records which source a bake used for the summary and `--json`.
//!
//! It applies when the request is a fetched release baked into exactly one vendor
//! that Flatcar publishes, with nothing that changes the vendor's layout or
//! regenerates its OEM content (`--kernel-arg` rewrites the vendor's `grub.cfg`; the
//! plain image beside it needs the generic disk), not a dry run, and
//! `FLATBAKE_FAST_PATH` is not `0`.

use crate::cli::BakeArgs;
use crate::platform::registry::Registry;
use crate::release::published::{self, Availability, Published};
use crate::release::{FetchOptions, FetchedRelease};
use crate::spec::GENERIC;
use std::sync::Mutex;

/// The source the last bake used (`None`: a local image).
static SOURCE: Mutex<Option<String>> = Mutex::new(None);

pub fn set_source(s: String) {
    *SOURCE.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
}

/// What the last bake was made from, for the summary and `--json`.
pub fn source() -> Option<String> {
    SOURCE.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Whether `FLATBAKE_FAST_PATH=0` turned the fast path off.
fn disabled() -> bool {
    std::env::var("FLATBAKE_FAST_PATH").is_ok_and(|v| v == "0")
}

/// The vendor whose published image this bake can start from; `Err` with the reason
/// (to print) when a published vendor cannot, `Ok(None)` when no vendor could.
fn candidate(args: &BakeArgs) -> Result<Option<String>, String> {
    if args.image.is_some() || args.dry_run || disabled() {
        return Ok(None);
    }
    let [vendor] = args.vendor.as_slice() else {
        if args
            .vendor
            .iter()
            .any(|v| published::VENDORS.contains(&v.as_str()))
        {
            return Err("more than one vendor image shares one baked base".into());
        }
        return Ok(None);
    };
    if vendor == GENERIC || !published::VENDORS.contains(&vendor.as_str()) {
        return Ok(None);
    }
    if !args.kernel_args.is_empty() {
        return Err("--kernel-arg rewrites the vendor's grub.cfg".into());
    }
    let reg = Registry::load(args.vendors_dir.as_deref()).map_err(|e| e.to_string())?;
    match reg.get(vendor) {
        Some(v) if v.virtual_size.is_none() && v.bundle.is_none() && v.oem_id.is_some() => {}
        _ => {
            return Err(format!(
                "vendor {vendor}'s definition changes the published disk"
            ))
        }
    }
    Ok(Some(vendor.clone()))
}

/// Fetches the release through the vendor's published image when the fast path
/// applies; `None` (after one line saying why, when it could have applied) for the
/// generic path.
pub fn fetch(
    args: &BakeArgs,
    o: &FetchOptions,
) -> anyhow::Result<Option<(FetchedRelease, Published)>> {
    let vendor = match candidate(args) {
        Ok(Some(v)) => v,
        Ok(None) => return Ok(None),
        Err(why) => {
            note!("generic image, not the published vendor image: {why}");
            return Ok(None);
        }
    };
    fetch_vendor(o, &vendor)
}

/// Fetches `vendor`'s published image (and `version.txt`); `None` after one line when
/// the release does not publish it.
pub fn fetch_vendor(
    o: &FetchOptions,
    vendor: &str,
) -> anyhow::Result<Option<(FetchedRelease, Published)>> {
    match published::fetch(o, vendor)? {
        Availability::Fetched(r, p) => {
            note!(
                "Flatcar {} ({}, {}): published {} image {} in {}",
                r.release.version,
                r.release.channel,
                r.release.arch,
                vendor,
                published::image_name(vendor),
                r.dir.display()
            );
            Ok(Some((*r, p)))
        }
        Availability::NotPublished(why) => {
            note!(
                "generic image, not the published {}: {why}",
                published::image_name(vendor)
            );
            Ok(None)
        }
    }
}

/// The one line saying which source a bake took.
pub fn describe(p: Option<&Published>) -> String {
    match p {
        Some(p) => format!("published {} image (fast path)", p.vendor),
        None => "generic image (flatcar_production_image.bin.bz2)".into(),
    }
}
