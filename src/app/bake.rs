//! `bake` (the default command): local or fetched input, sysexts local or from the
//! bakery, one output image or vendor images.

use super::{fastpath, fetch, local, report};
use crate::bake::{self, BakeRequest};
use crate::cli::BakeArgs;
use crate::input::parent_dir;
use crate::platform::{self, registry::Registry, VendorInput};
use crate::spec::{GENERIC, GENERIC_IMAGE};
use anyhow::Context;
use std::path::PathBuf;

/// The plain bake's output when --output is not given.
pub const DEFAULT_OUTPUT: &str = "flatcar_production_image_baked.bin";

pub fn run(args: BakeArgs) -> anyhow::Result<()> {
    let json = args.json.clone();
    if json.as_deref().is_some_and(report::is_stdout) {
        crate::out::reserve_for_json();
    }
    let dry_run = args.dry_run;
    let outputs = execute(args)?;
    if dry_run {
        // the plan was the result: there is no output to summarise
        return Ok(());
    }
    report::summarize(&outputs, json.as_deref())
}

/// Bake what `args` asks for and return the files written (the request model both the
/// command line and `flatbake build` specs produce). Top-down: the command line is
/// normalised and checked, the input resolved (a local image, or a fetched release and
/// what it says), then one bake or a base bake fanned out to vendors. `bake::bake`
/// plans, applies and verifies.
pub fn execute(mut args: BakeArgs) -> anyhow::Result<Vec<PathBuf>> {
    normalize(&mut args)?;
    check(&args)?;
    let opts = if args.image.is_none() || args.fetch {
        Some(fetch::options(&args.release)?)
    } else {
        None
    };
    let compress = match &args.compress {
        Some(c) if args.vendor.is_empty() => anyhow::bail!(
            "--compress {c}: compressed copies are written of vendor images; add --vendor"
        ),
        Some(c) => platform::compress::Compression::parse_list(c).map_err(anyhow::Error::msg)?,
        None => Vec::new(),
    };
    if !args.vendor.is_empty() {
        precheck_vendors(&args, opts.as_ref())?;
    }
    let input = resolve(&args, opts.as_ref())?;
    if !args.vendor.is_empty() {
        return run_vendors(&args, input, compress);
    }
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OUTPUT));
    let report = bake::bake(&request(&args, &input, output))?;
    if let Some(plan) = &report.plan {
        report::print_plan(&report, plan, &[], args.json.as_deref())?;
        return Ok(Vec::new());
    }
    report::print_report(&report);
    outln!("wrote {}", report.output.display());
    Ok(vec![report.output])
}

/// Vendor names as the registry spells them, and `--vendor generic` alone as the
/// ordinary bake it is (into `--output-dir`).
fn normalize(args: &mut BakeArgs) -> anyhow::Result<()> {
    normalize_vendors(args)?;
    if args.vendor.iter().any(|v| v == GENERIC) && args.vendor.len() == 1 {
        if let Some(o) = &args.output {
            anyhow::bail!(
                "--output {}: --vendor generic writes {GENERIC_IMAGE} into --output-dir; drop --output (or --vendor)",
                o.display()
            );
        }
        args.output = Some(args.output_dir.join(GENERIC_IMAGE));
        args.vendor.clear();
    }
    Ok(())
}

/// Usage errors and missing tools, before anything is downloaded or read.
fn check(args: &BakeArgs) -> anyhow::Result<()> {
    if let Some(j) = args.json.as_deref().and_then(|j| j.to_str()) {
        if let Some((_, file)) = j.split_once(':') {
            if std::path::Path::new(file).is_file() {
                anyhow::bail!(
                    "--json took '{j}' as its file; give --json last, or --json - (stdout) / --json=FILE"
                );
            }
        }
    }
    if let Some(a) = args.extensions.iter().find(|a| !a.contains(':')) {
        let hint = crate::suggest::hint(a, SUBCOMMANDS.iter().copied());
        if !hint.is_empty() {
            anyhow::bail!("unknown command '{a}'{hint}");
        }
        if args.image.is_none() && !args.fetch && args.release.release.is_none() {
            anyhow::bail!(
                "'{a}': expected NAME:FILE (a sysext to bake) or a command ({})",
                SUBCOMMANDS.join(", ")
            );
        }
        // otherwise the plan reports it together with every other problem
    }
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
    let problems = crate::tools::missing(&needed_tools(args));
    if !problems.is_empty() {
        anyhow::bail!("{}", problems.join("; "));
    }
    Ok(())
}

