//! What flatbake reports: `inspect`, `vendors`, and the summary that ends every bake
//! (printed, and with `--json FILE` written with the sha256 of every output).

use crate::bake;
use crate::platform::registry::Registry;
use anyhow::Context;
use std::path::{Path, PathBuf};

pub fn inspect(image: &Path, json: bool) -> anyhow::Result<()> {
    let work = tempfile::tempdir().context("cannot create a scratch directory")?;
    let report = crate::inspect::inspect(image, work.path())?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out!("{}", crate::inspect::render(&report));
    }
    Ok(())
}

/// Summarise what a run produced: inspect each readable output image (printed), and
/// with `json`, write every output's sha256 and size plus the reports to that file.
pub fn summarize(outputs: &[PathBuf], json: Option<&Path>) -> anyhow::Result<()> {
    let work = tempfile::tempdir().context("cannot create a scratch directory")?;
    let mut files = Vec::new();
    let mut reports = Vec::new();
    for o in outputs {
        let name = o
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let readable = name.ends_with(".bin")
            || name.ends_with(".img")
            || name.ends_with(".qcow2") && !name.contains("_efi_");
        if readable {
            if let Ok(r) = crate::inspect::inspect(o, work.path()) {
                if r.flatcar {
                    out!("{}", crate::inspect::render(&r));
                    reports.push(r);
                }
            }
        }
        if json.is_some() {
            let (sha256, size) = bake::sha256_file(o)?;
            files.push(serde_json::json!({"path": o.display().to_string(), "sha256": sha256, "size": size}));
        }
    }
    if let Some(path) = json {
        let doc = serde_json::json!({"outputs": files, "images": reports});
        let tmp = path.with_extension("json.partial");
        std::fs::write(&tmp, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("{}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    }
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
    outln!(
        "dry run: nothing was written; {} would get these edits:",
        report.output.display()
    );
    out!("{text}");
    if !vendors.is_empty() {
        outln!("then the vendor images of: {}", vendors.join(", "));
    }
    if let Some(path) = json {
        let doc = serde_json::json!({"dry_run": true, "plan": data, "vendors": vendors});
        let tmp = path.with_extension("json.partial");
        std::fs::write(&tmp, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("{}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    }
    Ok(())
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
                v.disk_format.as_deref().unwrap_or("-"),
                v.oem_id.as_deref().unwrap_or("-"),
                v.description
            ),
        }
    }
    Ok(())
}

pub fn print_report(report: &bake::BakeReport) {
    for e in &report.extensions {
        outln!(
            "{}: {}:{} ({}, sha256 {})",
            e.name,
            e.target,
            e.path,
            bake::human(e.size),
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
