//! `bake` (the default command): local or fetched input, sysexts local or from the
//! bakery, one output image or vendor images.

use super::{fetch, local, report};
use crate::bake::{self, BakeRequest};
use crate::cli::BakeArgs;
use crate::input::parent_dir;
use crate::platform::{self, registry::Registry, VendorInput};
use anyhow::Context;
use std::path::PathBuf;

/// The plain bake's output when --output is not given.
pub const DEFAULT_OUTPUT: &str = "flatcar_production_image_baked.bin";

pub fn run(mut args: BakeArgs) -> anyhow::Result<()> {
    if args.vendor.is_empty()
        && args.extensions.is_empty()
        && args.ignition.is_none()
        && args.kernel_args.is_empty()
        && args.replace_builtin.is_empty()
        && args.enable_official.is_empty()
        && !args.torcx_era
    {
        anyhow::bail!(
            "nothing to do: name sysexts as NAME:FILE and/or vendor images with --vendor"
        );
    }
    if let (Some(o), false) = (&args.output, args.vendor.is_empty()) {
        anyhow::bail!(
            "--output {}: vendor images are written to --output-dir under Flatcar's file names; drop --output (or bake without --vendor)",
            o.display()
        );
    }
    if args.image.is_some() && args.release.release.is_some() {
        anyhow::bail!(
            "--image and --release exclude each other: bake a local image, or fetch a release"
        );
    }
    if args.image.is_none() && !args.fetch && args.release.release.is_none() {
        anyhow::bail!("no input image: pass --image FILE, or --release/--fetch to download one");
    }
    let opts = if args.image.is_none() || args.fetch {
        Some(fetch::options(&args.release)?)
    } else {
        None
    };
    let image = match (&args.image, &opts) {
        (Some(i), _) => {
            let cache = args
                .release
                .image_cache
                .clone()
                .unwrap_or_else(fetch::default_cache);
            let raw = local::raw_image(i, &cache)?;
            if raw != *i {
                // version.txt, OEM sysexts and firmware stay beside the compressed file
                args.release_dir.get_or_insert_with(|| parent_dir(i));
            }
            raw
        }
        (None, Some(o)) => {
            let r = fetch::release(o)?;
            if !args.vendor.is_empty() {
                fetch::vendor_files(o, &r, &args.vendor, args.vendors_dir.as_deref())?;
            }
            args.flatcar_version
                .get_or_insert(r.version_txt.version.to_string());
            args.release_dir.get_or_insert(r.dir.clone());
            args.release.arch.get_or_insert(r.release.arch);
            r.image
        }
        (None, None) => anyhow::bail!("no input image"),
    };
    if let (true, Some(o)) = (args.fetch, &opts) {
        let (exts, confs) = fetch::extensions(o, &args.extensions)?;
        args.extensions = exts;
        for c in confs {
            let name = c.split('=').next().unwrap_or_default().to_owned();
            if !args
                .sysupdate_conf
                .iter()
                .any(|x| x.starts_with(&format!("{name}=")))
            {
                args.sysupdate_conf.push(c);
            }
        }
    }
    if !args.vendor.is_empty() {
        return run_vendors(args, image);
    }
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OUTPUT));
    let builtins = builtins(&args, &image);
    let req = BakeRequest {
        image,
        output,
        force: args.force,
        extensions: args.extensions,
        install_to: args.install_to,
        sysupdate_confs: args.sysupdate_conf,
        arch: args.release.arch,
        work_dir: args.work_dir,
        sysupdate: args.sysupdate,
        sysupdate_action: args.sysupdate_action,
        ignition: args.ignition,
        kernel_args: args.kernel_args,
        backend: args.backend,
        builtins,
        dry_run: args.dry_run,
    };
    let report = bake::bake(&req)?;
    if let Some(plan) = &report.plan {
        return report::print_plan(&report, plan, &[], args.json.as_deref());
    }
    report::print_report(&report);
    outln!("wrote {}", report.output.display());
    report::summarize(std::slice::from_ref(&report.output), args.json.as_deref())
}

/// What to do with Flatcar's built-in and optional extensions. The image's version
/// (for Torcx) is --flatcar-version, else version.txt in the release directory or beside
/// the image.
fn builtins(args: &BakeArgs, image: &std::path::Path) -> bake::builtin::BuiltinRequest {
    let dir = args
        .release_dir
        .clone()
        .unwrap_or_else(|| parent_dir(image));
    let version = args
        .flatcar_version
        .clone()
        .or_else(|| crate::platform::version_from_file(&dir.join("version.txt")).ok());
    bake::builtin::BuiltinRequest {
        replace: args.replace_builtin.clone(),
        keep: args.keep_builtin,
        torcx: args.torcx_era,
        enable_official: args.enable_official.clone(),
        flatcar_version: version,
    }
}

/// Bake once into a scratch base image, then emit every vendor from it.
fn run_vendors(args: BakeArgs, image: PathBuf) -> anyhow::Result<()> {
    let reg = Registry::load(args.vendors_dir.as_deref())?;
    let release_dir = args
        .release_dir
        .clone()
        .unwrap_or_else(|| parent_dir(&image));
    let arch = match args.release.arch {
        Some(a) => Some(a),
        None => crate::disk::detect_arch(&image).map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let plan = platform::plan(&VendorInput {
        names: &args.vendor,
        registry: &reg,
        release_dir: &release_dir,
        version: args.flatcar_version.clone(),
        arch,
        kernel_args: &args.kernel_args,
        backend: args.backend,
    })?;
    let out_dir = args.output_dir.clone();
    if !out_dir.is_dir() {
        anyhow::bail!("{}: output directory does not exist", out_dir.display());
    }
    if let (false, Some(p)) = (
        args.force,
        platform::existing_outputs(&plan, &out_dir).first(),
    ) {
        anyhow::bail!(
            "{}: already exists; pass --force to replace it",
            p.display()
        );
    }
    crate::cleanup::sweep_stale(&out_dir);
    let work = tempfile::Builder::new()
        .prefix(&format!("{}work-", crate::cleanup::prefix()))
        .tempdir_in(args.work_dir.as_deref().unwrap_or(&out_dir))
        .with_context(|| format!("{}: cannot create a work directory", out_dir.display()))?;
    let _work_guard = crate::cleanup::register(work.path());
    let base = work.path().join("base.bin");
    let builtins = builtins(&args, &image);
    let req = BakeRequest {
        image,
        output: base.clone(),
        force: false,
        extensions: args.extensions,
        install_to: args.install_to,
        sysupdate_confs: args.sysupdate_conf,
        arch: Some(plan.arch),
        work_dir: Some(work.path().to_owned()),
        sysupdate: args.sysupdate,
        sysupdate_action: args.sysupdate_action,
        ignition: args.ignition,
        // vendor grub.cfgs are written per vendor, with the kernel arguments in them
        kernel_args: Vec::new(),
        backend: args.backend,
        builtins,
        dry_run: args.dry_run,
    };
    let report = bake::bake(&req)?;
    if let Some(base_plan) = &report.plan {
        let vendors: Vec<String> = plan.vendors.iter().map(|v| v.name.clone()).collect();
        return report::print_plan(&report, base_plan, &vendors, args.json.as_deref());
    }
    report::print_report(&report);
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let outputs = platform::emit(&plan, &base, &out_dir, work.path(), threads)?;
    for path in &outputs {
        outln!("wrote {}", path.display());
    }
    drop(work);
    report::summarize(&outputs, args.json.as_deref())
}