/// Vendor names, architecture and (when already known) the release, checked before
/// anything is downloaded, decompressed or copied.
fn precheck_vendors(
    args: &BakeArgs,
    opts: Option<&crate::release::FetchOptions>,
) -> anyhow::Result<()> {
    let reg = Registry::load(args.vendors_dir.as_deref())?;
    let arch = args.release.arch.or(opts.map(|o| o.arch));
    let version = args
        .flatcar_version
        .as_deref()
        .or(exact_release(args.release.release.as_deref()));
    precheck_names(&reg, &args.vendor, arch, version)
}

/// `--release` when it names an exact version X.Y.Z (not a channel).
pub(super) fn exact_release(release: Option<&str>) -> Option<&str> {
    release.filter(|r| r.split('.').count() == 3)
}

/// Vendor names (`generic`, the plain image, aside), the architecture (when known; else
/// it comes from the image later) and, when the Flatcar `version` is known, its release
/// range, checked before anything is downloaded, decompressed or copied. Shared by a
/// bake and `flatbake fetch --vendor`.
pub(super) fn precheck_names(
    reg: &Registry,
    vendors: &[String],
    arch: Option<crate::arch::Arch>,
    version: Option<&str>,
) -> anyhow::Result<()> {
    let named: Vec<String> = vendors.iter().filter(|v| *v != GENERIC).cloned().collect();
    let ps = match arch {
        Some(a) => platform::precheck(reg, &named, a, version),
        None => {
            let mut ps = platform::precheck(reg, &named, crate::arch::Arch::X86_64, version);
            ps.retain(|p| !p.contains("Flatcar builds it for"));
            ps
        }
    };
    if !ps.is_empty() {
        return Err(platform::VendorError::Preflight(ps).into());
    }
    Ok(())
}

/// The input a bake starts from, resolved: the raw image to read, and what the command
/// line and (for a fetch) the release say about it. The command line itself is left as
/// it was given; everything a fetch learnt is here.
struct Input {
    /// The sparse raw image (a local one decompressed when needed, or the fetched one).
    image: PathBuf,
    /// Where version.txt, OEM sysexts and firmware are: `--release-dir`, else the fetched
    /// release's cache directory, else beside the image the user named.
    release_dir: PathBuf,
    flatcar_version: Option<String>,
    arch: Option<crate::arch::Arch>,
    /// NAME:FILE, bakery names resolved to downloaded files.
    extensions: Vec<String>,
    /// NAME=FILE, with the bakery's NAME.conf for fetched extensions the user did not
    /// give a conf for.
    sysupdate_confs: Vec<String>,
    /// The published vendor image a fetch took instead of the generic one (fast path).
    published: Option<crate::release::published::Published>,
}

/// Resolve the input: decompress a local image when needed, or fetch the release (the
/// published vendor image when the fast path applies), its vendor files and the bakery
/// extensions.
fn resolve(args: &BakeArgs, opts: Option<&crate::release::FetchOptions>) -> anyhow::Result<Input> {
    let mut input = Input {
        image: PathBuf::new(),
        release_dir: PathBuf::new(),
        flatcar_version: args.flatcar_version.clone(),
        arch: args.release.arch,
        extensions: args.extensions.clone(),
        sysupdate_confs: args.sysupdate_conf.clone(),
        published: None,
    };
    match (&args.image, opts) {
        (Some(i), _) => {
            let cache = args
                .release
                .image_cache
                .clone()
                .unwrap_or_else(fetch::default_cache);
            input.image = local::raw_image(i, &cache)?;
            // version.txt, OEM sysexts and firmware stay beside the file the user named
            input.release_dir = args.release_dir.clone().unwrap_or_else(|| parent_dir(i));
        }
        (None, Some(o)) => {
            let r = match fastpath::fetch(args, o)? {
                Some((r, p)) => {
                    input.published = Some(p);
                    r
                }
                None => fetch::release(o)?,
            };
            fastpath::set_source(fastpath::describe(input.published.as_ref()));
            if !args.vendor.is_empty() {
                fetch::vendor_files(o, &r, &args.vendor, args.vendors_dir.as_deref())?;
            }
            input
                .flatcar_version
                .get_or_insert(r.version_txt.version.to_string());
            input.release_dir = args.release_dir.clone().unwrap_or(r.dir);
            input.arch.get_or_insert(r.release.arch);
            input.image = r.image;
        }
        (None, None) => anyhow::bail!("no input image"),
    }
    if let (true, Some(o)) = (args.fetch, opts) {
        let (exts, confs) = fetch::extensions(o, &args.extensions)?;
        input.extensions = exts;
        for c in confs {
            let name = c.split('=').next().unwrap_or_default().to_owned();
            if !input
                .sysupdate_confs
                .iter()
                .any(|x| x.starts_with(&format!("{name}=")))
            {
                input.sysupdate_confs.push(c);
            }
        }
    }
    Ok(input)
}

