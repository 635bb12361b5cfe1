//! Vendor images as Flatcar publishes them (the fast path's source): the generic image
//! with a vendor's layout and OEM content, as a compressed qcow2 made the way Flatcar's
//! `_write_qcow2_disk` makes it (`qemu-img convert -c -O qcow2 -o compat=0.10`).

use super::{sh, BIN};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `flatcar_production_<vendor>_image.img` of the generic image `image` (no sysext
/// baked), with the vendor's layout and OEM content from `release_dir`, written into
/// `dir` by `qemu-img convert -c` (not by flatbake's writer).
pub fn vendor_qcow2(image: &Path, release_dir: &Path, vendor: &str, dir: &Path) -> PathBuf {
    let work = dir.join(format!("make-{vendor}"));
    std::fs::create_dir_all(&work).expect("mkdir");
    sh(Command::new(BIN)
        .arg("--image")
        .arg(image)
        .arg("--release-dir")
        .arg(release_dir)
        .args(["--vendor", vendor])
        .arg("--output-dir")
        .arg(&work)
        .env("FLATBAKE_FAST_PATH", "0"));
    let name = format!("flatcar_production_{vendor}_image.img");
    let raw = work.join("disk.raw");
    guest_raw(&work.join(&name), &raw);
    let out = dir.join(&name);
    sh(Command::new("qemu-img")
        .args([
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "-c",
            "-o",
            "compat=0.10",
        ])
        .arg(&raw)
        .arg(&out));
    std::fs::remove_dir_all(&work).expect("rm");
    out
}

/// The guest disk of the qcow2 `qcow2`, as a raw file `raw` (qemu-img's reading).
pub fn guest_raw(qcow2: &Path, raw: &Path) {
    sh(Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(qcow2)
        .arg(raw));
}

/// A qcow2 (compressed, as Flatcar publishes) of the raw disk `raw`.
pub fn qcow2_of(raw: &Path, out: &Path) {
    sh(Command::new("qemu-img")
        .args([
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "-c",
            "-o",
            "compat=0.10",
        ])
        .arg(raw)
        .arg(out));
}
