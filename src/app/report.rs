//! What flatbake reports: `inspect`, `vendors`, and the summary that ends every bake
//! (printed, and with `--json FILE` written with the sha256 of every output).

use crate::bake;
use crate::platform::registry::Registry;
use anyhow::Context;
use std::path::{Path, PathBuf};

pub fn inspect(image: &Path, json: bool) -> anyhow::Result<()> {
    let work = crate::cleanup::temp_dir(&std::env::temp_dir(), "scratch-")
        .context("cannot create a scratch directory")?;
    let report = crate::inspect::inspect(image, work.path())?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out!("{}", crate::inspect::render(&report));
    }
    Ok(())
}

/// Version of every JSON document flatbake writes (docs/json-schema.md).
pub const SCHEMA_VERSION: u32 = 1;

/// Summarise what a run produced: inspect each readable output image (printed), and
/// with `json`, write every output's sha256 and size plus the reports to that file
/// (`-`: standard output).
pub fn summarize(outputs: &[PathBuf], json: Option<&Path>) -> anyhow::Result<()> {
    if json.is_some_and(is_stdout) {
        crate::out::reserve_for_json();
    }
    let mut doc = describe(outputs, json.is_some())?;
    if let Some(path) = json {
        doc["schema_version"] = SCHEMA_VERSION.into();
        doc["command"] = "bake".into();
        if let Some(s) = super::fastpath::source() {
            doc["source"] = s.into();
        }
        write_json(path, &doc)?;
    }
    Ok(())
}

/// `--json -` (or a bare `--json`) means standard output.
pub fn is_stdout(p: &Path) -> bool {
    p.as_os_str() == "-"
}

/// Write `doc` to `path` (atomically: a temporary name, then renamed), or to
/// standard output for `-`.
pub fn write_json(path: &Path, doc: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(doc)? + "\n";
    if is_stdout(path) {
        crate::out::print_machine(format_args!("{text}"));
        return Ok(());
    }
    let dir = crate::input::parent_dir(path);
    let (mut tmp, _guard) = crate::cleanup::temp_file(&dir, "", ".json.partial")
        .with_context(|| format!("{}", dir.display()))?
        .split();
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("{}", tmp.path().display()))?;
    }
    std::io::Write::write_all(&mut tmp, text.as_bytes())
        .with_context(|| format!("{}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("{}", path.display()))?;
    Ok(())
}

/// A dry run's result: the plan, printed (and with `json`, written as JSON); `vendors`
/// are the vendor images that would be made from the planned base.
pub fn print_plan(
    report: &bake::BakeReport,
    (text, data): &(String, serde_json::Value),
    vendors: &[String],
    json: Option<&Path>,
) -> anyhow::Result<()> {
    if json.is_some_and(is_stdout) {
        crate::out::reserve_for_json();
    }
    if !crate::out::quiet() {
        outln!(
            "dry run: nothing was written; {} would get these edits:",
            report.output.display()
        );
        out!("{text}");
        if !vendors.is_empty() {
            outln!("then the vendor images of: {}", vendors.join(", "));
        }
    }
    if let Some(path) = json {
        let doc = serde_json::json!({
            "schema_version": SCHEMA_VERSION,
            "command": "bake",
            "dry_run": true,
            "output": absolute(&report.output).display().to_string(),
            "plan": data,
            "vendors": vendors,
        });
        write_json(path, &doc)?;
    }
    Ok(())
}

/// An absolute path for machine-read output (relative to the working directory).
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// Inspect and print each readable output image; returns `{"outputs": [...],
/// "images": [...]}` with each output's absolute path (and with `hashes`, its sha256
/// and size).
pub fn describe(outputs: &[PathBuf], hashes: bool) -> anyhow::Result<serde_json::Value> {
    let work = crate::cleanup::temp_dir(&std::env::temp_dir(), "scratch-")
        .context("cannot create a scratch directory")?;
    let mut files = Vec::new();
    let mut reports = Vec::new();
    for o in outputs {
        let o = &absolute(o);
        let name = o
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let readable = name.ends_with(".bin")
            || name.ends_with(".img")
            || name.ends_with(".qcow2") && !name.contains("_efi_");
        // a symlink (qemu's and qemu_uefi_secure's image) is an image already reported
        if readable && !o.is_symlink() {
            if let Ok(r) = crate::inspect::inspect(o, work.path()) {
                if r.flatcar {
                    if !crate::out::quiet() {
                        out!("{}", crate::inspect::render(&r));
                    }
                    reports.push(r);
                }
            }
        }
        let path = absolute(o).display().to_string();
        if hashes {
            let (sha256, size) =
                crate::util::sha256_file(o).with_context(|| o.display().to_string())?;
            files.push(serde_json::json!({"path": path, "sha256": sha256, "size": size}));
        } else {
            files.push(serde_json::json!({ "path": path }));
        }
    }
    Ok(serde_json::json!({"outputs": files, "images": reports}))
}

pub fn list_vendors(dir: Option<&Path>) -> anyhow::Result<()> {
    let reg = Registry::load(dir)?;
    outln!(
        "{:<16} {:<8} {:<12} {:<8} description",
        "vendor",
        "layout",
        "format",
        "oem"
    );
    for v in reg.vendors.values() {
        match &v.unsupported {
            Some(why) => outln!(
                "{:<16} {:<8} {:<12} {:<8} {} (not supported: {why})",
                v.name,
                "-",
                "-",
                "-",
                v.description
            ),
            None => outln!(
                "{:<16} {:<8} {:<12} {:<8} {}",
                v.name,
                v.layout.as_deref().unwrap_or("-"),
                v.disk_format.map(|f| f.as_str()).unwrap_or("-"),
                v.oem_id.as_deref().unwrap_or("-"),
                v.description
            ),
        }
    }
    Ok(())
}

pub fn print_report(report: &bake::BakeReport) {
    if crate::out::quiet() {
        return;
    }
    for e in &report.extensions {
        outln!(
            "{}: {}:{} ({}, sha256 {})",
            e.name,
            e.target,
            e.path,
            crate::util::human(e.size),
            e.sha256
        );
        outln!("  {} -> {}", e.symlink, e.link_target);
        if let Some(c) = &e.conf {
            outln!("  {c}");
        }
    }
    if let Some(v) = &report.verified {
        outln!(
            "verified against the plan (read back from the output): {} files, {} symlinks, {} directories, {} removals, {} appends",
            v.files,
            v.links,
            v.dirs,
            v.removed,
            v.appended
        );
    }
}
