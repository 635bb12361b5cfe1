//! The fast path's source: a vendor image Flatcar publishes as it is (not only bz2'd),
//! e.g. `flatcar_production_qemu_uefi_image.img`, a compressed qcow2 (`qemu-img convert
//! -c -o compat=0.10`, `build_library/vm_image_util.sh` `_write_qcow2_disk`), uploaded
//! with its `.sig` because `ci-automation/vms.sh` gives these vendors the compression
//! format `none`.
//!
//! [`fetch`] resolves the release, fetches `version.txt` and the vendor image with its
//! signature exactly like the generic image ([`super::fetch_verified`]), inflates the
//! qcow2 to a sparse raw file on all cores (`disk::qcow2map::inflate`, zeros stay holes)
//! and checks that the image is the release and architecture asked for
//! ([`super::identity`], as for the generic image). Both files stay in the release's
//! cache directory:
//!
//! ```text
//! <cache>/<board>/<version>/flatcar_production_<vendor>_image.img  (+ .sig, .verified)
//! <cache>/<board>/<version>/flatcar_production_<vendor>_image.bin  (+ .verified: source-sha256)
//! ```
//!
//! A release without the file or its signature gives [`Availability::NotPublished`], and
//! the caller takes the generic path; a file that is there but fails any check (its
//! signature, its qcow2 structure, its identity) is refused, like the generic image.

use std::fs;
use std::path::{Path, PathBuf};

use super::{
    cache, fetch_verified, forget, head, identity, io_err, DownloadError, Error, FetchOptions,
    FetchedRelease, Head, ResolvedRelease, IMAGE_BZ2,
};
use crate::disk::qcow2map::{self, InflateStats};

/// Vendors whose disk image Flatcar publishes uncompressed beside its `.bz2` (the
/// compression format `none` in `ci-automation/vms.sh`), as compressed qcow2 of the
/// vendor's own layout. exoscale is left out: its published file is `qemu-img resize`d
/// to 10 GiB, with the backup GPT left mid-disk, unlike what flatbake writes.
pub const VENDORS: &[&str] = &[
    "qemu_uefi",
    "openstack",
    "scaleway",
    "kubevirt",
    "proxmoxve",
    "stackit",
    "oraclecloud",
];

/// The published file of `vendor`.
pub fn image_name(vendor: &str) -> String {
    format!("flatcar_production_{vendor}_image.img")
}

/// Its inflated raw form in the cache.
pub fn raw_name(vendor: &str) -> String {
    format!("flatcar_production_{vendor}_image.bin")
}

/// A fetched, verified and inflated vendor image.
#[derive(Debug, Clone)]
pub struct Published {
    pub vendor: String,
    /// The signed qcow2, as published.
    pub qcow2: PathBuf,
    /// Its guest disk, sparse raw (keep it pristine: the writer compares against it).
    pub raw: PathBuf,
    /// Inflation statistics; `None` when the cache had the raw image.
    pub inflated: Option<InflateStats>,
}

/// What [`fetch`] found.
#[derive(Debug)]
pub enum Availability {
    /// The release (as `FetchedRelease`, whose `image` is the vendor's raw disk) and the
    /// published image.
    Fetched(Box<FetchedRelease>, Published),
    /// Not usable as the fast path's source; why, in a few words.
    NotPublished(String),
}

/// Inflates the verified qcow2 at `src` (named `real`) to `raw` and checks that it is
/// the release asked for; on failure nothing is left at `raw`.
fn inflate_checked(
    opts: &FetchOptions,
    release: &ResolvedRelease,
    src: &Path,
    real: &Path,
    raw: &Path,
) -> Result<InflateStats, Error> {
    let _guard = crate::cleanup::register(raw);
    let res = (|| {
        let input = crate::input::open_regular(src).map_err(io_err(real))?;
        let out = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(raw)
            .map_err(io_err(raw))?;
        let threads = match opts.decompress.threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        let stats = qcow2map::inflate(&input, real, &out, raw, threads).map_err(|e| {
            Error::Rejected(format!(
                "{e} (the signed file is not a usable qcow2; it was not kept, the next run fetches it again)"
            ))
        })?;
        out.sync_all().map_err(io_err(raw))?;
        if opts.check_contents {
            let shown = real.display().to_string();
            let version = release.version.to_string();
            identity::check(raw, &shown, &version, release.arch).map_err(|e| {
                Error::Rejected(format!(
                    "{e}; it was not kept, the next run fetches it again"
                ))
            })?;
        }
        Ok(stats)
    })();
    if res.is_err() {
        let _ = fs::remove_file(raw);
    }
    res
}

