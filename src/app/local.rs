//! `--image FILE.bin.bz2`: a compressed local image is decompressed (sparse, on all
//! cores) into the cache once, keyed by the sha256 of the compressed file, and the bake
//! reads the result (trusted through its cache marker, see [`crate::release::cache`]). Other compressions are refused with the command that undoes them.

use crate::release::{cache, decompress, DecompressOptions};
use anyhow::Context;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The raw image to bake for `image`: `image` itself unless it is compressed.
pub fn raw_image(image: &Path, cache: &Path) -> anyhow::Result<PathBuf> {
    let shown = || format!("{}", image.display());
    let mut magic = Vec::with_capacity(6);
    crate::input::open_regular(image)
        .and_then(|f| f.take(6).read_to_end(&mut magic))
        .with_context(shown)?;
    let magic = magic.as_slice();
    let other = [
        (&b"\x1f\x8b"[..], "gzip", "gunzip"),
        (b"\xfd7zXZ", "xz", "unxz"),
        (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"),
        (b"PK\x03\x04", "zip", "unzip"),
    ];
    if let Some((_, what, tool)) = other.iter().find(|(m, _, _)| magic.starts_with(m)) {
        anyhow::bail!(
            "{}: is {what}-compressed; decompress it first (`{tool}`), or pass the .bin.bz2 Flatcar publishes",
            image.display()
        );
    }
    if !magic.starts_with(b"BZh") {
        return Ok(image.to_owned());
    }
    let (sha, _) = crate::util::sha256_file(image).with_context(|| image.display().to_string())?;
    let stem = image
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".bz2").to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "image.bin".into());
    let dir = cache.join("local").join(&sha);
    let dest = dir.join(&stem);
    // trusted only while its marker matches it; rebuilt under the entry's lock, so runs
    // sharing the cache never see (or write over) a half-decompressed copy
    let by = format!("source-sha256:{sha}");
    let usable = || cache::valid_marker(&dest, false).is_some_and(|m| m.verified_by == by);
    if !usable() {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("{}: cannot create the cache directory", dir.display()))?;
        let _lock = cache::lock(&dest).with_context(|| format!("{}", dest.display()))?;
        if !usable() {
            cache::remove_with_marker(&dest);
            note!("decompressing {} into {}", image.display(), dest.display());
            decompress::decompress_file(image, &dest, &DecompressOptions::default())?;
            cache::write_marker(&dest, &by, "")
                .with_context(|| format!("{}", cache::marker_path(&dest).display()))?;
            return Ok(dest);
        }
    }
    note!(
        "{}: using its decompressed copy {}",
        image.display(),
        dest.display()
    );
    Ok(dest)
}
