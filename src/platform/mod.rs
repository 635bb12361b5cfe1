//! Vendor images: from one baked base image, each vendor's layout growth, OEM content,
//! disk format, configuration files and bundle, as its `vendors/*.toml` says. Several
//! vendors in one run share the base (decompressed and baked once), then fan out.
//! Everything is checked first (vendor names, OEM sysexts of the same release, release
//! files), and all outputs are renamed into place only when every vendor succeeded.

pub mod bundle;
pub mod conf;
pub mod oem;
pub mod registry;

use crate::arch::Arch;
use crate::disk::gpt::Gpt;
use crate::disk::layout::FlatcarLayout;
use crate::disk::{grow, sparse};
use crate::format::{self, DiskFormat, WriteOptions};
use crate::sysext::release::ReleaseFile;
use registry::{Registry, Vendor};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    #[error("{}", crate::bake::problem_list(.0))]
    Preflight(Vec<String>),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{vendor}: {source}")]
    Grow {
        vendor: String,
        source: grow::GrowError,
    },
    #[error("{vendor}: {source}")]
    Fs {
        vendor: String,
        source: crate::fs::FsError,
    },
    #[error("{vendor}: {source}")]
    Format {
        vendor: String,
        source: format::FormatError,
    },
    #[error(transparent)]
    Gpt(#[from] crate::disk::gpt::GptError),
    #[error(transparent)]
    Layout(#[from] crate::disk::layout::LayoutError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VendorError + '_ {
    move |source| VendorError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What the user asked for.
pub struct VendorInput<'a> {
    pub names: &'a [String],
    pub registry: &'a Registry,
    /// Directory holding the release's other files (`version.txt`, `oem-<id>.raw`,
    /// efi firmware qcow2s).
    pub release_dir: &'a Path,
    /// FLATCAR_VERSION; read from `version.txt` in `release_dir` when not given.
    pub version: Option<String>,
    pub arch: Option<Arch>,
    /// Extra kernel arguments for every vendor's grub.cfg.
    pub kernel_args: &'a [String],
    pub backend: crate::fs::Backend,
}

/// A checked plan: everything needed to emit the vendors.
#[derive(Clone, Debug)]
pub struct VendorPlan {
    pub vendors: Vec<Vendor>,
    pub version: String,
    pub arch: Arch,
    /// OEM id -> (sysext file, its extension-release)
    pub oem: BTreeMap<String, (PathBuf, ReleaseFile)>,
    pub release_dir: PathBuf,
    /// layout name -> ROOT size in sectors (None: as released)
    pub layouts: BTreeMap<String, Option<u64>>,
    pub kernel_args: Vec<String>,
    pub backend: crate::fs::Backend,
}

/// Read `FLATCAR_VERSION` from a `version.txt`.
pub fn version_from_file(path: &Path) -> Result<String, String> {
    let text = crate::input::read_text(path, crate::input::TEXT_CAP)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let rel = ReleaseFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    rel.get("FLATCAR_VERSION")
        .map(str::to_owned)
        .ok_or_else(|| format!("{}: no FLATCAR_VERSION=", path.display()))
}

/// Check the vendor request before anything is written.
pub fn plan(input: &VendorInput<'_>) -> Result<VendorPlan, VendorError> {
    let mut ps = oem::kernel_arg_problems(input.kernel_args);
    let mut vendors = Vec::new();
    for n in input.names {
        match input.registry.get(n) {
            None => ps.push(format!(
                "unknown vendor '{n}' (known: {})",
                input
                    .registry
                    .vendors
                    .values()
                    .filter(|v| v.unsupported.is_none())
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some(v) => match &v.unsupported {
                Some(why) => ps.push(format!("vendor '{n}' cannot be made by flatbake: {why}")),
                None if vendors.iter().any(|x: &Vendor| x.name == v.name) => {
                    ps.push(format!("vendor '{n}' is given twice"))
                }
                None if disk_format(v).is_none() => ps.push(format!(
                    "vendor '{n}': flatbake cannot write disk format {} yet",
                    v.disk_format.as_deref().unwrap_or("?")
                )),
                None => vendors.push(v.clone()),
            },
        }
    }
    let version = match &input.version {
        Some(v) => Some(v.clone()),
        None => match version_from_file(&input.release_dir.join("version.txt")) {
            Ok(v) => Some(v),
            Err(e) => {
                if vendors.iter().any(|v| v.oem_id.is_some()) {
                    ps.push(format!("cannot tell the Flatcar version for the OEM sysext ({e}); pass --flatcar-version or put version.txt beside the image"));
                }
                None
            }
        },
    };
    let arch = input.arch.unwrap_or(Arch::X86_64);
    let mut oem = BTreeMap::new();
    for v in &vendors {
        for f in &v.release_files {
            let p = input.release_dir.join(f);
            if !p.is_file() {
                ps.push(format!(
                    "{}: missing (vendor {} ships this release file)",
                    p.display(),
                    v.name
                ));
            }
        }
        let (Some(id), Some(ver)) = (&v.oem_id, &version) else {
            continue;
        };
        if oem.contains_key(id) {
            continue;
        }
        let p = input.release_dir.join(format!("oem-{id}.raw"));
        if !p.is_file() {
            ps.push(format!(
                "{}: missing: vendor {} needs the OEM sysext oem-{id}.raw of Flatcar {ver}",
                p.display(),
                v.name
            ));
            continue;
        }
        match oem::check_sysext(id, &p, ver, Some(arch.systemd_name())) {
            Ok(rel) => {
                oem.insert(id.clone(), (p, rel));
            }
            Err(e) => ps.push(e),
        }
    }
    if !ps.is_empty() {
        return Err(VendorError::Preflight(ps));
    }
    let layouts = input
        .registry
        .layouts
        .iter()
        .map(|(k, l)| (k.clone(), l.root_sectors))
        .collect();
    Ok(VendorPlan {
        vendors,
        version: version.unwrap_or_default(),
        arch,
        oem,
        release_dir: input.release_dir.to_owned(),
        layouts,
        kernel_args: input.kernel_args.to_vec(),
        backend: input.backend,
    })
}

/// The disk format a vendor's `disk_format` (Flatcar's `DISK_FORMAT` names) means.
pub fn disk_format(v: &Vendor) -> Option<DiskFormat> {
    use format::{VmdkAdapter, VmdkSubformat};
    let vmdk = |subformat, adapter| DiskFormat::Vmdk { subformat, adapter };
    Some(match v.disk_format.as_deref().unwrap_or("raw") {
        "raw" => DiskFormat::Raw,
        // Flatcar always compresses its qcow2 images (qemu-img convert -c)
        "qcow2" => DiskFormat::Qcow2 { compressed: true },
        "vhd" => DiskFormat::VhdDynamic,
        "vhd_fixed" => DiskFormat::VhdFixed,
        "vhdx" => DiskFormat::Vhdx,
        "vmdk_ide" => vmdk(VmdkSubformat::MonolithicSparse, VmdkAdapter::Ide),
        "vmdk_scsi" => vmdk(VmdkSubformat::MonolithicSparse, VmdkAdapter::LsiLogic),
        "vmdk_stream" => vmdk(VmdkSubformat::StreamOptimized, VmdkAdapter::LsiLogic),
        _ => return None,
    })
}

/// One produced file: where it is staged and where it goes.
#[derive(Clone, Debug)]
pub struct Output {
    pub vendor: String,
    pub staged: PathBuf,
    pub path: PathBuf,
}

/// Emit every planned vendor from the baked `base` image into `out_dir`. Outputs are
/// staged as hidden temporary files in `out_dir` and renamed into place at the end.
pub fn emit(
    plan: &VendorPlan,
    base: &Path,
    out_dir: &Path,
    work: &Path,
    threads: usize,
) -> Result<Vec<PathBuf>, VendorError> {
    let mut outputs: Vec<Output> = Vec::new();
    let mut guards = Vec::new();
    let result = (|| -> Result<(), VendorError> {
        for v in &plan.vendors {
            eprintln!("flatbake: vendor {}", v.name);
            for name in staged_names(v) {
                guards.push(crate::cleanup::register(&stage(out_dir, v, &name).staged));
            }
            outputs.extend(emit_one(plan, v, base, out_dir, work, threads)?);
            crate::cleanup::pause_point(&format!("vendor-{}", v.name));
        }
        Ok(())
    })();
    if let Err(e) = result {
        for o in &outputs {
            let _ = std::fs::remove_file(&o.staged);
        }
        return Err(e);
    }
    let mut done = Vec::new();
    for o in &outputs {
        std::fs::rename(&o.staged, &o.path).map_err(io(&o.path))?;
        done.push(o.path.clone());
    }
    Ok(done)
}

/// Files in `out_dir` that emitting `plan` could replace (every name a planned vendor
/// may write), so that an existing output is refused before any work without --force.
pub fn existing_outputs(plan: &VendorPlan, out_dir: &Path) -> Vec<PathBuf> {
    plan.vendors
        .iter()
        .flat_map(staged_names)
        .map(|n| out_dir.join(n))
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect()
}

fn stage(out_dir: &Path, v: &Vendor, name: &str) -> Output {
    let staged = out_dir.join(format!("{}{name}.partial", crate::cleanup::prefix()));
    Output {
        vendor: v.name.clone(),
        staged,
        path: out_dir.join(name),
    }
}

fn emit_one(
    plan: &VendorPlan,
    v: &Vendor,
    base: &Path,
    out_dir: &Path,
    work: &Path,
    threads: usize,
) -> Result<Vec<Output>, VendorError> {
    let vwork = work.join(&v.name);
    std::fs::create_dir_all(&vwork).map_err(io(&vwork))?;
    let img = vwork.join("disk.bin");
    {
        let src = File::open(base).map_err(io(base))?;
        let dst = File::create(&img).map_err(io(&img))?;
        sparse::clone_file(&src, &dst).map_err(io(&img))?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .map_err(io(&img))?;
    let len = file.metadata().map_err(io(&img))?.len();
    let layout = FlatcarLayout::find(Gpt::read_from(&file, len, &img)?, &img)?;
    let grown = match v
        .layout
        .as_ref()
        .and_then(|l| plan.layouts.get(l).copied().flatten())
    {
        Some(sectors) => {
            grow::grow_root(&img, &file, &layout, sectors, &vwork).map_err(|source| {
                VendorError::Grow {
                    vendor: v.name.clone(),
                    source,
                }
            })?
        }
        None => len,
    };
    // A fixed virtual size (exoscale): grow the raw disk and move the backup GPT to its
    // end, so the disk is a valid GPT disk at that size (Flatcar's `qemu-img resize`
    // leaves the backup GPT in the middle).
    let grown = match v.virtual_size {
        Some(vs) if vs > grown => {
            if vs % crate::disk::gpt::SECTOR != 0 {
                return Err(VendorError::Preflight(vec![format!(
                    "vendor {}: virtual_size {vs} is not a multiple of 512",
                    v.name
                )]));
            }
            let layout = FlatcarLayout::find(Gpt::read_from(&file, grown, &img)?, &img)?;
            file.set_len(vs).map_err(io(&img))?;
            grow::write_gpt(&img, &file, &layout.gpt, vs / crate::disk::gpt::SECTOR).map_err(
                |source| VendorError::Grow {
                    vendor: v.name.clone(),
                    source,
                },
            )?;
            vs
        }
        _ => grown,
    };
    if let Some(id) = &v.oem_id {
        let (sysext, rel) = plan
            .oem
            .get(id)
            .ok_or_else(|| VendorError::Preflight(vec![format!("no OEM sysext for {id}")]))?;
        let edits = oem::edits(v, &plan.version, sysext, rel, &plan.kernel_args, &vwork)
            .map_err(io(&vwork))?;
        let layout = FlatcarLayout::find(Gpt::read_from(&file, grown, &img)?, &img)?;
        let oem_work = vwork.join("oem");
        std::fs::create_dir_all(&oem_work).map_err(io(&oem_work))?;
        crate::fs::apply_oem(plan.backend, &img, &file, &layout.oem, &edits, &oem_work).map_err(
            |source| VendorError::Fs {
                vendor: v.name.clone(),
                source,
            },
        )?;
    }
    file.sync_all().map_err(io(&img))?;
    drop(file);

    let mut outs = Vec::new();
    let fmt = disk_format(v).ok_or_else(|| {
        VendorError::Preflight(vec![format!("vendor {}: unknown disk format", v.name)])
    })?;
    let disk_name = v.disk_name();
    let disk_out = stage(out_dir, v, &disk_name);
    let disk_staged = if v.bundle.is_some() {
        vwork.join(&disk_name)
    } else {
        disk_out.staged.clone()
    };
    if v.bundle.as_deref() != Some("gce_tar") {
        let opts = WriteOptions {
            virtual_size: v.virtual_size,
            threads,
            final_name: Some(disk_name.clone()),
        };
        format::write(&fmt, &img, &disk_staged, &opts).map_err(|source| VendorError::Format {
            vendor: v.name.clone(),
            source,
        })?;
    }
    let facts_size = std::fs::metadata(&disk_staged)
        .map(|m| m.len())
        .unwrap_or(0);
    let capacity = v.virtual_size.unwrap_or(grown).max(grown);
    let facts = conf::DiskFacts {
        file_name: &disk_name,
        file_size: facts_size,
        capacity,
    };
    let confs = conf::files(v, plan.arch, &facts);
    match v.bundle.as_deref() {
        None => {
            outs.push(disk_out);
            for c in &confs {
                let o = stage(out_dir, v, &c.name);
                write_gen(&o.staged, c)?;
                outs.push(o);
            }
        }
        Some("gce_tar") => {
            let o = stage(out_dir, v, &v.file_name(".tar.gz"));
            bundle::gce_tar(&o.staged, &img).map_err(io(&o.staged))?;
            outs.push(o);
        }
        Some("ova") => {
            let o = stage(out_dir, v, &v.file_name(".ova"));
            let ovf = confs
                .iter()
                .find(|c| c.name.ends_with(".ovf"))
                .cloned()
                .unwrap_or_else(|| conf::GenFile {
                    name: v.file_name(".ovf"),
                    content: conf::ovf(v, &facts, false).into_bytes(),
                    mode: 0o644,
                });
            bundle::ova(&o.staged, &ovf, &disk_staged, &disk_name).map_err(io(&o.staged))?;
            outs.push(o);
        }
        Some("box") => {
            let o = stage(out_dir, v, &v.file_name(".box"));
            bundle::vagrant_box(&o.staged, &confs, &disk_staged, &disk_name)
                .map_err(io(&o.staged))?;
            outs.push(o);
        }
        Some(other) => {
            return Err(VendorError::Preflight(vec![format!(
                "vendor {}: unknown bundle {other}",
                v.name
            )]))
        }
    }
    for f in &v.release_files {
        let src = plan.release_dir.join(f);
        let name = f.clone();
        let o = stage(out_dir, v, &name);
        std::fs::copy(&src, &o.staged).map_err(io(&src))?;
        outs.push(o);
    }
    let _ = std::fs::remove_dir_all(&vwork);
    Ok(outs)
}

/// Every output name `v` may stage, so an interrupted run can remove them.
fn staged_names(v: &Vendor) -> Vec<String> {
    let mut n = vec![
        v.disk_name(),
        v.file_name(".tar.gz"),
        v.file_name(".ova"),
        v.file_name(".box"),
        v.file_name(".ovf"),
    ];
    for s in [".sh", ".README", ".vmx", "_pygrub.cfg", "_pvgrub.cfg"] {
        n.push(v.file_name(s));
    }
    n.extend(v.release_files.iter().cloned());
    n
}

fn write_gen(path: &Path, f: &conf::GenFile) -> Result<(), VendorError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, &f.content).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(f.mode)).map_err(io(path))
}
