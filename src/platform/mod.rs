//! Vendor images: from one baked base image, each vendor's layout growth, OEM content,
//! disk format, configuration files and bundle, as its `vendors/*.toml` says. Several
//! vendors in one run share the base (decompressed and baked once), then fan out.
//! Everything is checked first (vendor names, OEM sysexts of the same release, release
//! files), and all outputs are renamed into place only when every vendor succeeded.

pub mod bundle;
pub mod compress;
pub mod conf;
pub mod group;
pub mod oem;
pub mod outputs;
pub mod registry;
pub mod version;

use crate::arch::Arch;
use crate::disk::gpt::Gpt;
use crate::disk::layout::FlatcarLayout;
use crate::disk::{grow, sparse};
use crate::format::{self, DiskFormat, WriteOptions};
use crate::release::VersionTxt;
use registry::{Registry, Vendor};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    #[error("{}", crate::util::problem_list(.0))]
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
    /// Compressed copies to write of each disk image (Flatcar's
    /// `--image_compression_formats`); empty: none.
    pub compress: &'a [compress::Compression],
}

/// A checked plan: everything needed to emit the vendors.
#[derive(Clone, Debug)]
pub struct VendorPlan {
    /// The vendors as the release defines them ([`Vendor::for_release`]).
    pub vendors: Vec<Vendor>,
    pub version: String,
    pub arch: Arch,
    /// vendor name -> what its OEM partition gets besides grub.cfg
    pub oem: BTreeMap<String, oem::OemContent>,
    pub release_dir: PathBuf,
    /// layout name -> ROOT size in sectors for this release (None: as released)
    pub layouts: BTreeMap<String, Option<u64>>,
    pub kernel_args: Vec<String>,
    pub backend: crate::fs::Backend,
    pub compress: Vec<compress::Compression>,
    /// The fast path: the base was baked from this vendor's published image, which
    /// already has the vendor's layout and OEM content; its disk is written from the
    /// base keeping the published qcow2's untouched clusters ([`format::reuse`]).
    pub published: Option<PublishedDisk>,
}

/// A vendor's published qcow2 and its inflated guest disk (the fast path's source).
#[derive(Clone, Debug)]
pub struct PublishedDisk {
    pub vendor: String,
    pub qcow2: PathBuf,
    pub raw: PathBuf,
}