/// The one bake request of a command line and its resolved input, writing `output`.
fn request(args: &BakeArgs, input: &Input, output: PathBuf) -> BakeRequest {
    BakeRequest {
        image: input.image.clone(),
        output,
        force: args.force,
        extensions: input.extensions.clone(),
        install_to: args.install_to.clone(),
        sysupdate_confs: input.sysupdate_confs.clone(),
        arch: input.arch,
        work_dir: args.work_dir.clone(),
        sysupdate: args.sysupdate,
        sysupdate_action: args.sysupdate_action,
        ignition: args.ignition.clone(),
        kernel_args: args.kernel_args.clone(),
        backend: args.backend,
        builtins: builtins(args, input),
        dry_run: args.dry_run,
    }
}

/// The commands, for "did you mean" when one is mistyped (it would be read as a
/// NAME:FILE of the default `bake`).
const SUBCOMMANDS: &[&str] = &[
    "bake",
    "build",
    "inspect",
    "fetch",
    "sysext",
    "completions",
    "man",
    "vendors",
];

/// The outside tools this request will run, so that a missing one is named (with its
/// Debian package) before anything is downloaded or copied.
fn needed_tools(args: &BakeArgs) -> Vec<&'static str> {
    let rootless = args.backend.resolve() == crate::fs::Backend::Rootless;
    let mut t = vec!["e2fsck"];
    if rootless {
        t.push("debugfs");
    } else {
        t.push("unshare");
    }
    let vendors = args.vendor.iter().any(|v| v != GENERIC);
    let oem = vendors
        || args.ignition.is_some()
        || !args.kernel_args.is_empty()
        || args
            .install_to
            .iter()
            .any(|r| r.to.target == crate::bake::place::Target::Oem);
    if oem {
        t.push("btrfs");
        if rootless {
            t.extend(["mkfs.btrfs", "fakeroot"]);
            if rustix::process::geteuid().is_root() {
                t.push("unshare");
            }
        }
    }
    if vendors {
        t.push("resize2fs");
    }
    t
}

/// Vendor names as the registry spells them (`qemu-uefi` is `qemu_uefi`), unknown ones
/// refused with the closest known name before any work.
fn normalize_vendors(args: &mut BakeArgs) -> anyhow::Result<()> {
    if args.vendor.is_empty() {
        return Ok(());
    }
    let reg = Registry::load(args.vendors_dir.as_deref())?;
    let known: Vec<&str> = reg
        .vendors
        .values()
        .filter(|v| v.unsupported.is_none())
        .map(|v| v.name.as_str())
        .chain([GENERIC])
        .collect();
    let mut out: Vec<String> = Vec::new();
    for n in &args.vendor {
        let c = crate::spec::canonical_vendor(n.trim(), &reg);
        if c != GENERIC && reg.get(&c).is_none() {
            anyhow::bail!(
                "--vendor {n}: unknown vendor '{n}'{} (`flatbake vendors` lists them; {GENERIC} is the plain image)",
                crate::suggest::hint(n, known.iter().copied())
            );
        }
        if out.contains(&c) {
            anyhow::bail!("--vendor {n}: vendor '{c}' is given twice");
        }
        out.push(c);
    }
    args.vendor = out;
    Ok(())
}

/// The architecture of the Flatcar image at `image`, from its ESP's UEFI boot loader;
/// `None` when the ESP does not tell.
fn image_arch(image: &std::path::Path) -> anyhow::Result<Option<crate::arch::Arch>> {
    let facts = crate::facts::Facts::read(image)?;
    facts.layout.as_ref().map_err(Clone::clone)?;
    Ok(facts.arch)
}

/// What to do with Flatcar's built-in and optional extensions. The image's version
/// (for Torcx) is --flatcar-version or the fetched release's, else version.txt in the
/// release directory.
fn builtins(args: &BakeArgs, input: &Input) -> bake::builtin::BuiltinRequest {
    let version = input.flatcar_version.clone().or_else(|| {
        crate::release::VersionTxt::flatcar_version_in(&input.release_dir.join("version.txt")).ok()
    });
    bake::builtin::BuiltinRequest {
        replace: args.replace_builtin.clone(),
        keep: args.keep_builtin,
        torcx: args.torcx_era,
        enable_official: args.enable_official.clone(),
        flatcar_version: version,
    }
}

