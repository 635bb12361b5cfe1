//! Compiles the data files under `vendors/` into the binary, so adding a vendor is
//! adding a file.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("vendors");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("vendors/ directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml") && n != "layouts.toml" && n != "oem-release.toml")
        .collect();
    names.sort();
    let mut out = String::from("/// `(name, TOML text)` of every file in vendors/.\npub static VENDOR_FILES: &[(&str, &str)] = &[\n");
    for n in &names {
        let path = dir.join(n);
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(
            out,
            "    ({:?}, include_str!({:?})),",
            n.trim_end_matches(".toml"),
            path.display().to_string()
        );
    }
    out.push_str("];\n");
    let layouts = dir.join("layouts.toml");
    println!("cargo:rerun-if-changed={}", layouts.display());
    let _ = writeln!(
        out,
        "/// vendors/layouts.toml\npub static LAYOUTS: &str = include_str!({:?});",
        layouts.display().to_string()
    );
    let oem_release = dir.join("oem-release.toml");
    println!("cargo:rerun-if-changed={}", oem_release.display());
    let _ = writeln!(
        out,
        "/// vendors/oem-release.toml\npub static OEM_RELEASE: &str = include_str!({:?});",
        oem_release.display().to_string()
    );
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("vendor_files.rs");
    std::fs::write(dest, out).expect("write vendor_files.rs");
}
