//! `flatbake inspect`: what a Flatcar image holds, read rootless from a raw or qcow2
//! file — the GPT, each filesystem, the Flatcar version and architecture, installed
//! extensions (file, symlink, extension-release, sysupdate config), the OEM partition
//! (id, files, grub.cfg, Ignition config) — as text or as stable JSON for pipelines.
//!
//! The image is read through [`crate::facts`] (GPT, layout, architecture, first-boot
//! flag, USR-A's os-release, ROOT's ext4); extensions with the sysext readers (squashfs
//! with backhand, EROFS with ours); OEM's files with `btrfs restore` on an extracted
//! sparse copy, so the listing shows what a mount would.

use crate::disk::gpt::SECTOR;
use crate::facts::{Facts, FactsError, FsKind};
use crate::sysext::{image, release::ReleaseFile};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Gpt(#[from] crate::disk::gpt::GptError),
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
}

/// The whole report; field names are a stable interface (`--json`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub image: String,
    pub format: String,
    pub virtual_size: u64,
    pub disk_guid: String,
    /// Problem with the backup GPT (the primary is sound), if any.
    pub gpt_backup_problem: Option<String>,
    pub partitions: Vec<PartitionInfo>,
    pub flatcar: bool,
    pub flatcar_version: Option<String>,
    pub arch: Option<String>,
    pub first_boot: Option<bool>,
    pub extensions: Vec<ExtensionInfo>,
    pub sysupdate_timer: bool,
    pub oem: Option<OemInfo>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PartitionInfo {
    pub number: u32,
    pub name: String,
    pub type_guid: String,
    pub uuid: String,
    pub start_lba: u64,
    pub sectors: u64,
    pub size: u64,
    pub filesystem: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExtensionInfo {
    pub name: String,
    /// `/etc/extensions/NAME.raw`: a symlink target, or the path itself for a file.
    pub link: String,
    pub target: Option<String>,
    /// Which filesystem holds the image (ROOT or OEM), if found.
    pub partition: Option<String>,
    pub size: Option<u64>,
    pub format: Option<String>,
    pub extension_release: BTreeMap<String, String>,
    pub sysupdate_conf: Option<String>,
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct OemInfo {
    pub id: Option<String>,
    pub files: Vec<String>,
    pub grub_cfg: Option<String>,
    pub ignition: bool,
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let rel = format!(
            "/{}",
            p.strip_prefix(root)
                .map(|r| r.display().to_string())
                .unwrap_or_default()
        );
        match e.file_type() {
            Ok(t) if t.is_dir() => {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            }
            _ => out.push(rel),
        }
    }
}

/// Inspect the image at `path`. `work` is scratch space for extracted filesystems.
pub fn inspect(path: &Path, work: &Path) -> Result<Report, InspectError> {
    let facts = Facts::read(path).map_err(|e| match e {
        FactsError::Io { path, source } => InspectError::Io { path, source },
        FactsError::Gpt(e) => InspectError::Gpt(e),
    })?;
    let partitions: Vec<PartitionInfo> = facts
        .gpt
        .partitions
        .iter()
        .map(|p| PartitionInfo {
            number: p.number,
            name: p.name.clone(),
            type_guid: p.type_guid.to_string(),
            uuid: p.unique_guid.to_string(),
            start_lba: p.first_lba,
            sectors: p.size() / SECTOR,
            size: p.size(),
            filesystem: facts.fs_kind(p).map(|k| k.name().to_owned()),
        })
        .collect();
    let mut report = Report {
        image: path.display().to_string(),
        format: facts.disk.format().to_owned(),
        virtual_size: facts.disk.len(),
        disk_guid: facts.gpt.disk_guid.to_string(),
        gpt_backup_problem: facts.gpt.backup_problem.clone(),
        partitions,
        flatcar: false,
        flatcar_version: None,
        arch: facts.arch.map(|a| a.to_string()),
        first_boot: facts.first_boot,
        extensions: Vec::new(),
        sysupdate_timer: false,
        oem: None,
    };
    let Ok(layout) = &facts.layout else {
        return Ok(report);
    };
    report.flatcar = true;

    // Flatcar version: USR-A's os-release, else version.txt beside the image
    report.flatcar_version = facts
        .usr_os_release(crate::input::TEXT_CAP, Some(work))
        .ok()
        .and_then(|b| ReleaseFile::parse_bytes(&b).ok())
        .and_then(|r| r.get("VERSION_ID").map(str::to_owned));
    if report.flatcar_version.is_none() {
        if let Some(dir) = path.parent() {
            report.flatcar_version =
                crate::release::VersionTxt::flatcar_version_in(&dir.join("version.txt")).ok();
        }
    }

    // OEM
    let oem_tree = if facts.fs_kind(&layout.oem) == Some(FsKind::Btrfs) {
        facts
            .btrfs_restore(
                &layout.oem,
                work,
                None,
                true,
                "reading a btrfs filesystem (btrfs restore)",
            )
            .ok()
    } else {
        None
    };
    if let Some(tree) = &oem_tree {
        let mut files = Vec::new();
        walk(tree, tree, &mut files);
        let id = oem_file(tree, "oem-release")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| ReleaseFile::parse(&t).ok())
            .and_then(|r| r.get("ID").map(str::to_owned));
        report.oem = Some(OemInfo {
            id,
            ignition: oem_file(tree, "config.ign").is_some(),
            grub_cfg: oem_file(tree, "grub.cfg").and_then(|p| std::fs::read_to_string(p).ok()),
            files,
        });
    }

    // ROOT: extensions
    let root = ext4_view::Ext4::load(Box::new(facts.window(&layout.root))).map_err(|e| {
        InspectError::Invalid {
            path: path.to_owned(),
            what: format!("ROOT: {e}"),
        }
    })?;
    report.sysupdate_timer = root
        .symlink_metadata("/etc/systemd/system/timers.target.wants/systemd-sysupdate.timer")
        .is_ok();
    let mut names: Vec<String> = match root.read_dir("/etc/extensions") {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().as_str().ok().map(str::to_owned))
            .filter(|n| n.ends_with(".raw"))
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    for file in names {
        let name = file.trim_end_matches(".raw").to_owned();
        let link = format!("/etc/extensions/{file}");
        let target = root
            .symlink_metadata(link.as_str())
            .ok()
            .filter(|m| m.is_symlink())
            .and_then(|_| root.read_link(link.as_str()).ok())
            .and_then(|t| t.to_str().ok().map(str::to_owned));
        let conf = format!("/etc/sysupdate.{name}.d/{name}.conf");
        let mut info = ExtensionInfo {
            name: name.clone(),
            link: link.clone(),
            target: target.clone(),
            partition: None,
            size: None,
            format: None,
            extension_release: BTreeMap::new(),
            sysupdate_conf: root.exists(conf.as_str()).unwrap_or(false).then_some(conf),
            problems: Vec::new(),
        };
        // Stage the image as a file for the sysext readers.
        let staged = work.join(format!("ext-{name}.raw"));
        let located: Result<(), String> = match target.as_deref() {
            Some("/dev/null") => Err("masked (symlink to /dev/null)".into()),
            Some(t) if t.starts_with("/oem/") => match &oem_tree {
                Some(tree) => {
                    info.partition = Some("OEM".into());
                    match oem_file(tree, t.trim_start_matches("/oem/")) {
                        Some(p) => std::fs::copy(&p, &staged)
                            .map(|_| ())
                            .map_err(|e| format!("{t}: {e}")),
                        None => Err(format!("{t}: not a regular file on OEM")),
                    }
                }
                None => Err(format!("{t}: OEM is not readable")),
            },
            Some(t) => copy_out(&root, t, &staged).map(|_| info.partition = Some("ROOT".into())),
            None => copy_out(&root, &link, &staged).map(|_| info.partition = Some("ROOT".into())),
        };
        match located {
            Err(p) => info.problems.push(p),
            Ok(()) => match image::open(&staged, &name) {
                Err(e) => info
                    .problems
                    .push(e.to_string().replace(&staged.display().to_string(), &file)),
                Ok(img) => {
                    info.size = Some(img.size);
                    info.format = Some(img.format.to_string());
                    match img.release {
                        Some(r) => info.extension_release = r.fields.into_iter().collect(),
                        None => info
                            .problems
                            .push(format!("no extension-release.{name} inside")),
                    }
                }
            },
        }
        let _ = std::fs::remove_file(&staged);
        report.extensions.push(info);
    }
    Ok(report)
}

