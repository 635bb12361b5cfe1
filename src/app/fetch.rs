//! `--fetch`, `--release` and `flatbake fetch`: turning release arguments into
//! [`FetchOptions`], fetching the release image and its other files, and bakery
//! extensions.

use crate::cli::ReleaseArgs;
use crate::platform::registry::Registry;
use crate::release::{
    self, channel::ReleaseUrls, verify::Keyring, FetchOptions, FetchedRelease, HeadSource,
};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Default cache directory: $XDG_CACHE_HOME/flatbake or ~/.cache/flatbake.
pub fn default_cache() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("flatbake");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => PathBuf::from(h).join(".cache/flatbake"),
        None => PathBuf::from(".flatbake-cache"),
    }
}

pub fn options(a: &ReleaseArgs) -> anyhow::Result<FetchOptions> {
    let spec_text = a.release.as_deref().unwrap_or("stable");
    let spec = spec_text.parse().with_context(|| {
        format!(
            "--release {spec_text}{}",
            crate::suggest::hint(spec_text, ["alpha", "beta", "stable", "lts", "current"])
        )
    })?;
    let arch = a.arch.unwrap_or(crate::arch::Arch::X86_64);
    let mut o = FetchOptions::new(
        spec,
        arch,
        a.image_cache.clone().unwrap_or_else(default_cache),
    );
    o.urls = ReleaseUrls {
        release_template: a.release_url.clone(),
        releases_json: a.releases_json_url.clone(),
        bakery: a.bakery_url.clone(),
    };
    if a.head_from_releases_json {
        o.head_source = HeadSource::ReleasesJson;
    }
    if let Some(k) = &a.signing_key {
        o.keyring = Some(Keyring::from_file(k)?);
    }
    if a.insecure_skip_signature_verification {
        eprintln!("flatbake: WARNING: --insecure-skip-signature-verification: release files and extensions are NOT verified");
        o.insecure_skip_verify = true;
    }
    Ok(o)
}

/// Fetch, verify and decompress the release (cached).
pub fn release(o: &FetchOptions) -> anyhow::Result<FetchedRelease> {
    let r = release::fetch_release(o)?;
    note!(
        "Flatcar {} ({}, {}) in {}",
        r.release.version,
        r.release.channel,
        r.release.arch,
        r.dir.display()
    );
    Ok(r)
}

/// Fetch what the named vendors need from the release (OEM sysexts, shipped firmware)
/// into its cache dir, each verified and checked against the release. An unknown vendor
/// is refused here, before anything is downloaded for it.
pub fn vendor_files(
    o: &FetchOptions,
    r: &FetchedRelease,
    vendors: &[String],
    vendors_dir: Option<&Path>,
) -> anyhow::Result<()> {
    if vendors.is_empty() {
        return Ok(());
    }
    let reg = Registry::load(vendors_dir)?;
    let mut names: Vec<String> = Vec::new();
    for v in vendors {
        let Some(v) = reg.get(v) else {
            anyhow::bail!("--vendor {v}: unknown vendor (see `flatbake vendors`)");
        };
        let version = r.release.version.to_string();
        for f in crate::platform::fetched_files(v, &version) {
            if !names.contains(&f) {
                names.push(f);
            }
        }
    }
    for n in &names {
        release::fetch_release_file(o, &r.release, n)?;
    }
    Ok(())
}

/// Fetch bakery extensions; returns `NAME:PATH` arguments and `NAME=CONF` configs.
pub fn extensions(o: &FetchOptions, args: &[String]) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut exts = Vec::new();
    let mut confs = Vec::new();
    for a in args {
        let (name, file) = a
            .split_once(':')
            .with_context(|| format!("'{a}': expected NAME:FILE"))?;
        let f = release::fetch_extension(o, name, file)?;
        exts.push(format!("{name}:{}", f.raw.display()));
        if let Some(c) = f.conf {
            confs.push(format!("{name}={}", c.display()));
        }
    }
    Ok((exts, confs))
}

/// `flatbake fetch`: download and verify only: the release, what `vendors` need from
/// it, and bakery extensions.
pub fn run(
    a: &ReleaseArgs,
    vendors: &[String],
    vendors_dir: Option<&Path>,
    exts: &[String],
) -> anyhow::Result<()> {
    let o = options(a)?;
    // what a bake of exactly these vendors starts from: a vendor image Flatcar
    // publishes as it is (the fast path), else the generic image
    let reg = Registry::load(vendors_dir)?;
    let canonical: Vec<String> = vendors
        .iter()
        .map(|v| crate::spec::canonical_vendor(v.trim(), &reg))
        .collect();
    // checked as a bake checks them, before anything is downloaded
    super::bake::precheck_names(
        &reg,
        &canonical,
        Some(o.arch),
        super::bake::exact_release(a.release.as_deref()),
    )?;
    let fast = match canonical.as_slice() {
        [v] if crate::release::published::VENDORS.contains(&v.as_str())
            && std::env::var("FLATBAKE_FAST_PATH").map_or(true, |x| x != "0") =>
        {
            super::fastpath::fetch_vendor(&o, v)?
        }
        _ => None,
    };
    let r = match fast {
        Some((r, p)) => {
            outln!("{}", p.qcow2.display());
            r
        }
        None => release(&o)?,
    };
    vendor_files(&o, &r, vendors, vendors_dir)?;
    outln!("{}", r.image.display());
    outln!("{}", r.version_txt_path.display());
    let (paths, confs) = extensions(&o, exts)?;
    for p in paths.iter().chain(confs.iter()) {
        outln!("{p}");
    }
    Ok(())
}
