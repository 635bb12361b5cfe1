//! Compiles the data files under `vendors/` and `recipes/` into the binary, so adding a
//! vendor or a recipe is adding a file.

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
    templates(&dir.join("templates"), &mut out);
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("vendor_files.rs");
    std::fs::write(dest, out).expect("write vendor_files.rs");
    recipes();
}

/// Every file under `vendors/templates/` as `(path relative to it, text)`, so a vendor
/// file can name the templates of its release (`ovf_template`, `box_template`).
fn templates(dir: &Path, out: &mut String) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut stack = vec![dir.to_path_buf()];
    let mut found = Vec::new();
    while let Some(d) = stack.pop() {
        println!("cargo:rerun-if-changed={}", d.display());
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                found.push(p);
            }
        }
    }
    found.sort();
    out.push_str("/// `(path under vendors/templates/, text)` of every template.\npub static TEMPLATE_FILES: &[(&str, &str)] = &[\n");
    for p in found {
        println!("cargo:rerun-if-changed={}", p.display());
        let rel = p
            .strip_prefix(dir)
            .expect("under templates/")
            .display()
            .to_string();
        let _ = writeln!(
            out,
            "    ({rel:?}, include_str!({:?})),",
            p.display().to_string()
        );
    }
    out.push_str("];\n");
}

/// `recipes/NAME.toml` and each recipe's static tree `recipes/NAME/files/**`.
fn recipes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("recipes/ directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".toml").map(str::to_owned))
        .collect();
    names.sort();
    let mut out = String::from(
        "/// `(name, TOML text)` of every recipes/NAME.toml.\npub static RECIPE_FILES: &[(&str, &str)] = &[\n",
    );
    let mut trees = String::from(
        "/// `(recipe, path, content, mode)` of every file under recipes/NAME/files/.\npub static RECIPE_TREES: &[(&str, &str, &[u8], u32)] = &[\n",
    );
    for n in &names {
        let path = dir.join(format!("{n}.toml"));
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(
            out,
            "    ({n:?}, include_str!({:?})),",
            path.display().to_string()
        );
        let files = dir.join(n).join("files");
        let mut stack = vec![files.clone()];
        let mut found = Vec::new();
        while let Some(d) = stack.pop() {
            println!("cargo:rerun-if-changed={}", d.display());
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.filter_map(|e| e.ok()) {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.is_file() {
                    found.push(p);
                }
            }
        }
        found.sort();
        for p in found {
            use std::os::unix::fs::PermissionsExt;
            println!("cargo:rerun-if-changed={}", p.display());
            let rel = p
                .strip_prefix(&files)
                .expect("under files/")
                .display()
                .to_string();
            let exec = std::fs::metadata(&p)
                .map(|m| m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false);
            let _ = writeln!(
                trees,
                "    ({n:?}, {rel:?}, include_bytes!({:?}), {}),",
                p.display().to_string(),
                if exec { "0o755" } else { "0o644" }
            );
        }
    }
    out.push_str("];\n");
    trees.push_str("];\n");
    out.push_str(&trees);
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("recipe_files.rs");
    std::fs::write(dest, out).expect("write recipe_files.rs");
}