/// `rel` inside the unpacked OEM `tree`, when it is a regular file there: no `..`, no
/// symlink (restored symlinks point into the host's filesystem, not the image's).
fn oem_file(tree: &Path, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel);
    if !rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    let mut p = tree.to_path_buf();
    for c in rel.components() {
        p.push(c);
        let m = std::fs::symlink_metadata(&p).ok()?;
        if m.file_type().is_symlink() {
            return None;
        }
    }
    std::fs::symlink_metadata(&p)
        .ok()
        .filter(|m| m.is_file())
        .map(|_| p)
}

fn copy_out(fs: &ext4_view::Ext4, path: &str, dst: &Path) -> Result<(), String> {
    let data = fs.read(path).map_err(|e| format!("{path}: {e}"))?;
    let mut f = std::fs::File::create(dst).map_err(|e| e.to_string())?;
    f.write_all(&data).map_err(|e| e.to_string())
}

/// The report as text for people.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = std::fmt::Write::write_fmt(
        &mut s,
        format_args!(
            "{} ({}, {})\n",
            r.image,
            r.format,
            crate::util::human(r.virtual_size)
        ),
    );
    s.push_str(&format!("disk GUID {}\n", r.disk_guid));
    if let Some(p) = &r.gpt_backup_problem {
        s.push_str(&format!("warning: {p}\n"));
    }
    s.push_str("  #  name             start LBA     sectors       size  fs      UUID\n");
    for p in &r.partitions {
        s.push_str(&format!(
            "{:>3}  {:<15} {:>10} {:>11} {:>10}  {:<6}  {}\n",
            p.number,
            p.name,
            p.start_lba,
            p.sectors,
            crate::util::human(p.size),
            p.filesystem.as_deref().unwrap_or("-"),
            p.uuid
        ));
    }
    if !r.flatcar {
        s.push_str("not a Flatcar disk layout\n");
        return s;
    }
    s.push_str(&format!(
        "Flatcar {} ({}), first-boot flag: {}\n",
        r.flatcar_version.as_deref().unwrap_or("version unknown"),
        r.arch.as_deref().unwrap_or("arch unknown"),
        match r.first_boot {
            Some(true) => "set",
            Some(false) => "absent",
            None => "unknown",
        }
    ));
    s.push_str(&format!(
        "extensions ({}), sysupdate timer {}:\n",
        r.extensions.len(),
        if r.sysupdate_timer {
            "enabled"
        } else {
            "not enabled"
        }
    ));
    for e in &r.extensions {
        s.push_str(&format!(
            "  {}: {} -> {} [{} {}{}]\n",
            e.name,
            e.link,
            e.target.as_deref().unwrap_or("(file)"),
            e.partition.as_deref().unwrap_or("?"),
            e.format.as_deref().unwrap_or("?"),
            e.size
                .map(|n| format!(", {}", crate::util::human(n)))
                .unwrap_or_default()
        ));
        if !e.extension_release.is_empty() {
            let kv: Vec<String> = e
                .extension_release
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            s.push_str(&format!("    {}\n", kv.join(" ")));
        }
        if let Some(c) = &e.sysupdate_conf {
            s.push_str(&format!("    sysupdate: {c}\n"));
        }
        for p in &e.problems {
            s.push_str(&format!("    problem: {p}\n"));
        }
    }
    match &r.oem {
        None => s.push_str("OEM: not readable\n"),
        Some(o) => {
            s.push_str(&format!(
                "OEM: id {}, Ignition config {}\n",
                o.id.as_deref().unwrap_or("(none)"),
                if o.ignition {
                    "present (/oem/config.ign)"
                } else {
                    "absent"
                }
            ));
            for f in &o.files {
                s.push_str(&format!("  {f}\n"));
            }
        }
    }
    s
}