/// Fetches release `opts` with `vendor`'s published image instead of the generic one.
/// Never downloads the generic image.
pub fn fetch(opts: &FetchOptions, vendor: &str) -> Result<Availability, Error> {
    let name = image_name(vendor);
    if !VENDORS.contains(&vendor) {
        return Ok(Availability::NotPublished(format!(
            "Flatcar publishes no {name} for vendor {vendor}"
        )));
    }
    if opts.insecure_skip_verify {
        return Ok(Availability::NotPublished(
            "signature verification is off".into(),
        ));
    }
    let Head {
        ctx,
        release,
        dir,
        version_txt_path,
        vt_ok,
        version_txt,
    } = head(opts)?;
    let qcow2 = dir.join(&name);
    let raw = dir.join(raw_name(vendor));
    let fresh = |qcow2: &Path, raw: &Path| -> bool {
        match (
            cache::valid_marker(qcow2, false),
            cache::valid_marker(raw, false),
        ) {
            (Some(q), Some(r)) => {
                !q.sha256.is_empty() && r.verified_by == format!("source-sha256:{}", q.sha256)
            }
            _ => false,
        }
    };
    let mut inflated = None;
    // "not published" is remembered per release (published files never change), so a
    // re-run of an exact version stays offline
    let none = super::download::with_suffix(&qcow2, ".none");
    if !fresh(&qcow2, &raw) {
        if none.is_file() {
            return Ok(Availability::NotPublished(format!(
                "the release does not publish it (remembered in {})",
                none.display()
            )));
        }
        // a generic image already fetched and checked is cheaper than a download
        if cache::valid_marker(&dir.join(super::IMAGE), false).is_some() {
            return Ok(Availability::NotPublished(
                "the generic image is already in the cache".into(),
            ));
        }
        let _lock = cache::lock(&raw).map_err(io_err(&raw))?;
        if !fresh(&qcow2, &raw) {
            cache::remove_with_marker(&raw);
            let got = fetch_verified(&ctx, &release, &name, &mut |f, real| {
                inflated = Some(inflate_checked(opts, &release, f, real, &raw)?);
                Ok(())
            });
            let (path, ok) = match got {
                Ok(x) => x,
                Err(Error::Download(DownloadError::NotFound { url, .. })) => {
                    let why = match url.strip_suffix(".sig") {
                        Some(img) => format!("{img}: no signature (not published, or unsigned)"),
                        None => format!("{url}: not published"),
                    };
                    let _ = fs::write(&none, why.as_bytes());
                    return Ok(Availability::NotPublished(why));
                }
                // not reachable now: the generic image may be (or be cached)
                Err(Error::Download(e)) => return Ok(Availability::NotPublished(e.to_string())),
                Err(e) => return Err(e),
            };
            if !ok {
                cache::remove_with_marker(&raw);
                return Ok(Availability::NotPublished(format!(
                    "{}: not verified",
                    path.display()
                )));
            }
            if inflated.is_none() {
                // the qcow2 came from the cache: inflate and check it again
                inflated = Some(
                    inflate_checked(opts, &release, &path, &path, &raw)
                        .inspect_err(|_| forget(&path))?,
                );
            }
            let sha = cache::valid_marker(&path, false)
                .map(|m| m.sha256)
                .unwrap_or_default();
            cache::write_marker(&raw, &format!("source-sha256:{sha}"), "")
                .map_err(io_err(&cache::marker_path(&raw)))?;
        }
    }
    let release = FetchedRelease {
        release,
        version_txt,
        dir: dir.clone(),
        image: raw.clone(),
        image_bz2: dir.join(IMAGE_BZ2),
        version_txt_path,
        verified: vt_ok,
        decompressed: None,
    };
    Ok(Availability::Fetched(
        Box::new(release),
        Published {
            vendor: vendor.to_owned(),
            qcow2,
            raw,
            inflated,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_flatcar() {
        assert_eq!(
            image_name("qemu_uefi"),
            "flatcar_production_qemu_uefi_image.img"
        );
        assert!(!VENDORS.contains(&"exoscale"));
    }
}