/// Bake once into a scratch base image, then emit every vendor from it.
fn run_vendors(
    args: &BakeArgs,
    input: Input,
    compress: Vec<platform::compress::Compression>,
) -> anyhow::Result<Vec<PathBuf>> {
    let reg = Registry::load(args.vendors_dir.as_deref())?;
    let generic = args.vendor.iter().any(|v| v == GENERIC);
    let names: Vec<String> = args
        .vendor
        .iter()
        .filter(|v| *v != GENERIC)
        .cloned()
        .collect();
    let arch = match input.arch {
        Some(a) => Some(a),
        None => image_arch(&input.image)?,
    };
    let mut plan = platform::plan(&VendorInput {
        names: &names,
        registry: &reg,
        release_dir: &input.release_dir,
        version: input.flatcar_version.clone(),
        arch,
        kernel_args: &args.kernel_args,
        backend: args.backend,
        compress: &compress,
    })?;
    plan.published = input.published.as_ref().map(|p| platform::PublishedDisk {
        vendor: p.vendor.clone(),
        qcow2: p.qcow2.clone(),
        raw: p.raw.clone(),
    });
    let out_dir = args.output_dir.clone();
    if !out_dir.is_dir() {
        anyhow::bail!("{}: output directory does not exist", out_dir.display());
    }
    let generic_out = out_dir.join(GENERIC_IMAGE);
    let mut existing = platform::existing_outputs(&plan, &out_dir);
    if generic && std::fs::symlink_metadata(&generic_out).is_ok() {
        existing.push(generic_out.clone());
    }
    if let (false, Some(p)) = (args.force, existing.first()) {
        anyhow::bail!(
            "{}: already exists; pass --force to replace it",
            p.display()
        );
    }
    let work = crate::cleanup::temp_dir(args.work_dir.as_deref().unwrap_or(&out_dir), "work-")
        .with_context(|| format!("{}: cannot create a work directory", out_dir.display()))?;
    let base = work.path().join("base.bin");
    let req = BakeRequest {
        force: false,
        arch: Some(plan.arch),
        work_dir: Some(work.path().to_owned()),
        // vendor grub.cfgs are written per vendor, with the kernel arguments in them
        kernel_args: Vec::new(),
        ..request(args, &input, base.clone())
    };
    // replacing an input (--force) would lose a file the user gave
    for p in &existing {
        if let Some(what) = bake::input_at(&req, p) {
            anyhow::bail!(
                "{}: this vendor output is {what}; choose another --output-dir",
                p.display()
            );
        }
    }
    let report = bake::bake(&req)?;
    if let Some(base_plan) = &report.plan {
        let mut vendors: Vec<String> = plan.vendors.iter().map(|v| v.name.clone()).collect();
        if generic {
            vendors.insert(0, GENERIC.to_owned());
        }
        report::print_plan(&report, base_plan, &vendors, args.json.as_deref())?;
        return Ok(Vec::new());
    }
    report::print_report(&report);
    if let Some(s) = fastpath::source() {
        outln!("source: {s}");
    }
    let outputs = write_vendors(args, &plan, &base, generic, work.path())?;
    drop(work);
    Ok(outputs)
}

/// Every vendor's outputs (and the plain image, for `generic`) from the baked base,
/// renamed into `--output-dir` together.
fn write_vendors(
    args: &BakeArgs,
    plan: &platform::VendorPlan,
    base: &std::path::Path,
    generic: bool,
    work: &std::path::Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let out_dir = &args.output_dir;
    let generic_out = out_dir.join(GENERIC_IMAGE);
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    // the plain image is staged beside the vendor outputs before they are renamed in
    let staged_generic = out_dir.join(format!(
        "{}{GENERIC_IMAGE}.partial",
        crate::cleanup::prefix()
    ));
    let _generic_guard = crate::cleanup::register(&staged_generic);
    if generic {
        let src = std::fs::File::open(base).with_context(|| base.display().to_string())?;
        let dst = std::fs::File::create(&staged_generic)
            .with_context(|| staged_generic.display().to_string())?;
        crate::disk::sparse::clone_file(&src, &dst)
            .with_context(|| staged_generic.display().to_string())?;
    }
    let mut outputs = platform::emit(plan, base, out_dir, work, threads)?;
    if generic {
        std::fs::rename(&staged_generic, &generic_out)
            .with_context(|| generic_out.display().to_string())?;
        outputs.insert(0, generic_out);
    }
    for path in &outputs {
        outln!("wrote {}", path.display());
    }
    Ok(outputs)
}