/// Problems with the vendor names alone, for architecture `arch` and (when known)
/// release `version`: unknown, unsupported, given twice, not built for the
/// architecture, not defined (or without a published OEM sysext) in the release.
/// Cheap and file-free, so it runs before anything is downloaded or copied.
pub fn precheck(
    registry: &Registry,
    names: &[String],
    arch: Arch,
    version: Option<&str>,
) -> Vec<String> {
    let mut ps = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for n in names {
        let Some(v) = registry.get(n) else {
            ps.push(format!(
                "unknown vendor '{n}' (known: {})",
                registry
                    .vendors
                    .values()
                    .filter(|v| v.unsupported.is_none())
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            continue;
        };
        if let Some(why) = &v.unsupported {
            ps.push(format!("vendor '{n}' cannot be made by flatbake: {why}"));
        } else if seen.contains(&v.name.as_str()) {
            ps.push(format!("vendor '{n}' is given twice"));
        } else if !v.builds_for(arch) {
            ps.push(format!(
                "vendor '{n}': Flatcar builds it for {} only, not {arch}; drop it or use --arch {}",
                v.arches.join(", "),
                v.arches.first().map(String::as_str).unwrap_or("x86-64")
            ));
        } else if let Some(p) = version.and_then(|ver| v.release_problem(ver)) {
            ps.push(p);
        }
        seen.push(&v.name);
    }
    ps
}

/// Check the vendor request before anything is written.
pub fn plan(input: &VendorInput<'_>) -> Result<VendorPlan, VendorError> {
    let mut ps = oem::kernel_arg_problems(input.kernel_args);
    let arch = input.arch.unwrap_or(Arch::X86_64);
    let version = plan_version(input, &mut ps);
    let names_ps = precheck(input.registry, input.names, arch, version.as_deref());
    let bad_names = !names_ps.is_empty();
    ps.extend(names_ps);
    let vendors: Vec<Vendor> = if bad_names {
        Vec::new()
    } else {
        input
            .names
            .iter()
            .filter_map(|n| input.registry.get(n))
            .map(|v| v.for_release(version.as_deref()))
            .collect()
    };
    let mut oem = BTreeMap::new();
    for v in &vendors {
        for f in release_files(v, arch) {
            let p = input.release_dir.join(&f);
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
        match oem_content(input, v, id, ver, arch) {
            Ok(c) => {
                oem.insert(v.name.clone(), c);
            }
            Err(e) => ps.push(e),
        }
    }
    if !ps.is_empty() {
        return Err(VendorError::Preflight(ps));
    }
    let m = version.as_deref().and_then(version::Ver::parse);
    let layouts = input
        .registry
        .layouts
        .iter()
        .map(|(k, l)| (k.clone(), l.root_sectors_for(m)))
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
        compress: input.compress.to_vec(),
        published: None,
    })
}

/// The Flatcar version the vendors are made for: given, else the release's version.txt
/// (a problem only when a vendor needs its OEM sysext of that version).
fn plan_version(input: &VendorInput<'_>, ps: &mut Vec<String>) -> Option<String> {
    if let Some(v) = &input.version {
        return Some(v.clone());
    }
    match VersionTxt::flatcar_version_in(&input.release_dir.join("version.txt")) {
        Ok(v) => Some(v),
        Err(e) => {
            let wants_oem = input
                .names
                .iter()
                .filter_map(|n| input.registry.get(n))
                .any(|v| v.oem_id.is_some() && v.unsupported.is_none());
            if wants_oem {
                ps.push(format!("cannot tell the Flatcar version for the OEM sysext ({e}); pass --flatcar-version or put version.txt beside the image"));
            }
            None
        }
    }
}

/// What vendor `v` puts on OEM in Flatcar `ver`: the release's OEM sysext `oem-ID.raw`
/// (checked against the release and architecture) and its oem-release, or, for
/// releases whose OEM package wrote plain files, those files as data.
fn oem_content(
    input: &VendorInput<'_>,
    v: &Vendor,
    id: &str,
    ver: &str,
    arch: Arch,
) -> Result<oem::OemContent, String> {
    if !v.oem_sysext {
        // the release's OEM package wrote plain files: grub.cfg, oem-release (for
        // most) and the vendor's OEM template, known as data
        return oem::package_content(input.registry, v, id, ver);
    }
    let p = input.release_dir.join(format!("oem-{id}.raw"));
    if !p.is_file() {
        return Err(format!(
            "{}: missing: vendor {} needs the OEM sysext oem-{id}.raw of Flatcar {ver}",
            p.display(),
            v.name
        ));
    }
    let rel = crate::sysext::oem::check_sysext(id, &p, ver, Some(arch.systemd_name()))?;
    let text = oem::release_text(input.registry, id, ver, &rel)?;
    Ok(oem::OemContent {
        sysext: Some(p),
        release: v.oem_release.then_some(text),
        files: Vec::new(),
    })
}

/// The release files `v` ships beside its image on `arch` (qemu_uefi: the UEFI
/// firmware of the plain and the Secure Boot variant).
pub fn release_files(v: &Vendor, _arch: Arch) -> Vec<String> {
    v.release_files.clone()
}

/// The release files `v` needs from Flatcar release `version` (what `flatbake fetch
/// --vendor` downloads): its OEM sysext, when that release installs one, and the
/// files it ships beside the image.
pub fn fetched_files(v: &Vendor, version: &str) -> Vec<String> {
    let v = v.for_release(Some(version));
    v.oem_id
        .iter()
        .filter(|_| v.oem_sysext)
        .map(|id| format!("oem-{id}.raw"))
        .chain(v.release_files.iter().cloned())
        .collect()
}

/// The disk format a vendor's `disk_format` means.
pub fn disk_format(v: &Vendor) -> Option<DiskFormat> {
    v.disk_format.map(|f| f.format())
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
/// `base` is a scratch file emit takes over: each vendor but the last edits a copy of
/// it (a reflink where the filesystem has them, else a sparse copy of its data), the
/// last edits it in place, so one vendor costs no copy at all.
pub fn emit(
    plan: &VendorPlan,
    base: &Path,
    out_dir: &Path,
    work: &Path,
    threads: usize,
) -> Result<Vec<PathBuf>, VendorError> {
    // this run's lock beside its staged outputs, before the first is named
    crate::cleanup::prefix_in(out_dir).map_err(io(out_dir))?;
    let mut outputs: Vec<Output> = Vec::new();
    let mut guards = Vec::new();
    // the box catalogue names the image's update group: read before anything is written
    let group = if plan
        .vendors
        .iter()
        .any(|v| v.bundle == Some(registry::Bundle::Box))
    {
        Some(group::update_group(base).map_err(|e| VendorError::Preflight(vec![e]))?)
    } else {
        None
    };
    let result = (|| -> Result<(), VendorError> {
        for (i, v) in plan.vendors.iter().enumerate() {
            let phase = crate::out::Phase::start(format!("vendor {}", v.name));
            // the last vendor takes the scratch base over instead of copying it
            let take = i + 1 == plan.vendors.len();
            for name in outputs::output_names(v, plan.arch, &plan.compress) {
                guards.push(crate::cleanup::register(&stage(out_dir, v, &name).staged));
            }
            outputs.extend(emit_one(
                plan,
                v,
                base,
                take,
                out_dir,
                work,
                threads,
                group.as_deref(),
            )?);
            phase.done();
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

/// Files in `out_dir` that emitting `plan` would replace (exactly the names the
/// planned vendors write, [`outputs::output_names`]), so that an existing output is
/// refused before any work without --force.
pub fn existing_outputs(plan: &VendorPlan, out_dir: &Path) -> Vec<PathBuf> {
    plan.vendors
        .iter()
        .flat_map(|v| outputs::output_names(v, plan.arch, &plan.compress))
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

/// Grow, fill the OEM partition and size the working raw disk of `v`; returns its
/// path and its size.
fn prepare_disk(
    plan: &VendorPlan,
    v: &Vendor,
    base: &Path,
    take: bool,
    vwork: &Path,
) -> Result<(PathBuf, u64), VendorError> {
    let img = vwork.join("disk.bin");
    if take {
        // the last vendor: the base is not read again, so it is edited in place
        std::fs::rename(base, &img).map_err(io(&img))?;
    } else {
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
            grow::grow_root(&img, &file, &layout, sectors, vwork).map_err(|source| {
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
        let content = plan
            .oem
            .get(&v.name)
            .ok_or_else(|| VendorError::Preflight(vec![format!("no OEM content for {id}")]))?;
        let edits =
            oem::edits(v, &plan.version, content, &plan.kernel_args, vwork).map_err(io(vwork))?;
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
    Ok((img, grown))
}

/// Where the box catalogue says the box is: `FLATBAKE_BOX_URL` (the base URL the box
/// will be served from) followed by the box's name, else the box's `file://` URL, so
/// `vagrant box add flatcar_production_vagrant.json` works where it was written.
/// (Flatcar's names its bincache server, which does not serve flatbake's box.)
pub fn box_url(box_path: &Path) -> String {
    let name = box_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match std::env::var("FLATBAKE_BOX_URL") {
        Ok(base) if !base.is_empty() => format!("{}/{name}", base.trim_end_matches('/')),
        _ => {
            let abs = std::path::absolute(box_path).unwrap_or_else(|_| box_path.to_owned());
            format!("file://{}", abs.display())
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn emit_one(
    plan: &VendorPlan,
    v: &Vendor,
    base: &Path,
    take: bool,
    out_dir: &Path,
    work: &Path,
    threads: usize,
    group: Option<&str>,
) -> Result<Vec<Output>, VendorError> {
    let vwork = work.join(&v.name);
    std::fs::create_dir_all(&vwork).map_err(io(&vwork))?;
    let published = plan.published.as_ref().filter(|p| p.vendor == v.name);
    let (img, grown) = match published {
        // the base is the vendor's own disk already: layout and OEM content as published
        Some(_) => {
            let len = std::fs::metadata(base).map_err(io(base))?.len();
            (base.to_path_buf(), len)
        }
        None => prepare_disk(plan, v, base, take, &vwork)?,
    };
    let fmt = disk_format(v).ok_or_else(|| {
        VendorError::Preflight(vec![format!("vendor {}: no disk format", v.name)])
    })?;
    let disk_name = v.disk_name();
    let keep = plan.compress.is_empty() || plan.compress.contains(&compress::Compression::None);
    let plain_outputs = outputs::outputs(v, plan.arch, &[]);
    // the disk in its format: straight to its staging name when it is an output kept
    // as is, else in the work directory (bundled or compressed from there)
    let disk_is_output = plain_outputs
        .iter()
        .any(|o| o.source == outputs::Source::Disk);
    let disk = if disk_is_output && keep {
        stage(out_dir, v, &disk_name).staged
    } else {
        vwork.join(&disk_name)
    };
    if v.bundle != Some(registry::Bundle::GceTar) {
        write_disk(v, fmt, &img, &disk, threads, published)?;
    }
    let confs = vendor_confs(plan, v, &disk, grown)?;
    // plain files first, then compressed copies of them (which read the plain ones)
    let mut plain: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut outs = Vec::new();
    for o in plain_outputs {
        // where the plain file is made: the output's staging name when it is kept,
        // else the work directory, for its compressed copies
        let dest = if o.source == outputs::Source::Disk {
            if keep {
                outs.push(stage(out_dir, v, &o.name));
            }
            plain.insert(o.name.clone(), disk.clone());
            continue;
        } else if keep || !outputs::is_disk_like(&o.name) {
            let s = stage(out_dir, v, &o.name);
            let d = s.staged.clone();
            outs.push(s);
            d
        } else {
            vwork.join(format!("plain-{}", o.name))
        };
        match &o.source {
            outputs::Source::Disk => {}
            outputs::Source::Conf => write_gen(&dest, conf_file(&confs, v, &o.name)?)?,
            outputs::Source::Release => {
                let src = plan.release_dir.join(&o.name);
                std::fs::copy(&src, &dest).map_err(io(&src))?;
            }
            outputs::Source::Link(target) => {
                let _ = std::fs::remove_file(&dest);
                std::os::unix::fs::symlink(target, &dest).map_err(io(&dest))?;
            }
            outputs::Source::Bundle => write_bundle(v, &dest, &img, &disk, &confs)?,
            outputs::Source::Catalogue => {
                let text = catalogue(plan, v, &plain, out_dir, group, &o.name)?;
                write_gen(&dest, &text)?;
            }
            outputs::Source::Compressed(..) => {}
        }
        plain.insert(o.name.clone(), dest);
    }
    derived_outputs(plan, v, out_dir, threads, &plain, &mut outs)?;
    check_made(plan, v, &outs)?;
    let _ = std::fs::remove_dir_all(&vwork);
    Ok(outs)
}

/// The vendor's configuration files (OVF, vmx, launcher, ...) for its disk `disk` of
/// `grown` bytes.
fn vendor_confs(
    plan: &VendorPlan,
    v: &Vendor,
    disk: &Path,
    grown: u64,
) -> Result<Vec<conf::GenFile>, VendorError> {
    let disk_name = v.disk_name();
    let facts = conf::DiskFacts {
        file_name: &disk_name,
        file_size: std::fs::metadata(disk).map(|m| m.len()).unwrap_or(0),
        capacity: v.virtual_size.unwrap_or(grown).max(grown),
    };
    let ids = conf::VboxIds::new(&conf::vm_name(&v.name, &plan.version));
    conf::files(v, plan.arch, &plan.version, &facts, &ids)
        .map_err(|e| VendorError::Preflight(vec![e]))
}

/// The configuration file `name` among `confs`.
fn conf_file<'c>(
    confs: &'c [conf::GenFile],
    v: &Vendor,
    name: &str,
) -> Result<&'c conf::GenFile, VendorError> {
    confs.iter().find(|c| c.name == name).ok_or_else(|| {
        VendorError::Preflight(vec![format!(
            "vendor {}: no configuration file {name} (vendor definition and outputs disagree)",
            v.name
        )])
    })
}

/// The vendor's bundle at `dest`: GCE's tar of the raw disk `img`, an OVA, or a box.
fn write_bundle(
    v: &Vendor,
    dest: &Path,
    img: &Path,
    disk: &Path,
    confs: &[conf::GenFile],
) -> Result<(), VendorError> {
    let disk_name = v.disk_name();
    match v.bundle {
        Some(registry::Bundle::GceTar) => bundle::gce_tar(dest, img).map_err(io(dest)),
        Some(registry::Bundle::Ova) => {
            let ovf = conf_file(confs, v, &v.file_name(".ovf"))?;
            bundle::ova(dest, ovf, disk, &disk_name).map_err(io(dest))
        }
        Some(registry::Bundle::Box) => {
            bundle::vagrant_box(dest, confs, disk, &disk_name).map_err(io(dest))
        }
        None => Ok(()),
    }
}

/// Outputs made from the plain ones: compressed copies (`--compress`) and links not
/// already written.
fn derived_outputs(
    plan: &VendorPlan,
    v: &Vendor,
    out_dir: &Path,
    threads: usize,
    plain: &BTreeMap<String, PathBuf>,
    outs: &mut Vec<Output>,
) -> Result<(), VendorError> {
    for o in &outputs::outputs(v, plan.arch, &plan.compress) {
        match &o.source {
            outputs::Source::Compressed(of, c) => {
                let src = plain.get(of).ok_or_else(|| {
                    VendorError::Preflight(vec![format!(
                        "vendor {}: nothing to compress for {}",
                        v.name, o.name
                    )])
                })?;
                let s = stage(out_dir, v, &o.name);
                compress::compress_file(*c, src, &s.staged, of, threads).map_err(|source| {
                    VendorError::Format {
                        vendor: v.name.clone(),
                        source,
                    }
                })?;
                outs.push(s);
            }
            outputs::Source::Link(target)
                if !outs.iter().any(|x: &Output| {
                    x.path.file_name().and_then(|n| n.to_str()) == Some(o.name.as_str())
                }) =>
            {
                let s = stage(out_dir, v, &o.name);
                let _ = std::fs::remove_file(&s.staged);
                std::os::unix::fs::symlink(target, &s.staged).map_err(io(&s.staged))?;
                outs.push(s);
            }
            _ => {}
        }
    }
    Ok(())
}

/// The vendor's disk in its format: from the published image's clusters where the bake
/// started from it (untouched compressed clusters copied verbatim), else written anew.
fn write_disk(
    v: &Vendor,
    fmt: DiskFormat,
    img: &Path,
    disk: &Path,
    threads: usize,
    published: Option<&PublishedDisk>,
) -> Result<(), VendorError> {
    let fmt_err = |source| VendorError::Format {
        vendor: v.name.clone(),
        source,
    };
    let disk_name = v.disk_name();
    let opts = WriteOptions {
        virtual_size: v.virtual_size,
        threads,
        final_name: Some(disk_name.clone()),
    };
    match published {
        Some(p) if fmt == (DiskFormat::Qcow2 { compressed: true }) => {
            let reuse = format::reuse::Reuse::open(&p.qcow2, &p.raw).map_err(fmt_err)?;
            format::write_qcow2_reusing(img, disk, &opts, &reuse).map_err(fmt_err)?;
            let st = reuse.stats();
            note!(
                "{}: {} of {} compressed clusters copied verbatim from {}",
                disk_name,
                st.reused,
                st.source_clusters,
                p.qcow2.display()
            );
        }
        _ => {
            format::write(&fmt, img, disk, &opts).map_err(fmt_err)?;
        }
    }
    Ok(())
}

/// The writer made exactly what `output_names` promises (else its staged files go).
fn check_made(plan: &VendorPlan, v: &Vendor, outs: &[Output]) -> Result<(), VendorError> {
    let mut made: Vec<String> = outs
        .iter()
        .filter_map(|o| o.path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let mut promised = outputs::output_names(v, plan.arch, &plan.compress);
    made.sort();
    promised.sort();
    if made != promised {
        for o in outs {
            let _ = std::fs::remove_file(&o.staged);
        }
        return Err(VendorError::Preflight(vec![format!(
            "vendor {}: wrote {made:?} but its outputs are {promised:?}",
            v.name
        )]));
    }
    Ok(())
}

/// The box catalogue `name`: the box's URL and sha256, the release's update group.
fn catalogue(
    plan: &VendorPlan,
    v: &Vendor,
    plain: &BTreeMap<String, PathBuf>,
    out_dir: &Path,
    group: Option<&str>,
    name: &str,
) -> Result<conf::GenFile, VendorError> {
    let boxed = v.file_name(".box");
    let box_path = plain.get(&boxed).ok_or_else(|| {
        VendorError::Preflight(vec![format!(
            "vendor {}: no box for the catalogue {name}",
            v.name
        )])
    })?;
    let (sha256, _) = crate::util::sha256_file(box_path).map_err(io(box_path))?;
    let text = conf::catalogue(
        v,
        plan.arch,
        &conf::Catalogue {
            group: group.unwrap_or_default(),
            version: &plan.version,
            url: &box_url(&out_dir.join(&boxed)),
            sha256: &sha256,
        },
    )
    .map_err(|e| VendorError::Preflight(vec![e]))?;
    Ok(conf::GenFile {
        name: name.to_owned(),
        content: text.into_bytes(),
        mode: 0o644,
    })
}

fn write_gen(path: &Path, f: &conf::GenFile) -> Result<(), VendorError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, &f.content).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(f.mode)).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_asks_only_for_published_oem_sysexts() {
        let r = Registry::load(None).unwrap();
        let f = |n: &str, ver: &str| fetched_files(r.get(n).unwrap(), ver);
        // virtualbox and ami_vmdk before 4722: no oem-*.raw in the OEM partition
        assert!(f("virtualbox", "4593.2.5").is_empty());
        assert_eq!(f("virtualbox", "4757.0.0"), ["oem-virtualbox.raw"]);
        assert!(f("ami_vmdk", "4459.2.0").is_empty());
        assert_eq!(f("ami", "4459.2.0"), ["oem-ami.raw"]);
        assert!(f("vagrant_virtualbox", "4593.2.5").is_empty());
        assert_eq!(
            f("qemu_uefi", "4593.2.5")[..2],
            [
                "oem-qemu.raw".to_owned(),
                "flatcar_production_qemu_uefi_efi_code.qcow2".to_owned()
            ]
        );
    }
}
